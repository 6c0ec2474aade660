"""Inbound messages, shared by every messaging app's path: the first message of a
contact opens a conversation, a message into a CLOSED one reopens it, into a
deleted one restores it; one message per messaging-app message id.

Messages that arrive together are stored together (inbox/group_commit.py): one
transaction and a fixed number of bulk statements for the whole batch, not a dozen
statements per message. Each message keeps its own outcome, and the batch's events
are published after its commit."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from borrowed.tortoise import row_instance

from models import Channel, Conversation, ConversationStatus, DeliveryStatus, EventKind, Message, MessageDirection

from . import media, notes, notifications, sql, validation
from .conversations import erase_history
from .errors import BadInput, NotFound
from .events import MessageAdded, NewEvent, message_columns, record_events
from .group_commit import GroupCommit
from .replay import ORDER_LOCK, lock_company_order
from .transaction import Action, action, committed

log = logging.getLogger(__name__)

# Bounds the parameters of one statement (SQLite and PostgreSQL take some 32,000).
MAX_BATCH = 128


@dataclass
class Inbound:
    external_message_id: str
    sender_external_id: str
    # None when the messaging app does not say (Messenger): a new contact is then
    # called `default_name` until its profile arrives.
    sender_name: str | None
    body: str | None
    sent_at: datetime | None = None
    avatar_url: str | None = None
    default_name: str = "Unknown contact"
    # As stored (inbox/attachments.py): parsed from a messaging app, or checked from a partner's.
    attachments: list[dict] | None = None




async def committed_horizon(company_id: int) -> int:
    """An id H such that every message of the company up to H has committed and every
    later one will get an id above H: where a live stream that starts now takes over
    from what is already stored. On PostgreSQL, the lock of `lock_company_order` (shared,
    so readers do not wait for each other) waits for a message being written, then the
    largest id of the whole table is such an H: the next writer of the company takes
    the lock after us and a sequence value above every one handed out so far."""
    if not sql.is_postgres():
        return (await sql.fetch("SELECT COALESCE(MAX(id), 0) AS horizon FROM message"))[0]["horizon"]
    async with in_transaction():
        await sql.fetch("SELECT pg_advisory_xact_lock_shared(?, ?)", ORDER_LOCK, company_id)
        return (await sql.fetch("SELECT COALESCE(MAX(id), 0) AS horizon FROM message"))[0]["horizon"]


@dataclass(frozen=True)
class Received:
    message: Message
    created: bool
    # The contact's name as the new message leaves it; None when the message was stored before.
    contact_name: str | None
    # Its conversation as the new message left it (None when the message was stored before):
    # what a caller answers with, without reading it again.
    conversation: Conversation | None = None


@dataclass(frozen=True)
class _Checked:
    """An inbound message on its channel, validated."""

    channel: Channel
    external_id: str
    sender_id: str
    name: str | None
    body: str
    avatar: str | None
    sent_at: datetime
    default_name: str
    attachments: list[dict] | None


def _checked(channel: Channel, inbound: Inbound) -> _Checked:
    external_id = validation.text(inbound.external_message_id, "externalMessageId")
    sender_id = validation.text(inbound.sender_external_id, "sender.externalId")
    name = validation.text(inbound.sender_name, "sender.name", required=inbound.sender_name is not None)
    # A message that is only files has an empty body.
    body = validation.body(inbound.body) if not inbound.attachments or (inbound.body or "").strip() else ""
    avatar = validation.text(inbound.avatar_url, "sender.avatarUrl", 2048, required=False)
    sent_at = inbound.sent_at or datetime.now(timezone.utc)
    if sent_at.tzinfo is None:
        raise BadInput("sentAt needs an explicit UTC offset")
    return _Checked(channel, external_id, sender_id, name, body, avatar, sent_at, inbound.default_name,
                    inbound.attachments or None)


async def receive(channel: Channel, inbound: Inbound) -> tuple[Message, bool]:
    """Stores an inbound message once; returns it and whether it is new."""
    received, = await receive_all([(channel, inbound)])
    return received.message, received.created


async def receive_all(inbounds: list[tuple[Channel, Inbound]]) -> list[Received]:
    """Stores inbound messages once each, in this order. All are checked first: a bad one
    (BadInput) stores none. NotFound: a channel was uninstalled meanwhile."""
    checked = [_checked(channel, inbound) for channel, inbound in inbounds]
    return await _writer.submit(checked) if checked else []


async def _store(batch: list[_Checked]) -> list[Received | Exception]:
    try:
        return await _store_batch(batch)
    except IntegrityError:
        if len(batch) > 1:
            raise  # the group commit stores them one by one
        # A concurrent delivery of the same message id (by another process) won the race.
        existing = await Message.get_or_none(channel_id=batch[0].channel.id, external_id=batch[0].external_id)
        if existing is None:
            raise
        return [Received(existing, False, None)]


_writer: GroupCommit[_Checked, Received] = GroupCommit(_store, MAX_BATCH)


@dataclass
class _Thread:
    """A contact with its conversation, as the batch finds and leaves them."""

    channel: Channel
    sender_id: str
    contact_id: int | None
    name: str
    avatar: str | None
    renamed: bool = False
    conversation_id: int | None = None
    status: ConversationStatus = ConversationStatus.OPEN
    assignee_id: int | None = None
    deleted: bool = False
    # What the batch's first message does to the conversation: CREATED, RESTORED, REOPENED.
    change: EventKind | None = None


async def _installed_members(channel_ids: list[int]) -> tuple[dict[int, tuple[int, ...]], int]:
    """The members of each channel still installed: a channel uninstalled since its webhook
    or token was checked (by another process, say) is missing. And the largest message id
    committed so far: taken under the companies' order locks, every message of these
    companies written before the batch is at or below it, and none will be between it and
    the batch's (the message events' `follows`)."""
    channels, params = sql.in_list(channel_ids)
    members: dict[int, list[int]] = {}
    last_message = 0
    for row in await sql.fetch(
            "SELECT c.id AS channel_id, m.user_id, (SELECT MAX(id) FROM message) AS last_message"
            " FROM channel c LEFT JOIN channel_member m ON m.channel_id = c.id"
            f" WHERE c.id IN {channels} AND c.uninstalled_at IS NULL ORDER BY m.id", *params):
        users = members.setdefault(row["channel_id"], [])
        if row["user_id"] is not None:
            users.append(row["user_id"])
        last_message = row["last_message"] or 0
    return {channel_id: tuple(users) for channel_id, users in members.items()}, last_message


async def _stored_ids(batch: list[_Checked]) -> dict[tuple[int, str], int]:
    where, params = sql.pairs_in([(item.channel.id, item.external_id) for item in batch], "channel_id", "external_id")
    return {(row["channel_id"], row["external_id"]): row["id"]
            for row in await sql.fetch(f"SELECT id, channel_id, external_id FROM message WHERE {where}", *params)}


async def _threads(items: list[_Checked], now: datetime) -> dict[tuple[int, str], _Thread]:
    """Each sender's contact and conversation, created, renamed, restored or reopened as
    its messages of the batch require, in the order they came."""
    where, params = sql.pairs_in([(item.channel.id, item.sender_id) for item in items],
                                 "ct.channel_id", "ct.external_id")
    threads: dict[tuple[int, str], _Thread] = {}
    channels = {item.channel.id: item.channel for item in items}
    for row in await sql.fetch(
            "SELECT ct.id AS contact_id, ct.channel_id, ct.external_id, ct.name, ct.avatar_url,"
            " cv.id AS conversation_id, cv.status, cv.assignee_id, cv.deleted_at"
            f" FROM contact ct LEFT JOIN conversation cv ON cv.contact_id = ct.id WHERE {where}", *params):
        threads[(row["channel_id"], row["external_id"])] = _Thread(
            channels[row["channel_id"]], row["external_id"], row["contact_id"], row["name"], row["avatar_url"],
            conversation_id=row["conversation_id"], status=ConversationStatus(row["status"] or "OPEN"),
            assignee_id=row["assignee_id"], deleted=row["deleted_at"] is not None)
    for item in items:
        thread = threads.get((item.channel.id, item.sender_id))
        if thread is None:
            threads[(item.channel.id, item.sender_id)] = _Thread(item.channel, item.sender_id, None,
                                                                 item.name or item.default_name, item.avatar)
        elif (item.name and thread.name != item.name) or (item.avatar and thread.avatar != item.avatar):
            thread.name = item.name or thread.name
            thread.avatar = item.avatar or thread.avatar
            thread.renamed = thread.contact_id is not None
    for thread in threads.values():
        if thread.conversation_id is None:
            thread.change = EventKind.CREATED
        elif thread.deleted:
            thread.change, thread.assignee_id = EventKind.RESTORED, None
        elif thread.status is ConversationStatus.CLOSED:
            thread.change = EventKind.REOPENED
        thread.status = ConversationStatus.OPEN
    await _save_threads(list(threads.values()), now)
    return threads


async def _save_threads(threads: list[_Thread], now: datetime) -> None:
    created = {(row["channel_id"], row["external_id"]): row["id"] for row in await sql.insert(
        "contact", ("company_id", "channel_id", "external_id", "name", "avatar_url"),
        [(t.channel.company_id, t.channel.id, t.sender_id, t.name, t.avatar) for t in threads if t.contact_id is None],
        returning="id, channel_id, external_id")}
    for thread in threads:
        if thread.contact_id is None:
            thread.contact_id = created[(thread.channel.id, thread.sender_id)]
        elif thread.renamed:
            await sql.execute("UPDATE contact SET name = ?, avatar_url = ? WHERE id = ?",
                              thread.name, thread.avatar, thread.contact_id)
    opened = {row["contact_id"]: row["id"] for row in await sql.insert(
        "conversation", ("company_id", "channel_id", "contact_id", "status", "created_at", "activity_at"),
        [(t.channel.company_id, t.channel.id, t.contact_id, ConversationStatus.OPEN.value, now, now)
         for t in threads if t.conversation_id is None],
        returning="id, contact_id")}
    for thread in threads:
        if thread.conversation_id is None:
            thread.conversation_id = opened[thread.contact_id]
        elif thread.deleted:
            # Restored: it keeps its id, and only the messages from now on.
            await erase_history(thread.conversation_id)


async def _store_batch(batch: list[_Checked]) -> list[Received | Exception]:
    now = datetime.now(timezone.utc)
    act = Action()
    try:
        # SQLite: the whole transaction in one hand-off to its thread, not one per statement.
        outcomes = await sql.transaction_at_once(lambda: _write_batch(batch, now, act))
    except sql.NotAtOnce as error:
        # Rolled back (a rare path waited for something else): the usual way.
        log.info("a batch of %d went the usual way: %s", len(batch), error)
        async with action() as act:
            return await _write_batch(batch, now, act)
    await committed(act)
    return outcomes


async def _write_batch(batch: list[_Checked], now: datetime, act: Action) -> list[Received | Exception]:
    outcomes: list[Received | Exception | None] = [None] * len(batch)
    for company_id in sorted({item.channel.company_id for item in batch}):
        await lock_company_order(company_id)
    members, last_message = await _installed_members(sorted({item.channel.id for item in batch}))
    # Checked under the lock only: a redelivery is rare, a new message is the hot path.
    stored = await _stored_ids(batch)
    firsts: dict[tuple[int, str], int] = {}  # a message id's first new delivery in the batch
    again: dict[int, int] = {}  # a later delivery -> the first
    new: list[int] = []
    for index, item in enumerate(batch):
        key = (item.channel.id, item.external_id)
        if item.channel.id not in members:
            outcomes[index] = NotFound("channel not found")
        elif key in firsts:
            again[index] = firsts[key]
        elif key not in stored:
            firsts[key] = index
            new.append(index)
    if new:
        messages = await _store_new([batch[index] for index in new], members, last_message, now, act)
        for index, received in zip(new, messages):
            outcomes[index] = received
    for index, first in again.items():
        outcomes[index] = Received(outcomes[first].message, False, None)
    stored_before = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if stored_before:
        rows = {row.id: row for row in await Message.filter(
            id__in=[stored[(batch[i].channel.id, batch[i].external_id)] for i in stored_before])}
        for index in stored_before:
            outcomes[index] = Received(rows[stored[(batch[index].channel.id, batch[index].external_id)]],
                                       False, None)
    return outcomes


async def _store_new(items: list[_Checked], members: dict[int, tuple[int, ...]], last_message: int,
                     now: datetime, act: Action) -> list[Received]:
    threads = await _threads(items, now)
    for item in items:
        media.keep(item.attachments)  # their ids go into the stored JSON
    thread_of = [threads[(item.channel.id, item.sender_id)] for item in items]
    ids = {(row["channel_id"], row["external_id"]): row["id"] for row in await sql.insert(
        "message", ("company_id", "channel_id", "conversation_id", "direction", "body", "sent_at", "status",
                    "external_id", "created_at", "attachments"),
        [(item.channel.company_id, item.channel.id, thread.conversation_id, MessageDirection.INBOUND.value,
          item.body, item.sent_at, DeliveryStatus.RECEIVED.value, item.external_id, now,
          json.dumps(item.attachments) if item.attachments else None)
         for item, thread in zip(items, thread_of)],
        returning="id, channel_id, external_id")}
    messages = [row_instance(
        Message,
        id=ids[(item.channel.id, item.external_id)], company_id=item.channel.company_id, channel_id=item.channel.id,
        conversation_id=thread.conversation_id, direction=MessageDirection.INBOUND, body=item.body,
        sent_at=item.sent_at, status=DeliveryStatus.RECEIVED, author_id=None, external_id=item.external_id,
        client_message_id=None, failure_reason=None, created_at=now, update_seq=None,
        attachments=item.attachments)
        for item, thread in zip(items, thread_of)]
    if await media.queue_fetches(messages):
        act.on_commit(media.wake)
    conversation_ids = sorted({thread.conversation_id for thread in thread_of})
    conversations, params = sql.in_list(conversation_ids)
    # Open (a restored one unassigned), and its latest message is the batch's: ids grow,
    # and the company's lock holds other writers off.
    # The contact's latest message by the app's clock starts its reply window (inbox/apps.py):
    # the batch's latest, unless one stored before is later (the app delivered out of order).
    latest = ("(SELECT MAX(m.sent_at) FROM message m WHERE m.conversation_id = conversation.id AND m.id >= ?"
              " AND m.direction = 'INBOUND')")
    greatest = "GREATEST" if sql.is_postgres() else "MAX"
    updated = {row.id: row for row in (sql.build(Conversation, found, "c") for found in await sql.fetch(
        "UPDATE conversation SET status = ?, deleted_at = NULL,"
        " assignee_id = CASE WHEN deleted_at IS NULL THEN assignee_id END,"
        " last_message_id = (SELECT MAX(m.id) FROM message m WHERE m.conversation_id = conversation.id),"
        f" last_inbound_at = {greatest}(COALESCE(last_inbound_at, {latest}), {latest}),"
        f" activity_at = ? WHERE id IN {conversations} RETURNING {sql.returning(Conversation, 'c')}",
        ConversationStatus.OPEN.value, min(ids.values()), min(ids.values()), now, *params))}
    await notes.on_messages(messages)
    events, announced = [], set()
    for item, thread, message in zip(items, thread_of, messages):
        audience = members[item.channel.id]
        if thread.change is not None and thread.conversation_id not in announced:
            announced.add(thread.conversation_id)
            events.append(NewEvent(item.channel.company_id, item.channel.id, thread.conversation_id, thread.change,
                                   audience))
        events.append(NewEvent(item.channel.company_id, item.channel.id, thread.conversation_id,
                               EventKind.MESSAGE_ADDED, audience, message.id))
    broadcasts = iter(await record_events(events, now))
    # Each message's company's previous message: the batch's one before it, else one at or
    # below `last_message`.
    follows: dict[int, int] = {}
    previous: dict[int, int] = {}
    by_id = {message.id: message for message in messages}
    for message in sorted(messages, key=lambda message: message.id):
        follows[message.id] = previous.get(message.company_id, last_message)
        previous[message.company_id] = message.id
    for event, broadcast in zip(events, broadcasts):
        if event.kind is EventKind.MESSAGE_ADDED:
            act.emit(MessageAdded(company_id=event.company_id, channel_id=event.channel_id,
                                  conversation_id=event.conversation_id, audience=event.audience,
                                  message_id=event.message_id, message=message_columns(by_id[event.message_id]),
                                  follows=follows[event.message_id]))
        act.emit(broadcast)
    await notifications.on_inbound_messages(act, [
        notifications.Arrival(item.channel.company_id, item.channel.id, thread.conversation_id, thread.assignee_id,
                              members[item.channel.id], message)
        for item, thread, message in zip(items, thread_of, messages)])
    return [Received(message, True, thread.name, updated[thread.conversation_id])
            for message, thread in zip(messages, thread_of)]
