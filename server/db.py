"""Opening the database: pending migrations first, then the ORM."""
from __future__ import annotations

import logging

from tortoise import Tortoise, connections
from tortoise.migrations.api import migrate

from .config import tortoise_config

log = logging.getLogger(__name__)


async def open_database(database_url: str) -> None:
    config = tortoise_config(database_url)
    await migrate(config=config)
    await Tortoise.close_connections()
    # Global fallback: uvicorn runs the lifespan in one task and requests in others
    # (tortoise 1.x keeps its state in a context variable otherwise).
    await Tortoise.init(config=config, _enable_global_fallback=True)
    await _unicode_case_folding(connections.get("default"))


def _upper(value):
    return value.upper() if isinstance(value, str) else value


async def _unicode_case_folding(connection) -> None:
    """`search` is case-insensitive (SPEC §8) and the ORM's icontains compares UPPER()s,
    but SQLite's UPPER folds ASCII only ("Élodie" would not match "élodie"): override
    it with Python's, on the one connection the SQLite client keeps per process."""
    if connection.capabilities.dialect != "sqlite":
        return
    await connection.create_connection(with_db=True)
    await connection._connection.create_function("upper", 1, _upper, deterministic=True)


async def close_database() -> None:
    await Tortoise.close_connections()


async def database_reachable() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
        return True
    except Exception:  # any driver error means "not reachable" for /healthz
        log.warning("database unreachable", exc_info=True)
        return False
