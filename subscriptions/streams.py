"""The subscription generators: replay after a cursor, then the live stream of the
viewer's company topic, filtered to what the viewer may see."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import AsyncGenerator, Optional

import strawberry
from strawberry.types import Info

import models
from inbox import access, sections
from inbox.messages import committed_horizon
from schema import notifications as notification_types, types
from schema.ids import parse_message_cursor, pk_of

from .events import ConversationChanged, MessageAdded, MessageUpdated, NotificationReceived, company_topic, decoded
from . import direct
from .fanout import shared_root
from .hub import BackendLost, Overflowed
from .message_order import company_messages
from .publish import current_hub

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
# Close code of a subscriber that fell too far behind: "try again later" (SPEC §6).
TRY_AGAIN_LATER = 1013


async def _shared_row(payload: dict, model, pk: int):
    """One database read per event per process, shared by every local subscriber:
    the hub hands the same payload object to all of them."""
    task = payload.get("_row")
    if task is None:
        # Scoped to the event's company: a stray event can never surface another tenant's row.
        task = payload["_row"] = asyncio.ensure_future(model.get_or_none(id=pk, company_id=payload["company_id"]))
    return await asyncio.shield(task)


def _shared_message(payload: dict, row: models.Message) -> types.Message:
    """The event's Message, one object for every local subscriber: their executions of
    the same document share one result (subscriptions/fanout.py)."""
    return shared_root(payload, ("Message", row.id), lambda: types.Message.of(row))


def _subscribe(viewer: models.User, event_type, accept):
    """The viewer's subscription to its company topic, filtered in the hub's fan-out so
    that its buffer bounds what this viewer receives, not the company's whole traffic."""
    def wanted(payload: dict) -> bool:
        event = decoded(payload)
        return isinstance(event, event_type) and event.may_see(viewer.id, viewer.is_admin) and accept(event)

    return current_hub().subscribe(company_topic(viewer.company_id), accept=wanted)


async def _live(info: Info, sub, roots, hand_over: bool = True) -> AsyncGenerator:
    """The subscription's live events as the roots `roots(payload, event)` turns them
    into; handed over to direct delivery (direct.py) as soon as nothing is buffered."""
    topic = sub.topic
    sub.live = True
    direct.settled()
    try:
        while True:
            if hand_over and not sub.pending:
                settings = info.context.settings
                await direct.hand_over(sub, roots, settings.subscription_buffer, settings.subscription_buffer_bytes)
            payload = await sub.get()
            # Checked again: what was wanted when it was buffered may have changed since
            # (a replay moved past it).
            if sub.wants(payload):
                for root in await roots(payload, decoded(payload)):
                    yield root
    except Overflowed:
        log.info("subscriber of %s overflowed its buffer; closing with %s", topic, TRY_AGAIN_LATER)
        websocket = info.context.request
        if websocket.scope["type"] == "websocket":  # an HTTP stream just ends
            await websocket.close(code=TRY_AGAIN_LATER)
            # Ending the stream would make strawberry send `complete` on the closed socket
            # (an error in the log): wait to be cancelled when the connection shuts down.
            await asyncio.Future()
    except BackendLost:
        # It may have missed events: ending it makes the client resume with `after`.
        log.info("broadcast backend lost; ending a subscription of %s", topic)


def _ends_if_backend_unavailable(stream):
    """A subscription that cannot start because the broadcast backend is down ends at once
    with `complete`, as one that loses it does (SPEC §8), rather than with an INTERNAL
    error: the client resumes with `after`."""
    @functools.wraps(stream)
    async def guarded(*args):
        async with contextlib.aclosing(stream(*args)) as items:
            try:
                async for item in items:
                    yield item
            except BackendLost:
                log.info("broadcast backend unavailable; ending a subscription at its start")

    return guarded


async def _visible_conversation_pk(viewer: models.User, conversation_id: Optional[strawberry.ID]) -> int | None:
    if conversation_id is None:
        return None
    pk = pk_of(conversation_id, "Conversation")
    await access.visible_conversation(viewer, pk)
    return pk


async def message_added(info: Info, conversation_id: Optional[strawberry.ID] = None,
                        after: Optional[str] = None) -> AsyncGenerator[types.Message, None]:
    viewer = info.context.viewer
    conversation_pk = await _visible_conversation_pk(viewer, conversation_id)
    after_pk = parse_message_cursor(after)
    return _message_stream(info, viewer, conversation_pk, after_pk)


@_ends_if_backend_unavailable
async def _message_stream(info: Info, viewer: models.User, conversation_pk: int | None,
                          after_pk: int | None) -> AsyncGenerator[types.Message, None]:
    added = _AddedMessages(viewer, conversation_pk, after_pk or 0)
    async with _subscribe(viewer, MessageAdded, added.accept) as sub:
        # Subscribed first, then the horizon: every message of the company up to it is
        # stored, and every later one reaches this subscription as an event.
        horizon = await committed_horizon(viewer.company_id)
        # Set up: a long replay to a slow client must not hold up others' set-ups.
        direct.settled()
        if after_pk is not None:
            while True:
                rows = await sections.replay_messages(viewer, added.last, conversation_pk, REPLAY_BATCH)
                for row in rows:
                    yield types.Message.of(row)
                    added.last = row.id
                if len(rows) < REPLAY_BATCH:
                    break
        # Ids commit in order: a replay saw every message below the last one it read.
        added.last = max(added.last, horizon)
        async for root in _live(info, sub, added.roots):
            yield root


class _AddedMessages:
    """A messageAdded subscription's live state. An event is a signal that every message
    up to its id is stored: it turns into those after `last` that the viewer may see, in
    id order (subscriptions/message_order.py)."""

    __slots__ = ("viewer", "conversation_pk", "last", "_messages")

    def __init__(self, viewer: models.User, conversation_pk: int | None, last: int) -> None:
        self.viewer = viewer
        self.conversation_pk = conversation_pk
        self.last = last
        self._messages = company_messages(viewer.company_id)

    def accept(self, event: MessageAdded) -> bool:
        return event.message_id > self.last and self.conversation_pk in (None, event.conversation_id)

    async def roots(self, payload: dict, event: MessageAdded) -> list[types.Message]:
        # The same for every subscription of this viewer, conversation and position: worked
        # out once per event (the payload is shared by every local subscriber).
        key = (self.viewer.id, self.conversation_pk, self.last)
        found = payload.get("_added")
        if found is None:
            found = payload["_added"] = {}
        roots = found.get(key)
        if roots is None:
            rows = await self._messages.added(self.viewer, self.conversation_pk, self.last, event)
            roots = found[key] = [_shared_message(payload, row) for row in rows]
        self.last = event.message_id
        return roots


async def message_updated(info: Info, conversation_id: Optional[strawberry.ID] = None
                          ) -> AsyncGenerator[types.Message, None]:
    viewer = info.context.viewer
    conversation_pk = await _visible_conversation_pk(viewer, conversation_id)
    return _message_update_stream(info, viewer, conversation_pk)


@_ends_if_backend_unavailable
async def _message_update_stream(info: Info, viewer: models.User, conversation_pk: int | None
                                 ) -> AsyncGenerator[types.Message, None]:
    def accept(event: MessageUpdated) -> bool:
        return conversation_pk in (None, event.conversation_id)

    async def roots(payload: dict, event: MessageUpdated) -> list[types.Message]:
        row = await _shared_row(payload, models.Message, event.message_id)
        return [] if row is None else [_shared_message(payload, row)]

    async with _subscribe(viewer, MessageUpdated, accept) as sub:
        async for root in _live(info, sub, roots):
            yield root


async def conversation_changed(info: Info, conversation_id: Optional[strawberry.ID] = None
                               ) -> AsyncGenerator[types.ConversationEvent, None]:
    viewer = info.context.viewer
    conversation_pk = await _visible_conversation_pk(viewer, conversation_id)
    return _conversation_stream(info, viewer, conversation_pk)


@_ends_if_backend_unavailable
async def _conversation_stream(info: Info, viewer: models.User, conversation_pk: int | None
                               ) -> AsyncGenerator[types.ConversationEvent, None]:
    def accept(event: ConversationChanged) -> bool:
        return conversation_pk in (None, event.conversation_id)

    async def roots(payload: dict, event: ConversationChanged) -> list[types.ConversationEvent]:
        return [shared_root(payload, ("ConversationEvent",), lambda: types.ConversationEvent.of_broadcast(event))]

    async with _subscribe(viewer, ConversationChanged, accept) as sub:
        async for root in _live(info, sub, roots):
            yield root


async def notification_received(info: Info) -> AsyncGenerator[notification_types.Notification, None]:
    return _notification_stream(info, info.context.viewer)


@_ends_if_backend_unavailable
async def _notification_stream(info: Info, viewer: models.User
                               ) -> AsyncGenerator[notification_types.Notification, None]:
    # NotificationReceived.may_see: the one user it is for, on each of their sockets.
    async def roots(payload: dict, event: NotificationReceived) -> list[notification_types.Notification]:
        row = await models.Notification.get_or_none(id=event.notification_id, user_id=viewer.id)
        if row is None:
            return []
        accessible = frozenset(await access.accessible_channel_ids(viewer))
        return [notification_types.Notification.of(row, accessible)]

    # Read per viewer and rare: not worth direct delivery.
    async with _subscribe(viewer, NotificationReceived, lambda event: True) as sub:
        async for root in _live(info, sub, roots, hand_over=False):
            yield root
