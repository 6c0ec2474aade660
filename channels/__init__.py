"""Messaging apps: their webhooks (inbound messages and status reports) and their
APIs for replies. Parsing and signatures live here; the rules live in inbox/."""
from __future__ import annotations

from inbox.validation import MAX_BODY


class Malformed(ValueError):
    """A webhook body that is not what the messaging app sends: answered 400, nothing stored."""


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
