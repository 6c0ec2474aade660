"""Raw SQL, on SQLite and PostgreSQL alike: the few queries the ORM cannot say in one
statement (aggregates, the inbox page with its joined rows, and model instances built
from those rows), and the inbound path's bulk statements (one INSERT of many rows, with
RETURNING, instead of a statement and an ORM query build per row)."""
from __future__ import annotations

import asyncio
import contextvars
import re
from datetime import datetime
from functools import cache
from typing import Awaitable, Callable, Iterable, Sequence, TypeVar

from tortoise import connections, fields
from tortoise.transactions import in_transaction

from borrowed.aiosqlite import (connection_at_once, execute_at_once, in_transaction_already,
                               transaction_on_connection_thread)
from borrowed.tortoise import meta, row_instance

T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\?")
# SQL text -> its PostgreSQL spelling: the bulk statements repeat few shapes.
_POSTGRES_SQL: dict[str, str] = {}
_POSTGRES_SQL_KEPT = 512


def _connection():
    return connections.get("default")


def is_postgres() -> bool:
    # A transaction at once is SQLite's (and answers without looking the connection up).
    return connection_at_once() is None and _connection().capabilities.dialect == "postgres"


def _dialect_sql(sql: str, connection=None) -> str:
    if (connection or _connection()).capabilities.dialect != "postgres":
        return sql
    found = _POSTGRES_SQL.get(sql)
    if found is None:
        counter = iter(range(1, 100_000))
        found = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
        if len(_POSTGRES_SQL) >= _POSTGRES_SQL_KEPT:
            _POSTGRES_SQL.clear()
        _POSTGRES_SQL[sql] = found
    return found


# `:name`, not `::type` (a PostgreSQL cast) nor inside a word.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@cache
def _named_parts(sql: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The text between `:name` placeholders, and the names, in order."""
    parts = _NAMED.split(sql)
    return tuple(parts[0::2]), tuple(parts[1::2])


def named(sql: str, params: dict) -> tuple[str, list]:
    """`sql` written with `:name` placeholders as `?` ones with their values in order; a
    list or tuple value becomes `(?, ?, ...)` for an IN clause (never empty). A name may
    appear several times; a missing one is a KeyError."""
    texts, names = _named_parts(sql)
    out, values = [texts[0]], []
    for name, text in zip(names, texts[1:]):
        value = params[name]
        if isinstance(value, (list, tuple)):
            marks, listed = in_list(value)
            out.append(marks)
            values += listed
        else:
            out.append("?")
            values.append(value)
        out.append(text)
    return "".join(out), values


async def fetch(sql: str, *params, **named_params) -> list[dict]:
    """Runs a query written with `?` placeholders (values in order) or `:name` ones
    (values by name) on SQLite and PostgreSQL alike, and returns its rows (also those of
    an INSERT or UPDATE ... RETURNING)."""
    if named_params:
        if params:
            raise TypeError("either `?` or `:name` placeholders, not both")
        sql, params = named(sql, named_params)
    at_once = connection_at_once()
    if at_once is not None:
        return execute_at_once(at_once, sql, list(params))[1]
    connection = _connection()
    return await connection.execute_query_dict(_dialect_sql(sql, connection), list(params))


async def execute(sql: str, *params) -> int:
    """Runs a statement written with `?` placeholders; returns the number of rows it changed."""
    at_once = connection_at_once()
    if at_once is not None:
        return execute_at_once(at_once, sql, list(params))[0]
    connection = _connection()
    changed, _ = await connection.execute_query(_dialect_sql(sql, connection), list(params))
    return changed


def in_list(values) -> tuple[str, list]:
    """`(?, ?, ?)` and its parameters for an IN clause (never empty)."""
    values = list(values) or [None]
    return "(" + ", ".join("?" for _ in values) + ")", values


@cache
def columns(model, alias: str) -> str:
    """Every column of `model`'s table under `alias`, each named "alias.column", for
    `build` to take back out of a joined row."""
    return ", ".join(f'{alias}."{column}" AS "{key}"' for column, key in _keys(model, alias))


@cache
def returning(model, alias: str) -> str:
    """Every column of `model`'s table, each named "alias.column", for a RETURNING clause
    of a statement on that table alone (for `build`)."""
    return ", ".join(f'"{column}" AS "{key}"' for column, key in _keys(model, alias))


def build(model, row: dict, alias: str):
    """The model instance whose columns `columns(model, alias)` selected; None when a
    LEFT JOIN found no row."""
    values = {column: row[key] for column, key in _keys(model, alias)}
    if values[meta(model).db_pk_column] is None:
        return None
    # SQLite hands datetimes back as the text tortoise stored (isoformat): the C parser
    # is many times faster than the ORM's iso8601 on a page of rows.
    for column in _datetime_columns(model):
        if isinstance(values[column], str):
            values[column] = datetime.fromisoformat(values[column])
    # The ORM's own constructor for rows it read (what `await Model.filter()` runs).
    return row_instance(model, **values)


@cache
def _keys(model, alias: str) -> tuple[tuple[str, str], ...]:
    return tuple((column, f"{alias}.{column}") for column in sorted(meta(model).db_fields))


@cache
def _datetime_columns(model) -> list[str]:
    description = meta(model)
    return [description.fields_map[name].source_field or name for name in description.fields_map
            if isinstance(description.fields_map[name], fields.DatetimeField)]


def pairs_in(pairs, first: str, second: str) -> tuple[str, list]:
    """A WHERE clause matching (first, second) pairs such as (channel id, external id):
    one `second IN (...)` per value of `first`, so that an index on both serves it."""
    by_first: dict = {}
    for one, other in sorted(set(pairs)):
        by_first.setdefault(one, []).append(other)
    clauses, params = [], []
    for one, others in by_first.items():
        marks, values = in_list(others)
        clauses.append(f"({first} = ? AND {second} IN {marks})")
        params += [one, *values]
    return " OR ".join(clauses), params


def rows(values: Sequence[Sequence]) -> tuple[str, list]:
    """`(?, ?), (?, ?)` and the flattened parameters of a multi-row VALUES list (never empty)."""
    row = "(" + ", ".join("?" for _ in values[0]) + ")"
    return ", ".join(row for _ in values), [value for one in values for value in one]


async def insert(table: str, columns: Iterable[str], values: Sequence[Sequence],
                 returning: str = "id") -> list[dict]:
    """One INSERT of every row in `values`, returning `returning` of each (in no
    guaranteed order: map them back by a key). The table and columns are ours, never input."""
    if not values:
        return []
    placeholders, params = rows(values)
    return await fetch(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders} RETURNING {returning}",
                       *params)



async def first_per(model, key: str, keys: Iterable, order: str, limit: int, where: str = "", *params,
                    source: str | None = None) -> dict[object, list]:
    """The first `limit` rows of `model` (alias t) for each value of `key` (an SQL
    expression) among `keys`, by `order`, in one statement whatever the number of keys (a
    window function: SQLite 3.25+ and PostgreSQL); each key's rows in `order`. `source`:
    the FROM clause when it joins more than the model's table; `where`: more conditions,
    starting with AND."""
    marks, values = in_list(keys)
    source = source or f'"{meta(model).db_table}" t'
    rows = await fetch(
        f"""SELECT * FROM (SELECT {columns(model, "t")}, {key} AS group_key,
                                  ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {order}) AS rank_in_key
                           FROM {source} WHERE {key} IN {marks} {where}) w
            WHERE w.rank_in_key <= ? ORDER BY w.group_key, w.rank_in_key""",
        *values, *params, limit)
    found: dict[object, list] = {}
    for row in rows:
        found.setdefault(row["group_key"], []).append(build(model, row, "t"))
    return found


class NotAtOnce(Exception):
    """`transaction_at_once`'s work waited for something other than its own statements:
    rolled back, for the caller to run the usual way."""


# The event loop of the task whose work `transaction_at_once` runs on SQLite's thread.
_LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar("at_once_loop",
                                                                                        default=None)


async def transaction_at_once(work: Callable[[], Awaitable[T]]) -> T:
    """Runs `work()`, statements and the Python between them, in a transaction of its
    own (committed on return, rolled back on an exception). On SQLite, the transaction
    with all its statements is one hand-off to the database's thread rather than one per
    statement (each hand-off also wakes the event loop): for a hot path of many short
    statements. `work` must wait for nothing but its statements (else NotAtOnce, rolled
    back); anything it does to the event loop goes through `call_on_loop`."""
    client = _connection()
    if not is_postgres() and not in_transaction_already(client):
        loop = asyncio.get_running_loop()

        def run() -> T:
            _LOOP.set(loop)
            coroutine = work()
            try:
                coroutine.send(None)
            except StopIteration as done:
                return done.value
            except RuntimeError as error:  # it asked for the event loop, which is not on this thread
                if "event loop" in str(error):
                    raise NotAtOnce(str(error)) from error
                raise
            try:
                coroutine.close()
            except RuntimeError:
                pass
            raise NotAtOnce("it waited for something besides its statements")

        return await transaction_on_connection_thread(client, run)
    async with in_transaction():
        return await work()


def call_on_loop(callback: Callable[[], None]) -> None:
    """Calls `callback` (something of the event loop's, such as waking a worker) now, or
    soon on the loop's own thread from `transaction_at_once`'s work."""
    loop = _LOOP.get()
    if loop is None:
        callback()
    else:
        loop.call_soon_threadsafe(callback)
