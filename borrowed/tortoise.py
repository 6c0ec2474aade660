"""Inside tortoise-orm 1.1 (borrowed/__init__.py names the version)."""
from __future__ import annotations


def row_instance(model, **values):
    """The ORM's own constructor for rows it read (what `await Model.filter()` runs), for
    rows we read or inserted ourselves in one statement: no query build per row."""
    return model._init_from_db(**values)


def without_pending_saves(instance) -> None:
    """A copied instance must not share the original's pending relation saves (private)."""
    instance._await_when_save = {}


async def sqlite_function(connection, name: str, arity: int, function) -> None:
    """Registers a Python function on the aiosqlite connection the SQLite client keeps."""
    await connection._connection.create_function(name, arity, function, deterministic=True)


def meta(model):
    """A model's description (`Model._meta`, private): its table, primary key column and
    fields, for the SQL we write ourselves (inbox/sql.py) and the queue's row locks."""
    return model._meta
