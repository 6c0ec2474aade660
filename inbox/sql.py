"""Raw SQL for the few aggregate queries the ORM cannot say in one statement."""
from __future__ import annotations

import re

from tortoise import connections

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
