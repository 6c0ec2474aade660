"""Raw SQL for the few queries the ORM cannot say in one statement (aggregates, the
inbox page with its joined rows), and model instances built from their rows."""
from __future__ import annotations

import re
from datetime import datetime
from functools import cache

from tortoise import connections, fields

_PLACEHOLDER = re.compile(r"\?")


def _connection():
    return connections.get("default")


def is_postgres() -> bool:
    return _connection().capabilities.dialect == "postgres"


def _dialect_sql(sql: str) -> str:
    if not is_postgres():
        return sql
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


async def fetch(sql: str, *params) -> list[dict]:
    """Runs a query written with `?` placeholders on SQLite and PostgreSQL alike."""
    _, rows = await _connection().execute_query(_dialect_sql(sql), list(params))
    return [dict(row) for row in rows]


def in_list(values) -> tuple[str, list]:
    """`(?, ?, ?)` and its parameters for an IN clause (never empty)."""
    values = list(values) or [None]
    return "(" + ", ".join("?" for _ in values) + ")", values


@cache
def columns(model, alias: str) -> str:
    """Every column of `model`'s table under `alias`, each named "alias.column", for
    `build` to take back out of a joined row."""
    return ", ".join(f'{alias}."{column}" AS "{key}"' for column, key in _keys(model, alias))


def build(model, row: dict, alias: str):
    """The model instance whose columns `columns(model, alias)` selected; None when a
    LEFT JOIN found no row."""
    values = {column: row[key] for column, key in _keys(model, alias)}
    if values[model._meta.db_pk_column] is None:
        return None
    # SQLite hands datetimes back as the text tortoise stored (isoformat): the C parser
    # is many times faster than the ORM's iso8601 on a page of rows.
    for column in _datetime_columns(model):
        if isinstance(values[column], str):
            values[column] = datetime.fromisoformat(values[column])
    # The ORM's own constructor for rows it read (what `await Model.filter()` runs).
    return model._init_from_db(**values)


@cache
def _keys(model, alias: str) -> tuple[tuple[str, str], ...]:
    return tuple((column, f"{alias}.{column}") for column in sorted(model._meta.db_fields))


@cache
def _datetime_columns(model) -> list[str]:
    meta = model._meta
    return [meta.fields_map[name].source_field or name for name in meta.fields_map
            if isinstance(meta.fields_map[name], fields.DatetimeField)]
