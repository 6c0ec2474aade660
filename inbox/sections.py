"""Reading the inbox (SPEC §2): sections with keyset cursors, counts, unread state,
assignable users and a conversation's messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Awaitable, Callable, ClassVar

from tortoise.expressions import Q
from tortoise.filters import escape_like

from models import Contact, Conversation, ConversationEvent, ConversationStatus, Message, MessageDirection, User

from . import search_piece, sql, validation
from .errors import BadInput
from .access import accessible_channel_ids, visible_channel, visible_conversation

MAX_PAGE = 100


class Section(str, Enum):
    UNASSIGNED = "UNASSIGNED"
    ASSIGNED_TO_ME = "ASSIGNED_TO_ME"
    ASSIGNED_TO_OTHERS = "ASSIGNED_TO_OTHERS"
    CLOSED = "CLOSED"


class _Assignee(Enum):
    """Whom a section's conversations are assigned to, relative to the viewer."""

    ANY = "ANY"
    NOBODY = "NOBODY"
    VIEWER = "VIEWER"
    OTHER = "OTHER"


@dataclass(frozen=True)
class _Rule:
    """A section said once: its Python rule (`holds`), its SQL condition on `conversation c`
    (one parameter, `:viewer`) and its count's column (`key`) all come from these two fields."""

    status: ConversationStatus
    assignee: _Assignee

    def holds(self, conversation: Conversation, viewer_id: int | None) -> bool:
        if conversation.status is not self.status:
            return False
        assignee = conversation.assignee_id
        return {_Assignee.ANY: True,
                _Assignee.NOBODY: assignee is None,
                _Assignee.VIEWER: assignee is not None and assignee == viewer_id,
                _Assignee.OTHER: assignee is not None and assignee != viewer_id}[self.assignee]

    @property
    def condition(self) -> str:
        status = f"c.status = '{self.status.value}'"  # an enum value of ours, never input
        return status + {_Assignee.ANY: "",
                         _Assignee.NOBODY: " AND c.assignee_id IS NULL",
                         _Assignee.VIEWER: " AND c.assignee_id = :viewer",
                         _Assignee.OTHER: " AND c.assignee_id IS NOT NULL AND c.assignee_id <> :viewer"}[self.assignee]


# Every section, in the order section_of tries them (they do not overlap).
SECTIONS: dict[Section, _Rule] = {
    Section.CLOSED: _Rule(ConversationStatus.CLOSED, _Assignee.ANY),
    Section.UNASSIGNED: _Rule(ConversationStatus.OPEN, _Assignee.NOBODY),
    Section.ASSIGNED_TO_ME: _Rule(ConversationStatus.OPEN, _Assignee.VIEWER),
    Section.ASSIGNED_TO_OTHERS: _Rule(ConversationStatus.OPEN, _Assignee.OTHER),
}


def count_key(section: Section) -> str:
    """The section's key in `counts` (InboxCounts' field, snake case)."""
    return section.value.lower()


def section_of(conversation: Conversation, viewer_id: int | None) -> Section:
    return next(section for section, rule in SECTIONS.items() if rule.holds(conversation, viewer_id))


@dataclass(frozen=True)
class ConversationKey:
    """Position in a section: latest activity, then id, both descending. The one place of
    the sections' order: its fields, its SQL and its cursor's text."""

    activity_at: datetime
    id: int

    ORDER: ClassVar[str] = "c.activity_at DESC, c.id DESC"
    # After this key in ORDER (keyset: stable while messages move conversations to the top).
    AFTER: ClassVar[str] = "(c.activity_at, c.id) < (:after_at, :after_id)"

    @classmethod
    def of(cls, conversation: Conversation) -> "ConversationKey":
        return cls(conversation.activity_at, conversation.id)

    def params(self) -> dict:
        return {"after_at": self.activity_at, "after_id": self.id}

    def text(self) -> str:
        return f"{self.activity_at.isoformat()}|{self.id}"

    @classmethod
    def from_text(cls, text: str) -> "ConversationKey":
        """ValueError when `text` is no key's text."""
        moment, _, pk = text.rpartition("|")
        if not (pk.isascii() and pk.isdigit()) or len(pk) > 18:
            raise ValueError
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError
        return cls(when, int(pk))


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
# (`:viewer`) has not read. The one rule of unreadCount and inboxCounts.
_UNREAD = """u.conversation_id = c.id AND u.direction = 'INBOUND'
             AND u.id > COALESCE((SELECT r.last_read_message_id FROM read_state r
                                  WHERE r.conversation_id = c.id AND r.user_id = :viewer), 0)"""

# Search terms this long or longer are looked up in the trigram indexes (models/migrations/
# 0011_search_index.py); shorter ones have no trigram and scan.
INDEXED_TERM = 3
# A term the index finds in this many messages (or contacts) or more is common: a page then
# walks the section newest first and checks each conversation (the page fills at once)
# instead of reading every match; a rarer term's matches are read from the index once, and
# its page and count take those conversations alone.
COMMON_TERM_ROWS = 1000

# The ids of the conversations (`:company`'s) whose contact's name or any message contains
# the term, case-insensitively: through the trigram indexes (SQLite: FTS5 tables holding
# UPPER() of the text; PostgreSQL: pg_trgm GIN indexes on UPPER() of it, which its planner
# takes for this LIKE by itself), or, for a short term on SQLite, by a scan.
_MATCHING_INDEXED_SQLITE = """
    SELECT ms.conversation_id AS id FROM message_search ms WHERE message_search MATCH :phrase
    UNION SELECT sv.id FROM contact_search cs JOIN conversation sv ON sv.contact_id = cs.rowid
          WHERE contact_search MATCH :phrase"""
_MATCHING_LIKE = r"""
    SELECT sm.conversation_id AS id FROM message sm
    WHERE sm.company_id = :company AND UPPER(sm.body) LIKE UPPER(:pattern) ESCAPE '\'
    UNION SELECT sv.id FROM contact sc JOIN conversation sv ON sv.contact_id = sc.id
          WHERE sc.company_id = :company AND UPPER(sc.name) LIKE UPPER(:pattern) ESCAPE '\'"""
# The same rule for one conversation `c`, checked as a page walks its section (scalar
# subqueries: PostgreSQL would turn EXISTS into a hash of every matching message).
_MATCHES_ONE = r"""((SELECT 1 FROM message sm WHERE sm.conversation_id = c.id
                    AND UPPER(sm.body) LIKE UPPER(:pattern) ESCAPE '\' LIMIT 1) IS NOT NULL
                   OR (SELECT 1 FROM contact sc WHERE sc.id = c.contact_id
                       AND UPPER(sc.name) LIKE UPPER(:pattern) ESCAPE '\') IS NOT NULL)"""
# The conversations of at most COMMON_TERM_ROWS messages and as many contacts matching the
# term, through the indexes (`:k` rows of each at most): fewer than that of both, and these
# are all the matches.
_MATCHES_SQLITE = """
    SELECT ms.conversation_id AS id
    FROM (SELECT conversation_id FROM message_search WHERE message_search MATCH :phrase LIMIT :k) ms
    UNION ALL SELECT sv.id FROM (SELECT rowid AS id FROM contact_search WHERE contact_search MATCH :phrase
                                 LIMIT :k) cs JOIN conversation sv ON sv.contact_id = cs.id"""
# PostgreSQL: the index is asked for the term's rarest piece (`:body_piece`, `:name_piece`:
# inbox/search_piece.py), each row it gives checked for the whole term by `strpos`.
_MATCHES_POSTGRES = r"""
    SELECT ms.id FROM (SELECT sm.conversation_id AS id FROM message sm WHERE sm.company_id = :company
                       AND UPPER(sm.body) LIKE UPPER(:body_piece) ESCAPE '\'
                       AND strpos(UPPER(sm.body), UPPER(:term)) > 0 LIMIT :k) ms
    UNION ALL SELECT sv.id FROM (SELECT sc.id FROM contact sc WHERE sc.company_id = :company
                                 AND UPPER(sc.name) LIKE UPPER(:name_piece) ESCAPE '\'
                                 AND strpos(UPPER(sc.name), UPPER(:term)) > 0 LIMIT :k) cs
              JOIN conversation sv ON sv.contact_id = cs.id"""


@dataclass(frozen=True)
class _Search:
    """How a section reads a search term (SPEC §2: a case-insensitive substring of the
    contact's name or of any message): `where` of its page and of its count, and their
    parameters."""

    where: str
    count_where: str
    params: dict


async def _search(term: str, company_id: int) -> _Search:
    # The FTS tables hold UPPER() of the text (Python's, as the LIKE compares): a phrase of
    # the upper-cased term is the same substring match, trigram by trigram.
    params = {"pattern": f"%{escape_like(term)}%", "phrase": '"' + term.upper().replace('"', '""') + '"',
              "company": company_id}
    indexed = len(term.upper()) >= INDEXED_TERM
    if indexed:
        if sql.is_postgres():
            rows = await sql.fetch(_MATCHES_POSTGRES, **params, k=COMMON_TERM_ROWS, term=term,
                                   body_piece=await search_piece.pattern(term, "message_body_search"),
                                   name_piece=await search_piece.pattern(term, "contact_name_search"))
        else:
            rows = await sql.fetch(_MATCHES_SQLITE, **params, k=COMMON_TERM_ROWS)
        if len(rows) < COMMON_TERM_ROWS:  # a rare term: its matches are all here
            matched = sorted({row["id"] for row in rows}) or [0]
            return _Search("c.id IN :matched", "c.id IN :matched", {**params, "matched": matched})
    matching = _MATCHING_INDEXED_SQLITE if indexed and not sql.is_postgres() else _MATCHING_LIKE
    return _Search(_MATCHES_ONE, f"c.id IN ({matching})", params)


async def _channel_ids(viewer: User, channel_id: int | None) -> list[int]:
    """The channels whose conversations the viewer sees: all, or the one asked for."""
    if channel_id is not None:
        return [(await visible_channel(viewer, channel_id)).id]
    return await accessible_channel_ids(viewer)


async def section_page(viewer: User, section: Section, *, channel_id: int | None, search: str | None,
                       first: int | None, after: ConversationKey | None) -> Page:
    """One page of a section and everything the inbox shows of its conversations, in
    one statement whatever the page size."""
    size = page_size(first)
    where = (f"c.company_id = :company AND c.deleted_at IS NULL AND c.channel_id IN :channels"
             f" AND {SECTIONS[section].condition}")
    params = {"company": viewer.company_id, "viewer": viewer.id,
              "channels": await _channel_ids(viewer, channel_id) or [0]}
    count_where = where
    term = validation.search(search)
    if term:
        found = await _search(term, viewer.company_id)
        where, count_where = f"{where} AND {found.where}", f"{where} AND {found.count_where}"
        params.update(found.params)

    async def count() -> int:
        # Counted only when asked for (totalCount): on a large section the count costs
        # several times the page itself.
        rows = await sql.fetch(f"SELECT COUNT(*) AS n FROM conversation c WHERE {count_where}", **params)
        return int(rows[0]["n"])

    page_where, page_params = where, {**params, "limit": size + 1}
    if after is not None:
        page_where += f" AND {ConversationKey.AFTER}"
        page_params.update(after.params())
    rows = await sql.fetch(
        f"""
        SELECT {sql.columns(Conversation, "c")}, {sql.columns(Contact, "ct")}, {sql.columns(Message, "m")},
               {sql.columns(User, "a")}, au.name AS author_name,
               (SELECT COUNT(*) FROM message u WHERE {_UNREAD}) AS unread
        FROM (SELECT c.* FROM conversation c WHERE {page_where}
              ORDER BY {ConversationKey.ORDER} LIMIT :limit) c
        JOIN contact ct ON ct.id = c.contact_id
        LEFT JOIN message m ON m.id = c.last_message_id
        LEFT JOIN "user" a ON a.id = c.assignee_id
        LEFT JOIN "user" au ON au.id = m.author_id
        ORDER BY {ConversationKey.ORDER}
        """,
        **page_params)
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
    sums = "".join(f"SUM(CASE WHEN {rule.condition} THEN 1 ELSE 0 END) AS {count_key(section)},\n"
                   for section, rule in SECTIONS.items())
    rows = await sql.fetch(
        f"""
        SELECT {sums}
          SUM(CASE WHEN c.status = 'OPEN' AND EXISTS (SELECT 1 FROM message u WHERE {_UNREAD})
              THEN 1 ELSE 0 END) AS unread
        FROM conversation c
        WHERE c.company_id = :company AND c.deleted_at IS NULL AND c.channel_id IN :channels
        """,
        viewer=viewer.id, company=viewer.company_id, channels=await _channel_ids(viewer, channel_id))
    row = rows[0] if rows else {}
    return {key: int(row.get(key) or 0) for key in [*map(count_key, SECTIONS), "unread"]}


async def unread_counts(viewer_id: int, conversation_ids: list[int]) -> dict[int, int]:
    """Inbound messages the viewer has not read, for many conversations in one query."""
    if not conversation_ids:
        return {}
    rows = await sql.fetch(f"""SELECT c.id AS cid, (SELECT COUNT(*) FROM message u WHERE {_UNREAD}) AS n
                               FROM conversation c WHERE c.id IN :ids""", viewer=viewer_id, ids=conversation_ids)
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

