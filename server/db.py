"""Opening the database: pending migrations first (one process at a time), then the
ORM; and SQLite's rule of one server process per database file."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import AsyncIterator, Iterator
from urllib.parse import urlparse

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate

from borrowed.tortoise import sqlite_function

from .config import tortoise_config

log = logging.getLogger(__name__)

# PostgreSQL advisory lock keys (two int4s): (7_000, 0) migrations; (7_100, company id)
# the order of message ids (inbox/messages.py); (7_200, 0) send-queue claims (inbox/sending.py).
_MIGRATIONS_LOCK = (7_000, 0)
_POSTGRES_SCHEMES = ("postgres", "postgresql", "asyncpg", "psycopg")


class DatabaseInUse(Exception):
    """Another `inbox serve` is running on this SQLite database file."""


async def open_database(database_url: str, *, migrate_first: bool = True) -> None:
    """`migrate_first=False` in the workers of `inbox serve --workers N`: their parent
    has migrated before starting them."""
    config = tortoise_config(database_url)
    if migrate_first:
        async with _migrations_lock(database_url):
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
    await sqlite_function(connection, "upper", 1, _upper)


async def close_database() -> None:
    await Tortoise.close_connections()


async def database_reachable() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
        return True
    except Exception:  # any driver error means "not reachable" for /healthz
        log.warning("database unreachable", exc_info=True)
        return False


@contextlib.asynccontextmanager
async def _migrations_lock(database_url: str) -> AsyncIterator[None]:
    """Server processes starting together on one PostgreSQL database migrate one at a
    time (a session lock on a connection of its own, released when it closes, even on a
    crash); the later ones find nothing pending. SQLite locks its file itself."""
    if urlparse(database_url).scheme not in _POSTGRES_SCHEMES:
        yield
        return
    import asyncpg

    credentials = expand_db_url(database_url)["credentials"]
    connection = await asyncpg.connect(
        host=credentials.get("host"), port=credentials.get("port"), user=credentials.get("user"),
        password=credentials.get("password"), database=credentials.get("database"),
        **({"ssl": credentials["ssl"]} if "ssl" in credentials else {}))
    try:
        await connection.execute("SELECT pg_advisory_lock($1, $2)", *_MIGRATIONS_LOCK)
        yield
    finally:
        await connection.close()


@contextlib.contextmanager
def holding_sqlite_file(database_url: str) -> Iterator[None]:
    """SQLite serves one process (a second one writing the file fails with "database is
    locked"): a server holds an exclusive lock on a file beside the database for its
    whole life, so a second server on the same file stops at once with DatabaseInUse.
    Other commands (`inbox bootstrap`) do not take it. Nothing to hold for PostgreSQL or
    :memory:. The lock is the kernel's: it goes with the process, however it ends."""
    database = expand_db_url(database_url)
    path = database["credentials"].get("file_path") if database["engine"].endswith(".sqlite") else None
    if not path or path == ":memory:":
        yield
        return
    lock_path = os.path.abspath(path) + ".serve.lock"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(f"another `inbox serve` is already running on the SQLite database {path} "
                                f"(it holds {lock_path})") from None
        yield
