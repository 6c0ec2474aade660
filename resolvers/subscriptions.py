"""Resolvers of Subscription: replay after a cursor, then the live stream of the
viewer's company topic (subscriptions/), filtered to what the viewer may see."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import AsyncGenerator, Optional

import strawberry
from strawberry.types import Info

import models
from inbox import access, replay, sections
from inbox.events import ConversationChanged, MessageAdded, MessageUpdated, NotificationReceived, company_topic, decoded
from inbox.messages import committed_horizon
from schema import notifications as notification_types, types
from schema.ids import (parse_event_cursor, parse_message_cursor, parse_notification_cursor, parse_update_cursor,
                        pk_of)
from subscriptions import direct
from subscriptions.fanout import shared_root
from subscriptions.hub import TRY_AGAIN_LATER, BackendLost, Overflowed
from subscriptions.message_order import company_messages
from subscriptions.publish import current_hub

log = logging.getLogger(__name__)

REPLAY_BATCH = 500


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


# Who could see each recent item of the resumable streams, as its event said when this
# process heard it: (company id, event type) -> position -> audience. Live items are
# delivered to whoever could see them then (a user given access later does not get the
# channel's earlier events; one removed gets nothing after); items older than what is
# kept here, or never heard (a replay), are judged by access now.
_HEARD: dict[tuple[int, str], dict[int, tuple[int, ...]]] = {}
# A live read spans the few events since the previous one: the latest 256 are plenty.
HEARD_PER_STREAM = 256
HEARD_STREAMS = 1024


def _hear(event) -> None:
    heard = _HEARD.get((event.company_id, event.type))
    if heard is None:
        if len(_HEARD) >= HEARD_STREAMS:
            _HEARD.clear()
        heard = _HEARD[(event.company_id, event.type)] = {}
    elif len(heard) >= HEARD_PER_STREAM:
        for position in list(heard)[:HEARD_PER_STREAM // 2]:  # oldest first: dicts keep insertion order
            del heard[position]
    heard[event.position] = event.audience


def _subscribe(viewer: models.User, event_type, accept, *, hear: bool = False):
    """The viewer's subscription to its company topic, filtered in the hub's fan-out so
    that its buffer bounds what this viewer receives, not the company's whole traffic.
    `hear`: record who could see each event (_HEARD), for streams that read their items."""
    def wanted(payload: dict) -> bool:
        event = decoded(payload)
        if not isinstance(event, event_type):
            return False
        if hear:
            _hear(event)
        return event.may_see(viewer.id, viewer.is_admin) and accept(event)

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


class _Resumed:
    """A resumable stream's live state (conversationChanged, messageUpdated,
    notificationReceived; inbox/replay.py). Like messageAdded's, an event is a signal
    that every item of its stream up to its position has committed: it turns into the
    items in (last, position] that the viewer may see, in position order, so that
    events that reach this process out of order (two processes committing) never make
    the client's cursor skip an item."""

    __slots__ = ("viewer", "event_type", "conversation_pk", "last", "read", "root", "shared")

    def __init__(self, viewer: models.User, event_type, conversation_pk: int | None, last: int, read, root,
                 shared: bool = True) -> None:
        self.viewer = viewer
        self.event_type = event_type.type
        self.conversation_pk = conversation_pk
        self.last = last
        # read(last, through, limit) -> replay.Missed: the stream's items in (last, through];
        # root(payload or None, row) -> what is yielded for a row.
        self.read = read
        self.root = root
        # Whether subscribers at the same position may share a read (their filters differ
        # only in what each may see).
        self.shared = shared

    def accept(self, event) -> bool:
        return event.position > self.last and self.conversation_pk in (None, event.conversation_id)

    async def batch(self, through: int, payload: dict | None = None) -> list:
        """The viewer's items of the next batch in (last, through], in order; moves `last`."""
        missed = await self._read(through, payload)
        self.last = through if len(missed.rows) < REPLAY_BATCH else replay.position_of(missed.rows[-1])
        return [self.root(payload, row) for row in await self._visible(missed, live=payload is not None)]

    async def _visible(self, missed: replay.Missed, live: bool) -> list:
        rows = [row for row in missed.rows if self.conversation_pk in (None, row.conversation_id)]
        if missed.channel_of is None or not rows:
            return rows
        heard = _HEARD.get((self.viewer.company_id, self.event_type), {}) if live else {}
        now: frozenset[int] | None = None
        visible = []
        for row in rows:
            position = replay.position_of(row)
            audience = heard.get(position)
            if audience is not None:
                if self.viewer.is_admin or self.viewer.id in audience:
                    visible.append(row)
                continue
            if now is None:
                now = frozenset(await access.accessible_channel_ids(self.viewer))
            if missed.channel_of[position] in now:
                visible.append(row)
        return visible

    async def _read(self, through: int, payload: dict | None) -> replay.Missed:
        if payload is None or not self.shared:
            return await self.read(self.last, through, REPLAY_BATCH)
        # One read per event and position, shared by every local subscriber at the same
        # position (the hub hands them all the same payload); each keeps what it may see.
        reads = payload.setdefault("_missed", {})
        task = reads.get(self.last)
        if task is None:
            task = reads[self.last] = asyncio.ensure_future(self.read(self.last, through, REPLAY_BATCH))
        return await asyncio.shield(task)

    async def roots(self, payload: dict, event) -> list:
        found = []
        while self.last < event.position:
            found += await self.batch(event.position, payload)
        return found


@_ends_if_backend_unavailable
async def _resumable_stream(info: Info, event_type, state: _Resumed, replaying: bool,
                            hand_over: bool = True) -> AsyncGenerator:
    viewer = state.viewer
    # A notification is its one user's own: nobody else's events to hear.
    async with _subscribe(viewer, event_type, state.accept, hear=state.shared) as sub:
        # Subscribed first, then the horizon: every item up to it is stored, every later
        # one reaches this subscription as an event.
        horizon = await replay.horizon(viewer.company_id, event_type.stream)
        # Set up: a long replay to a slow client must not hold up others' set-ups.
        direct.settled()
        while replaying and state.last < horizon:
            for root in await state.batch(horizon):
                yield root
        state.last = max(state.last, horizon)
        async for root in _live(info, sub, state.roots, hand_over):
            yield root


async def _resume_from(viewer: models.User, stream: str, after: int | None) -> int:
    """Where a stream with this `after` starts; CURSOR_EXPIRED for a cursor not made here."""
    if after is not None:
        replay.check_cursor(after, await replay.horizon(viewer.company_id, stream))
    return after or 0


async def message_updated(info: Info, conversation_id: Optional[strawberry.ID] = None,
                          after: Optional[str] = None) -> AsyncGenerator[types.Message, None]:
    viewer = info.context.viewer
    conversation_pk = await _visible_conversation_pk(viewer, conversation_id)
    after_position = parse_update_cursor(after)
    last = await _resume_from(viewer, MessageUpdated.stream, after_position)

    async def read(last: int, through: int, limit: int) -> replay.Missed:
        return await replay.changes_between(viewer.company_id, last, through, limit)

    def root(payload: dict | None, row: models.Message) -> types.Message:
        return types.Message.of(row) if payload is None else _shared_message(payload, row)

    state = _Resumed(viewer, MessageUpdated, conversation_pk, last, read, root)
    return _resumable_stream(info, MessageUpdated, state, after_position is not None)


async def conversation_changed(info: Info, conversation_id: Optional[strawberry.ID] = None,
                               after: Optional[str] = None) -> AsyncGenerator[types.ConversationEvent, None]:
    viewer = info.context.viewer
    conversation_pk = await _visible_conversation_pk(viewer, conversation_id)
    after_event = parse_event_cursor(after)
    last = await _resume_from(viewer, ConversationChanged.stream, after_event)

    async def read(last: int, through: int, limit: int) -> replay.Missed:
        return await replay.events_between(viewer.company_id, last, through, limit)

    def root(payload: dict | None, row: models.ConversationEvent) -> types.ConversationEvent:
        if payload is None:
            return types.ConversationEvent.of(row)
        return shared_root(payload, ("ConversationEvent", row.id), lambda: types.ConversationEvent.of(row))

    state = _Resumed(viewer, ConversationChanged, conversation_pk, last, read, root)
    return _resumable_stream(info, ConversationChanged, state, after_event is not None)


async def notification_received(info: Info, after: Optional[str] = None
                                ) -> AsyncGenerator[notification_types.Notification, None]:
    viewer = info.context.viewer
    after_id = parse_notification_cursor(after)
    last = await _resume_from(viewer, NotificationReceived.stream, after_id)
    # Channels the viewer has access to, read with each batch: a notification of a
    # channel they lost keeps its kind and time, not its conversation.
    accessible: dict[int, frozenset[int]] = {}

    async def read(last: int, through: int, limit: int) -> replay.Missed:
        accessible[viewer.id] = frozenset(await access.accessible_channel_ids(viewer))
        return await replay.notifications_between(viewer, last, through, limit)

    def root(payload: dict | None, row: models.Notification) -> notification_types.Notification:
        return notification_types.Notification.of(row, accessible[viewer.id])

    # Each notification is one user's: nothing to share. Rare: not worth direct delivery.
    state = _Resumed(viewer, NotificationReceived, None, last, read, root, shared=False)
    return _resumable_stream(info, NotificationReceived, state, after_id is not None, False)
