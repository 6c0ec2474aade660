"""Reading the inbox (SPEC §2): sections with keyset cursors, counts, unread state,
assignable users and a conversation's messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Awaitable, Callable

from tortoise.expressions import Q, Subquery

from models import Conversation, ConversationStatus, Message, User

from . import sql
from .errors import BadInput
from .access import accessible_channel_ids, has_access, visible_channel, visible_conversation

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
class Page:
    rows: list
    has_next: bool
    # Counts the whole section (without the cursor), when awaited.
    count: Callable[[], Awaitable[int]] | None = None


def page_size(first: int | None, default: int = 25) -> int:
    if first is None:
        return default
    if first < 0:
        raise BadInput("first must not be negative")
    return min(first, MAX_PAGE)


async def _visible_conversations(viewer: User, channel_id: int | None):
    if channel_id is not None:
        channel_ids = [(await visible_channel(viewer, channel_id)).id]
    else:
        channel_ids = await accessible_channel_ids(viewer)
    return Conversation.filter(company_id=viewer.company_id, deleted_at__isnull=True,
                               channel_id__in=channel_ids or [0])


def _in_section(query, section: Section, viewer_id: int):
    if section is Section.CLOSED:
        return query.filter(status=ConversationStatus.CLOSED)
    query = query.filter(status=ConversationStatus.OPEN)
    if section is Section.UNASSIGNED:
        return query.filter(assignee_id__isnull=True)
    if section is Section.ASSIGNED_TO_ME:
        return query.filter(assignee_id=viewer_id)
    return query.filter(assignee_id__isnull=False).exclude(assignee_id=viewer_id)


def _matching(query, company_id: int, search: str | None):
    if not search or not search.strip():
        return query
    term = search.strip()
    in_messages = Message.filter(company_id=company_id, body__icontains=term).values("conversation_id")
    return query.filter(Q(contact__name__icontains=term) | Q(id__in=Subquery(in_messages)))


async def section_page(viewer: User, section: Section, *, channel_id: int | None, search: str | None,
                       first: int | None, after: ConversationKey | None) -> Page:
    size = page_size(first)
    query = _matching(_in_section(await _visible_conversations(viewer, channel_id), section, viewer.id),
                      viewer.company_id, search)
    # Counted only when asked for (totalCount): on a large section the count costs
    # several times the page itself.
    count = query.count
    if after is not None:
        query = query.filter(Q(activity_at__lt=after.activity_at)
                             | Q(activity_at=after.activity_at, id__lt=after.id))
    rows = await query.order_by("-activity_at", "-id").limit(size + 1)
    return Page(rows[:size], len(rows) > size, count=count)


async def counts(viewer: User, channel_id: int | None) -> dict[str, int]:
    """All five counts in one statement."""
    if channel_id is not None:
        channel_ids = [(await visible_channel(viewer, channel_id)).id]
    else:
        channel_ids = await accessible_channel_ids(viewer)
    channels, channel_params = sql.in_list(channel_ids)
    rows = await sql.fetch(
        f"""
        SELECT
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id IS NULL THEN 1 ELSE 0 END) AS unassigned,
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id = ? THEN 1 ELSE 0 END) AS assigned_to_me,
          SUM(CASE WHEN c.status = 'OPEN' AND c.assignee_id <> ? THEN 1 ELSE 0 END) AS assigned_to_others,
          SUM(CASE WHEN c.status = 'CLOSED' THEN 1 ELSE 0 END) AS closed,
          SUM(CASE WHEN c.status = 'OPEN' AND EXISTS (
                SELECT 1 FROM message m WHERE m.conversation_id = c.id AND m.direction = 'INBOUND'
                  AND m.id > COALESCE((SELECT r.last_read_message_id FROM read_state r
                                       WHERE r.conversation_id = c.id AND r.user_id = ?), 0))
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
    rows = await sql.fetch(
        f"""
        SELECT m.conversation_id AS cid, COUNT(*) AS n FROM message m
        LEFT JOIN read_state r ON r.conversation_id = m.conversation_id AND r.user_id = ?
        WHERE m.conversation_id IN {ids} AND m.direction = 'INBOUND'
          AND m.id > COALESCE(r.last_read_message_id, 0)
        GROUP BY m.conversation_id
        """,
        viewer_id, *params)
    return {row["cid"]: int(row["n"]) for row in rows}


async def assignable_users(viewer: User, conversation_id: int) -> list[User]:
    conversation = await visible_conversation(viewer, conversation_id)
    candidates = await User.filter(company_id=viewer.company_id, available=True).order_by("name", "id")
    return [user for user in candidates if await has_access(user, conversation.channel_id)]


async def messages_page(conversation_id: int, *, first: int | None, after: int | None,
                        last: int | None, before: int | None) -> tuple[list[Message], bool, bool]:
    """Messages oldest first; `last`/`before` page backwards from the newest.
    Returns the rows, and whether there are more after and before them."""
    query = Message.filter(conversation_id=conversation_id)
    if after is not None:
        query = query.filter(id__gt=after)
    if before is not None:
        query = query.filter(id__lt=before)
    if last is not None and first is None:
        size = page_size(last)
        rows = list(reversed(await query.order_by("-id").limit(size + 1)))
        has_before = len(rows) > size
        rows = rows[1:] if has_before else rows
        has_after = before is not None and await Message.filter(conversation_id=conversation_id,
                                                                id__gte=before).exists()
        return rows, has_after, has_before
    size = page_size(first, MAX_PAGE)
    rows = await query.order_by("id").limit(size + 1)
    has_after = len(rows) > size
    rows = rows[:size]
    if last is not None:
        rows = rows[-page_size(last):]
    has_before = after is not None and await Message.filter(conversation_id=conversation_id,
                                                            id__lte=after).exists()
    return rows, has_after, has_before


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

