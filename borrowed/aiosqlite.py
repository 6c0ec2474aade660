"""Inside aiosqlite 0.22 and tortoise-orm 1.1's SQLite client (borrowed/__init__.py names
the versions): a run of statements in one hand-off to aiosqlite's thread instead of one
hand-off (and one wake-up of the event loop) per statement."""
from __future__ import annotations

import contextvars
import logging
import sqlite3
from typing import Callable, TypeVar

T = TypeVar("T")

# The sqlite3 connection of the transaction `transaction_on_connection_thread` runs, as
# its work's context sees it (None elsewhere).
_AT_ONCE: contextvars.ContextVar[sqlite3.Connection | None] = contextvars.ContextVar("sqlite_at_once", default=None)
# tortoise's logger of every statement (what tests and bench/ count statements with).
_STATEMENTS = logging.getLogger("tortoise.db_client")


def connection_at_once() -> sqlite3.Connection | None:
    """The sqlite3 connection when called from the work of `transaction_on_connection_thread`."""
    return _AT_ONCE.get()


def execute_at_once(connection: sqlite3.Connection, query: str, values: list) -> tuple[int, list[dict]]:
    """What tortoise's SQLite client's `execute_query` does (its NUL escape, its DEBUG line
    per statement, sqlite3's errors as tortoise's), on `connection_at_once()` at once:
    without its coroutine, decorator and connection context per statement, about a
    tenth of an inbound message's Python. Returns the rows changed (or returned) and the
    rows as dicts."""
    from tortoise.exceptions import IntegrityError, OperationalError

    query = query.replace("\x00", "'||CHAR(0)||'")
    _STATEMENTS.debug("%s: %s", query, values)
    start = connection.total_changes
    try:
        cursor = connection.execute(query, values)
        found = cursor.fetchall()
    except sqlite3.OperationalError as exc:
        raise OperationalError(exc)
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(exc)
    names = [column[0] for column in cursor.description or ()]
    return (connection.total_changes - start) or len(found), [dict(zip(names, row)) for row in found]


class _Cursor:
    """What aiosqlite's Cursor offers that tortoise's SQLite client uses after `execute`."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def close(self) -> None:
        self._cursor.close()

    async def fetchall(self):
        return self._cursor.fetchall()


class _AtOnce:
    """Stands in for the aiosqlite connection of tortoise's SQLite client (its private
    `_connection`) for code already running on aiosqlite's thread: each call runs at once
    on the sqlite3 connection, as aiosqlite's thread would run it, so that nothing awaits."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    async def execute_fetchall(self, sql: str, parameters=None):
        return self._conn.execute(sql, parameters or []).fetchall()

    async def execute_insert(self, sql: str, parameters=None):
        cursor = self._conn.execute(sql, parameters or [])
        cursor.execute("SELECT last_insert_rowid()")
        return cursor.fetchone()

    async def execute(self, sql: str, parameters=None) -> _Cursor:
        return _Cursor(self._conn.execute(sql, parameters or []))

    async def executemany(self, sql: str, parameters) -> _Cursor:
        return _Cursor(self._conn.executemany(sql, parameters))


def in_transaction_already(client) -> bool:
    """Whether tortoise's SQLite `client` is a transaction's (nested ones go the usual way)."""
    from tortoise.backends.sqlite.client import SqliteTransactionWrapper

    return isinstance(client, SqliteTransactionWrapper)


async def transaction_on_connection_thread(client, work: Callable[[], T]) -> T:
    """One transaction of tortoise's SQLite `client` whose BEGIN, statements and COMMIT
    (or ROLLBACK, when `work` raises) run in one hand-off to aiosqlite's thread (its
    private `_execute`) instead of one each: what tortoise's SqliteTransactionContext
    does (the client's private `_lock`, a SqliteTransactionWrapper as the context's
    connection, its `begin`), with the wrapper's connection (tortoise's private
    `_connection`) answering at once meanwhile. `work` runs on that thread in a copy of
    the caller's context that holds the transaction. `client`: not a transaction's
    (`in_transaction_already`)."""
    import contextvars

    from tortoise.backends.sqlite.client import SqliteTransactionWrapper
    from tortoise.connection import get_connections

    async with client._lock:
        if not client._connection:
            await client.create_connection(with_db=True)
        connection = client._connection
        transaction = SqliteTransactionWrapper(client)
        token = get_connections().set(client.connection_name, transaction)
        try:
            context = contextvars.copy_context()
        finally:
            get_connections().reset(token)

        def run() -> T:
            raw = connection._conn
            transaction._connection = _AtOnce(raw)
            try:
                raw.commit()  # as tortoise's begin(): nothing may be left open
                raw.execute("BEGIN")
                context.run(_AT_ONCE.set, raw)
                try:
                    result = context.run(work)
                except BaseException:
                    raw.rollback()
                    raise
                raw.commit()
                return result
            finally:
                transaction._connection = connection
                transaction._finalized = True

        return await connection._execute(run)
