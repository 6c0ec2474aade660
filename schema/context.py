"""Per-request context: the authenticated principal, settings and data loaders.

Loaders batch within one tick and keep no cache, so a websocket connection (whose
context lives as long as the socket) never serves stale rows nor grows."""
from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

import models
from inbox import access, crm, notes, sections
from inbox.errors import Unauthenticated


def _by_id(model):
    async def load(ids: list[int]) -> list[Any]:
        rows = {row.id: row for row in await model.filter(id__in=list(set(ids)))}
        return [rows.get(i) for i in ids]

    return DataLoader(load_fn=load, cache=False)


class Loaders:
    def __init__(self, viewer: models.User | None) -> None:
        viewer_id = viewer.id if viewer is not None else None
        self.user = _by_id(models.User)
        self.channel = _by_id(models.Channel)
        self.contact = _by_id(models.Contact)
        self.conversation = _by_id(models.Conversation)
        self.message = _by_id(models.Message)
        self.person = _by_id(models.Person)
        self.lead = _by_id(models.Lead)
        self.deal = _by_id(models.Deal)

        async def load_unread(ids: list[int]) -> list[int]:
            if viewer_id is None:  # read state is a user's; a partner has none
                return [0 for _ in ids]
            found = await sections.unread_counts(viewer_id, list(set(ids)))
            return [found.get(i, 0) for i in ids]

        self.unread = DataLoader(load_fn=load_unread, cache=False)
        # Lists of many parents, each read in one statement for all of them.
        self.messages = DataLoader(load_fn=_load_messages, cache=False)
        self.events = _grouped(sections.events_of)
        self.links = _grouped(crm.links_of)
        self.members = _grouped(access.members_of)
        self.notes = DataLoader(load_fn=_load_notes, cache=False)

        async def load_visible(ids: list[int]) -> list[models.Conversation | None]:
            found = await access.visible_conversations(viewer, list(set(ids))) if viewer is not None else {}
            return [found.get(i) for i in ids]

        # Conversations the viewer may see (None for the others, and for a partner).
        self.visible_conversation = DataLoader(load_fn=load_visible, cache=False)

        async def load_note_lines(ids: list[int]) -> list[list[models.NoteLine]]:
            found = await notes.lines_of(list(set(ids)))
            return [found[i] for i in ids]

        self.note_lines = DataLoader(load_fn=load_note_lines, cache=False)


def _grouped(read):
    """A loader of each key's list, from a read of the lists of many keys at once."""
    async def load(keys: list[int]) -> list[list]:
        found = await read(list(set(keys)))
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load, cache=False)


async def _load_messages(keys: list[tuple]) -> list:
    """Keys (conversation id, first, after, last, before): one read per distinct page."""
    pages: dict[tuple, dict] = {}
    for arguments in dict.fromkeys(key[1:] for key in keys):
        first, after, last, before = arguments
        pages[arguments] = await sections.messages_pages(
            list({key[0] for key in keys if key[1:] == arguments}), first=first, after=after, last=last,
            before=before)
    return [pages[key[1:]][key[0]] for key in keys]


async def _load_notes(keys: list[tuple]) -> list[list]:
    """Keys (target kind, target id): one read per kind."""
    found = {kind: await crm.notes_of(kind, list({key[1] for key in keys if key[0] is kind}))
             for kind in dict.fromkeys(key[0] for key in keys)}
    return [found[kind].get(target_id, []) for kind, target_id in keys]


class Context:
    def __init__(self, request: Any, response: Any, settings: Any, principal: Any = None) -> None:
        self.request = request
        self.response = response
        self.settings = settings
        self.connection_params: dict | None = None
        self.principal = principal
        self._loaders: Loaders | None = None
        # Set by the app: wakes this process's sender when a reply is queued.
        self.wake_sender = None
        # Set by the app: the messaging apps' API client, for their install and template hooks.
        self.providers = None

    @property
    def viewer(self) -> models.User:
        """The signed-in user; a CUSTOM channel's token is not one. Its `available` is
        None (inbox.accounts.authenticate): `accounts.availability` reads it."""
        if not isinstance(self.principal, models.User):
            raise Unauthenticated("a user token is required")
        return self.principal

    @property
    def viewer_id(self) -> int | None:
        """The signed-in user's id, or None for a partner integration."""
        return self.principal.id if isinstance(self.principal, models.User) else None

    @property
    def is_partner(self) -> bool:
        """A partner integration (a CUSTOM channel's token): it reads only what
        schema/partner.py lists."""
        return isinstance(self.principal, models.Channel)

    @property
    def channel(self) -> models.Channel:
        """The CUSTOM channel whose token authenticated this request."""
        if not isinstance(self.principal, models.Channel):
            raise Unauthenticated("a CUSTOM channel token is required")
        return self.principal

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.principal if isinstance(self.principal, models.User) else None)
        return self._loaders
