"""Seeding 100k conversations fast, straight into the database.

Rows are CLONED from template rows that the real inbound path wrote (one contact,
its conversation, its messages and events, made through `receiveChannelMessage`):
every column keeps the server's own encoding (SQLite datetimes as text, enums,
JSON, columns added by later migrations) and only the ids, keys, names, times and
the inbox state (status, assignee, read state) are set here. The server must be
stopped while this runs.

Per conversation: one contact, three inbound messages, four events (CREATED and three
MESSAGE_ADDED); the admin has read half of them. 1M conversations are 3M messages (issue 15). Mix: 50 % open unassigned, 20 %
assigned to the admin, 20 % to a member, 10 % closed; activity spread over 30 days,
message ids in activity order (they are cursors).
"""
from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

TABLES = ("contact", "conversation", "message", "conversation_event", "read_state")


@dataclass
class Plan:
    count: int
    admin_id: int
    member_id: int
    # A chunk of a larger seeding (1M conversations do not fit in memory as rows at once):
    # its first conversation's number and its activity window in days before now, older
    # chunks first so that message ids keep following activity.
    first: int = 0
    days: tuple[float, float] = (0.0, 30.0)


def _rows(plan: Plan, template: dict, start: dict, text_times: bool):
    """Yields (table, row dict) in insertion order, ids from `start`."""
    rng = random.Random(7)
    now = datetime.now(timezone.utc).replace(microsecond=123456)
    # Ascending activity so that message ids follow it.
    rng.seed(7 + plan.first)
    offsets = sorted((rng.uniform(plan.days[0] * 86400, plan.days[1] * 86400) for _ in range(plan.count)),
                     reverse=True)

    def when(moment: datetime):
        moment = moment.replace(microsecond=moment.microsecond or 1)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00:00") if text_times else moment

    ids = dict(start)
    contacts, conversations, messages, events, reads = [], [], [], [], []
    for i, offset in enumerate(offsets, plan.first):
        activity = now - timedelta(seconds=offset)
        created = activity - timedelta(minutes=5)
        contact_id, conversation_id = ids["contact"], ids["conversation"]
        ids["contact"] += 1
        ids["conversation"] += 1
        contacts.append({**template["contact"], "id": contact_id, "external_id": f"seed-{i}",
                         "name": f"Seeded contact {i}"})
        kind = i % 10
        status = "CLOSED" if kind == 0 else "OPEN"
        assignee = plan.admin_id if kind in (1, 2) else plan.member_id if kind in (3, 4) else None
        message_ids = []
        for n, sent in enumerate((created, activity - timedelta(minutes=2), activity)):
            message_id = ids["message"]
            ids["message"] += 1
            message_ids.append(message_id)
            messages.append({**template["message"], "id": message_id, "conversation_id": conversation_id,
                             "body": f"Seeded message {n} of conversation {i}", "sent_at": when(sent),
                             "created_at": when(sent), "external_id": f"seed-{i}-{n}"})
        conversations.append({**template["conversation"], "id": conversation_id, "contact_id": contact_id,
                              "status": status, "assignee_id": assignee, "created_at": when(created),
                              "activity_at": when(activity), "last_message_id": message_ids[-1],
                              "deleted_at": None})
        for kind_name, message_id, moment in (("CREATED", None, created),
                                              ("MESSAGE_ADDED", message_ids[0], created),
                                              ("MESSAGE_ADDED", message_ids[1], activity - timedelta(minutes=2)),
                                              ("MESSAGE_ADDED", message_ids[2], activity)):
            events.append({**template["conversation_event"], "id": ids["conversation_event"],
                           "conversation_id": conversation_id, "kind": kind_name, "message_id": message_id,
                           "occurred_at": when(moment), "actor_id": None, "assignee_id": None})
            ids["conversation_event"] += 1
        if i % 2 == 0:
            reads.append({"id": ids["read_state"], "user_id": plan.admin_id, "conversation_id": conversation_id,
                          "last_read_message_id": message_ids[-1]})
            ids["read_state"] += 1
    return {"contact": contacts, "conversation": conversations, "message": messages,
            "conversation_event": events, "read_state": reads}


def seed_sqlite(path: str, plan: Plan, template_conversation_id: int) -> dict:
    from server.db import upper

    connection = sqlite3.connect(path)
    # The search index's triggers store UPPER() of the text: the server's (Python's).
    connection.create_function("upper", 1, upper, deterministic=True)
    connection.row_factory = sqlite3.Row
    try:
        template = _template_sqlite(connection, template_conversation_id)
        start = {table: (connection.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').fetchone()[0]) + 1
                 for table in TABLES}
        rows = _rows(plan, template, start, text_times=True)
        with connection:
            for table in TABLES:
                if not rows[table]:
                    continue
                columns = list(rows[table][0])
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join("?" for _ in columns)
                connection.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                                       [tuple(row[c] for c in columns) for row in rows[table]])
        if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'message_search'").fetchone():
            with connection:  # the search index as the migration leaves it: merged
                connection.execute("INSERT INTO message_search (message_search) VALUES ('optimize')")
                connection.execute("INSERT INTO contact_search (contact_search) VALUES ('optimize')")
        connection.execute("ANALYZE")
        return {table: len(rows[table]) for table in TABLES}
    finally:
        connection.close()


def _template_sqlite(connection, conversation_id: int) -> dict:
    def one(sql: str, *args) -> dict:
        row = connection.execute(sql, args).fetchone()
        if row is None:
            raise SystemExit(f"seed: no template row for {sql}")
        return dict(row)

    conversation = one('SELECT * FROM "conversation" WHERE id = ?', conversation_id)
    return {"conversation": conversation,
            "contact": one('SELECT * FROM "contact" WHERE id = ?', conversation["contact_id"]),
            "message": one('SELECT * FROM "message" WHERE conversation_id = ? ORDER BY id LIMIT 1', conversation_id),
            "conversation_event": one('SELECT * FROM "conversation_event" WHERE conversation_id = ? LIMIT 1',
                                      conversation_id)}


async def seed_postgres(url: str, plan: Plan, template_conversation_id: int) -> dict:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        async def one(sql: str, *args) -> dict:
            row = await connection.fetchrow(sql, *args)
            if row is None:
                raise SystemExit(f"seed: no template row for {sql}")
            return dict(row)

        conversation = await one('SELECT * FROM "conversation" WHERE id = $1', template_conversation_id)
        template = {"conversation": conversation,
                    "contact": await one('SELECT * FROM "contact" WHERE id = $1', conversation["contact_id"]),
                    "message": await one('SELECT * FROM "message" WHERE conversation_id = $1 ORDER BY id LIMIT 1',
                                         template_conversation_id),
                    "conversation_event": await one(
                        'SELECT * FROM "conversation_event" WHERE conversation_id = $1 LIMIT 1',
                        template_conversation_id)}
        start = {table: (await connection.fetchval(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')) + 1
                 for table in TABLES}
        rows = _rows(plan, template, start, text_times=False)
        async with connection.transaction():
            for table in TABLES:
                if not rows[table]:
                    continue
                columns = list(rows[table][0])
                await connection.copy_records_to_table(table, columns=columns,
                                                       records=[tuple(row[c] for c in columns) for row in rows[table]])
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT MAX(id) FROM \"{table}\"))")
        await connection.execute("ANALYZE")
        return {table: len(rows[table]) for table in TABLES}
    finally:
        await connection.close()
