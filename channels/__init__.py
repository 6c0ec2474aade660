"""Messaging apps: their webhooks (inbound messages and status reports) and their
APIs for replies. Parsing and signatures live here; the rules live in inbox/.

Each app is one module of this package that declares its KIND, KIND_ORDER and SETTINGS
(literals that models/kinds.py reads without importing it: ChannelKind and the settings
are built from them) and defines `APP`, a Provider (below): its kind, its config and the
GraphQL input that maps to it, its webhook routes, signature check and parsing, reply
delivery, status mapping and reply-window policy. The rest of the server finds the apps
with `providers()`; docs/adding-a-messaging-app.md says how to add one.

The package's path is extended like a namespace package's: a `channels/` folder
elsewhere on sys.path adds its apps (tests/fifth_app/ does, for the tests)."""
from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, ClassVar

from inbox.apps import MessagingApp
from inbox.validation import MAX_BODY
from models import kinds

# The folders the apps were found in when ChannelKind was built: the same modules are imported.
__path__ = kinds.package_path()


class Malformed(ValueError):
    """A webhook body that is not what the messaging app sends: answered 400, nothing stored."""


class Provider(MessagingApp):
    """A messaging app as the server runs it: MessagingApp's rules plus the HTTP sides."""

    # The field of InstallChannelInput that carries this app's config, and its input type
    # (a strawberry input; its fields become the stored config under their GraphQL names).
    input_field: ClassVar[str]
    config_input: ClassVar[type | None] = None

    def routes(self) -> list:
        """Starlette routes of the app's webhooks."""
        return []

    async def deliver(self, api: Any, out: Any) -> str | None:
        """Hands one reply (inbox.sending.Outgoing) to the app; returns the app's id of
        it. Raises inbox.queue.Retryable or Rejected."""
        raise NotImplementedError

    def config_of(self, given: Any) -> dict | None:
        """The config dict (the contract's names) of the app's GraphQL input, as given."""
        if given is None:
            return None
        from strawberry.utils.str_converters import to_camel_case

        return {to_camel_case(field.name): getattr(given, field.name) for field in dataclasses.fields(given)}


_providers: list[Provider] | None = None
_discovering = False


def providers() -> list[Provider]:
    """Every messaging app of this package, in the order of ChannelKind. The schema is
    built from them (schema/inputs.py): an app's module imports the schema package only
    inside its functions, or the schema would be built before the app is registered."""
    global _providers, _discovering
    if _providers is None:
        if _discovering:
            raise RuntimeError("an app's module imported what asks for every app (the schema?) at import time")
        _discovering = True
        found = []
        for declared in kinds.declared():
            app = getattr(importlib.import_module(f"{__name__}.{declared.module}"), "APP", None)
            if not isinstance(app, Provider) or app.kind.value != declared.kind:
                raise RuntimeError(f"channels/{declared.module}.py declares KIND {declared.kind!r} but its APP is "
                                   f"not a Provider of that kind")
            found.append(app)
        _providers = found
        _discovering = False
    return _providers


def provider(kind) -> Provider:
    providers()
    from inbox import apps

    found = apps.of(kind)
    assert isinstance(found, Provider)
    return found


def without_nul(value):
    """A decoded webhook payload (its signature checked) with NUL taken out of every
    string: PostgreSQL's text cannot store it, and a message that fails for good would be
    retried by the app until it gives the webhook up."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key: without_nul(item) for key, item in value.items()}
    return value


def json_without_nul(body: bytes):
    """A webhook's JSON body decoded (ValueError when it is not JSON), NUL taken out as
    `without_nul` does. JSON in UTF-8 writes NUL only escaped, and in UTF-16 or UTF-32
    every character has a NUL byte: a body with neither has no NUL to look for."""
    value = json.loads(body)
    return without_nul(value) if b"\\u0000" in body or b"\x00" in body else value


def inbound_body(text: str | None, attachments: list[tuple[str, str | None]]) -> str | None:
    """The body an agent reads: the text, then one line per attachment ("[image] https://…",
    the link pointing at the messaging app's copy), cut to the longest body the inbox keeps.
    None when there is nothing to show."""
    lines = [text] if text and text.strip() else []
    lines += [f"[{kind}] {url}" if url else f"[{kind}]" for kind, url in attachments]
    body = "\n".join(lines)
    if not body.strip():
        return None
    return body if len(body) <= MAX_BODY else body[:MAX_BODY - 1] + "…"
