"""What a resuming client missed (SPEC §6): each live stream's persisted items after a
cursor, in the order they committed, that the viewer may see.

Every stream has positions that commit in order within a company, so that a reader
who has seen position N has seen every position below it:
- messages (`messageAdded`): their ids;
- message changes (`messageUpdated`): `message.update_seq`, drawn from the same
  sequence as message ids when a status changes (a message never changed is at its id);
- conversation events (`conversationChanged`): their ids;
- notifications (`notificationReceived`): their ids.
Every transaction that hands out one of these takes the company's order lock first
(`lock_company_order`, PostgreSQL; SQLite runs one transaction at a time), and a live
stream starts at a horizon read under that lock shared."""
from __future__ import annotations

from dataclasses import dataclass
from tortoise.transactions import in_transaction

from models import ConversationEvent, Message, Notification, User

from . import sql
from .errors import BadInput

# The advisory lock's first key: the company's order of messages, changes, events and
# notifications (pg_advisory_xact_lock(ORDER_LOCK, company_id)).
ORDER_LOCK = 7_100

# Positions of messages and their changes share the message table's id sequence.
SEQUENCES = {"message": "message", "update": "message", "event": "conversation_event",
             "notification": "notification"}


async def lock_company_order(company_id: int) -> None:
    """Taken first in a transaction that hands out positions of the company's streams:
    they then commit in the order they are handed out. A no-op on SQLite."""
    if sql.is_postgres():
        await sql.fetch("SELECT pg_advisory_xact_lock(?, ?)", ORDER_LOCK, company_id)


async def horizon(company_id: int, stream: str) -> int:
    """A position H of `stream` such that every item of the company up to H has
    committed and every later one will get a position above H: where a live stream that
    starts now takes over from what is stored."""
    table = SEQUENCES[stream]
    if not sql.is_postgres():
        rows = await sql.fetch("SELECT seq FROM sqlite_sequence WHERE name = ?", table)
        return rows[0]["seq"] if rows else 0
    async with in_transaction():
        # Shared: it waits for a writer of the company to commit, readers don't wait.
        await sql.fetch("SELECT pg_advisory_xact_lock_shared(?, ?)", ORDER_LOCK, company_id)
        rows = await sql.fetch(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence(?, 'id')::regclass), 0) AS h", table)
        return rows[0]["h"]


async def next_update_positions(count: int) -> list[int]:
    """`count` positions for changes of messages, ascending, above every message id and
    change handed out so far; called under the company's order lock."""
    if sql.is_postgres():
        rows = await sql.fetch("SELECT nextval(pg_get_serial_sequence('message', 'id')) AS position"
                               " FROM generate_series(1, ?)", count)
        return sorted(row["position"] for row in rows)
    # AUTOINCREMENT: SQLite hands out ids above sqlite_sequence's value, never reused.
    top = (await sql.fetch("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'message' RETURNING seq AS top",
                           count))[0]["top"]
    return list(range(top - count + 1, top + 1))


async def mark_changed(message_ids: list[int]) -> dict[int, int]:
    """Moves each message to a new position of the `messageUpdated` stream, in the order
    given; returns message id -> position. Called under the company's order lock."""
    if not message_ids:
        return {}
    positions = dict(zip(message_ids, await next_update_positions(len(message_ids))))
    cases = " ".join("WHEN ? THEN CAST(? AS BIGINT)" for _ in positions)
    ids, params = sql.in_list(positions)
    await sql.execute(f"UPDATE message SET update_seq = CASE id {cases} END WHERE id IN {ids}",
                      *[value for pair in positions.items() for value in pair], *params)
    return positions


def check_cursor(after: int | None, current: int) -> None:
    """A cursor beyond every position this deployment has handed out was not made here
    (another deployment, a database restored from a backup): the client must refetch."""
    if after is not None and after > current:
        raise BadInput("this cursor is not known here: refetch, then subscribe without it",
                       reason="CURSOR_EXPIRED")


# -- reading what was missed --------------------------------------------------------------

@dataclass(frozen=True)
class Missed:
    """Items of a stream in (after, through], in position order, with the channel each
    belongs to (None when every row is the viewer's own: notifications). Who may see
    which is the caller's to decide: as of each item's event when it was heard live,
    else as of now."""

    rows: list
    channel_of: dict[int, int] | None = None  # position -> channel id


def position_of(row) -> int:
    if isinstance(row, Message):
        return row.update_seq or row.id
    return row.id


async def events_between(company_id: int, after: int, through: int, limit: int = 500) -> Missed:
    """Conversation events of the company in (after, through]. A DELETED conversation's
    event stays (its conversation row too), so it reaches whoever may see its channel."""
    found = await sql.fetch(
        f"SELECT {sql.columns(ConversationEvent, 'e')}, c.channel_id AS channel_of_event FROM conversation_event e"
        " JOIN conversation c ON c.id = e.conversation_id WHERE e.company_id = ? AND e.id > ? AND e.id <= ?"
        " ORDER BY e.id LIMIT ?", company_id, after, through, limit)
    rows = [sql.build(ConversationEvent, row, "e") for row in found]
    return Missed(rows, {event.id: row["channel_of_event"] for row, event in zip(found, rows)})


async def changes_between(company_id: int, after: int, through: int, limit: int = 500) -> Missed:
    """Messages of the company whose latest change is in (after, through], each once, in
    the order of that change; messages of deleted conversations are erased with them."""
    rows = await (Message.filter(company_id=company_id, update_seq__gt=after, update_seq__lte=through)
                  .order_by("update_seq").limit(limit))
    return Missed(rows, {row.update_seq: row.channel_id for row in rows})


async def notifications_between(viewer: User, after: int, through: int, limit: int = 500) -> Missed:
    """The viewer's own notifications in (after, through]: each is for one user only."""
    return Missed(await Notification.filter(user_id=viewer.id, id__gt=after, id__lte=through)
                  .order_by("id").limit(limit))
