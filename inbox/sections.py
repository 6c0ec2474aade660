"""Reading the inbox (SPEC §2): sections with keyset cursors, counts, unread state,
assignable users and a conversation's messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Awaitable, Callable

from tortoise.expressions import Q
from tortoise.filters import escape_like

from models import Contact, Conversation, ConversationEvent, ConversationStatus, Message, MessageDirection, User

from . import sql, validation
from .errors import BadInput
from .access import accessible_channel_ids, visible_channel, visible_conversation

MAX_PAGE = 100


class Section(str, Enum):
    UNASSIGNED = "UNASSIGNED"
    ASSIGNED_TO_ME = "ASSIGNED_TO_ME"
    ASSIGNED_TO_OTHERS = "ASSIGNED_TO_OTHERS"
    CLOSED = "CLOSED"


def section_of(conversation: Conversation, viewer_id: int | None) -> Section:
    if conversation.status is ConversationStatus.CLOSED:
        return Section.CLOSED
    if conversation.assignee_id is None:
        return Section.UNASSIGNED
    return Section.ASSIGNED_TO_ME if conversation.assignee_id == viewer_id else Section.ASSIGNED_TO_OTHERS


@dataclass(frozen=True)
class ConversationKey:
    """Position in a section: latest activity, then id, both descending."""

    activity_at: datetime
    id: int


@dataclass
class InboxEntry:
    """A conversation of a section page with what the inbox shows of it, read in the
    page's statement: the page's fields answer from here, not with a query each."""

    conversation: Conversation
    contact: Contact
    assignee: User | None
    last_message: Message | None
    # The last message's sender as `Message.senderName` shows it.
    last_sender_name: str | None
    unread: int


@dataclass
class Page:
    entries: list[InboxEntry]
    has_next: bool
    # Counts the whole section (without the cursor), when awaited.
    count: Callable[[], Awaitable[int]] | None = None


def page_size(first: int | None, default: int = 25) -> int:
    if first is None:
        return default
    if first < 0:
        raise BadInput("first must not be negative")
    return min(first, MAX_PAGE)


def sender_name(message: Message, contact_name: str | None, author_name: str | None) -> str:
    """What `Message.senderName` shows: the contact's current name, or the author's."""
    if message.direction is MessageDirection.OUTBOUND:
        return author_name or "Deleted user"
    return contact_name or "Unknown contact"


# SQL condition on `message u`: an inbound message of conversation `c` that the viewer
# has not read (one `?`: the viewer's id). The one rule of unreadCount and inboxCounts.
_UNREAD = """u.conversation_id = c.id AND u.direction = 'INBOUND'
             AND u.id > COALESCE((SELECT r.last_read_message_id FROM read_state r
                                  WHERE r.conversation_id = c.id AND r.user_id = ?), 0)"""


async def _channel_ids(viewer: User, channel_id: int | None) -> list[int]:
    """The channels whose conversations the viewer sees: all, or the one asked for."""
    if channel_id is not None:
        return [(await visible_channel(viewer, channel_id)).id]
    return await accessible_channel_ids(viewer)


async def _section_filter(viewer: User, section: Section, channel_id: int | None,
                          search: str | None) -> tuple[str, str, list]:
    """FROM and WHERE of the conversations of a section the viewer may see (alias `c`),
    with their parameters."""
    channels, params = sql.in_list(await _channel_ids(viewer, channel_id) or [0])
    tables = "conversation c"
    where = [f"c.company_id = ? AND c.deleted_at IS NULL AND c.channel_id IN {channels}"]
    params = [viewer.company_id, *params]
    if section is Section.CLOSED:
        where.append("c.status = 'CLOSED'")
    elif section is Section.UNASSIGNED:
        where.append("c.status = 'OPEN' AND c.assignee_id IS NULL")
    elif section is Section.ASSIGNED_TO_ME:
        where.append("c.status = 'OPEN' AND c.assignee_id = ?")
        params.append(viewer.id)
    else:
        where.append("c.status = 'OPEN' AND c.assignee_id IS NOT NULL AND c.assignee_id <> ?")
        params.append(viewer.id)
    if search:
        # As the ORM's icontains says it (UPPER is Unicode-aware on SQLite too: server/db.py).
        pattern = f"%{escape_like(search)}%"
        tables += " JOIN contact sc ON sc.id = c.contact_id"
        where.append(r"""(UPPER(sc.name) LIKE UPPER(?) ESCAPE '\'
                     OR c.id IN (SELECT sm.conversation_id FROM message sm
                                 WHERE sm.company_id = ? AND UPPER(sm.body) LIKE UPPER(?) ESCAPE '\'))""")
        params += [pattern, viewer.company_id, pattern]
    return tables, " AND ".join(where), params


async def section_page(viewer: User, section: Section, *, channel_id: int | None, search: str | None,
                       first: int | None, after: ConversationKey | None) -> Page:
    """One page of a section and everything the inbox shows of its conversations, in
    one statement whatever the page size."""
    size = page_size(first)
    tables, where, params = await _section_filter(viewer, section, channel_id, validation.search(search))

    async def count() -> int:
        # Counted only when asked for (totalCount): on a large section the count costs
        # several times the page itself.
        rows = await sql.fetch(f"SELECT COUNT(*) AS n FROM {tables} WHERE {where}", *params)
        return int(rows[0]["n"])

    page_where, page_params = where, list(params)
    if after is not None:
        # Keyset: stable while messages move conversations to the top.
        page_where += " AND (c.activity_at, c.id) < (?, ?)"
        page_params += [after.activity_at, after.id]
    rows = await sql.fetch(
        f"""
        SELECT {sql.columns(Conversation, "c")}, {sql.columns(Contact, "ct")}, {sql.columns(Message, "m")},
               {sql.columns(User, "a")}, au.name AS author_name,
               (SELECT COUNT(*) FROM message u WHERE {_UNREAD}) AS unread
        FROM (SELECT c.* FROM {tables} WHERE {page_where}
              ORDER BY c.activity_at DESC, c.id DESC LIMIT ?) c
        JOIN contact ct ON ct.id = c.contact_id
        LEFT JOIN message m ON m.id = c.last_message_id
        LEFT JOIN "user" a ON a.id = c.assignee_id
        LEFT JOIN "user" au ON au.id = m.author_id
        ORDER BY c.activity_at DESC, c.id DESC
        """,
        viewer.id, *page_params, size + 1)
    entries = [_entry(row) for row in rows[:size]]
    return Page(entries, len(rows) > size, count=count)


def _entry(row: dict) -> InboxEntry:
    contact = sql.build(Contact, row, "ct")
    message = sql.build(Message, row, "m")
    sender = sender_name(message, contact.name, row["author_name"]) if message is not None else None
    return InboxEntry(conversation=sql.build(Conversation, row, "c"), contact=contact,
                      assignee=sql.build(User, row, "a"), last_message=message, last_sender_name=sender,
                      unread=int(row["unread"]))


async def counts(viewer: User, channel_id: int | None) -> dict[str, int]:
    """All five counts in one statement."""
    channels, channel_params = sql.in_list(await _channel_ids(viewer, channel_id))
    rows = await sql.fetch(
        f"""
        SELECT
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id IS NULL THEN 1 ELSE 0 END) AS unassigned,
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id = ? THEN 1 ELSE 0 END) AS assigned_to_me,
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id <> ? THEN 1 ELSE 0 END) AS assigned_to_others,
          SUM(CASE WHEN c.status = 'CLOSED' THEN 1 ELSE 0 END) AS closed,
          SUM(CASE WHEN c.status = 'OPEN' AND EXISTS (SELECT 1 FROM message u WHERE {_UNREAD})
              THEN 1 ELSE 0 END) AS unread
        FROM conversation c
        WHERE c.company_id = ? AND c.deleted_at IS NULL AND c.channel_id IN {channels}
        """,
        viewer.id, viewer.id, viewer.id, viewer.company_id, *channel_params)
    row = rows[0] if rows else {}
    return {key: int(row.get(key) or 0)
            for key in ("unassigned", "assigned_to_me", "assigned_to_others", "closed", "unread")}


async def unread_counts(viewer_id: int, conversation_ids: list[int]) -> dict[int, int]:
    """Inbound messages the viewer has not read, for many conversations in one query."""
    if not conversation_ids:
        return {}
    ids, params = sql.in_list(conversation_ids)
    rows = await sql.fetch(f"""SELECT c.id AS cid, (SELECT COUNT(*) FROM message u WHERE {_UNREAD}) AS n
                               FROM conversation c WHERE c.id IN {ids}""", viewer_id, *params)
    return {row["cid"]: int(row["n"]) for row in rows}


async def assignable_users(viewer: User, conversation_id: int) -> list[User]:
    """Available users with access to the conversation's channel (admins, members), at
    most MAX_USERS."""
    conversation = await visible_conversation(viewer, conversation_id)
    return await (User.filter(company_id=viewer.company_id, available=True)
                  .filter(Q(is_admin=True) | Q(memberships__channel_id=conversation.channel_id))
                  .distinct().order_by("name", "id").limit(validation.MAX_USERS))


@dataclass
class MessagesPage:
    rows: list[Message]
    has_next: bool
    has_previous: bool


async def messages_pages(conversation_ids: list[int], *, first: int | None, after: int | None,
                         last: int | None, before: int | None) -> dict[int, MessagesPage]:
    """The same page of each conversation's messages, oldest first, in one statement (two
    when the cursor asks whether there are more on its other side); `last`/`before` page
    backwards from the newest."""
    backwards = last is not None and first is None
    size = page_size(last) if backwards else page_size(first, MAX_PAGE)
    where, params = "", []
    if after is not None:
        where, params = where + " AND t.id > ?", params + [after]
    if before is not None:
        where, params = where + " AND t.id < ?", params + [before]
    found = await sql.first_per(Message, "t.conversation_id", conversation_ids,
                                "t.id DESC" if backwards else "t.id", size + 1, where, *params)
    # Whether each conversation has messages on the cursor's other side.
    beyond: set[int] = set()
    if backwards and before is not None:
        beyond = await _having_messages(conversation_ids, id__gte=before)
    elif not backwards and after is not None:
        beyond = await _having_messages(conversation_ids, id__lte=after)
    pages = {}
    for conversation_id in conversation_ids:
        rows = found.get(conversation_id, [])
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            pages[conversation_id] = MessagesPage(rows[::-1], conversation_id in beyond, more)
        else:
            if last is not None:
                rows = rows[max(len(rows) - page_size(last), 0):]
            pages[conversation_id] = MessagesPage(rows, more, conversation_id in beyond)
    return pages


async def _having_messages(conversation_ids: list[int], **condition) -> set[int]:
    return set(await Message.filter(conversation_id__in=conversation_ids, **condition)
               .distinct().values_list("conversation_id", flat=True))


async def events_of(conversation_ids: list[int]) -> dict[int, list[ConversationEvent]]:
    """Each conversation's latest MAX_EVENTS events, oldest first, in one statement."""
    found = await sql.first_per(ConversationEvent, "t.conversation_id", conversation_ids, "t.id DESC",
                                validation.MAX_EVENTS)
    return {key: rows[::-1] for key, rows in found.items()}


async def replay_messages(viewer: User, after: int, conversation_id: int | None, limit: int = 500,
                          through: int | None = None) -> list[Message]:
    """Persisted messages after a cursor (and up to `through`) that the viewer may see,
    in cursor order."""
    channel_ids = await accessible_channel_ids(viewer)
    query = Message.filter(company_id=viewer.company_id, id__gt=after, channel_id__in=channel_ids or [0],
                           conversation__deleted_at__isnull=True)
    if through is not None:
        query = query.filter(id__lte=through)
    if conversation_id is not None:
        query = query.filter(conversation_id=conversation_id)
    return await query.order_by("id").limit(limit)

