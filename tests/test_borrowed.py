"""What borrowed/ takes from inside libraries was written for exact versions: an
upgrade must re-read borrowed/ (and pass the tests that prove each override) first."""
from __future__ import annotations

import ast
import contextlib
from importlib.metadata import version
from pathlib import Path

import pytest

from borrowed import WRITTEN_FOR


@pytest.mark.parametrize("distribution", sorted(WRITTEN_FOR))
def test_installed_version_is_the_one_borrowed_was_written_for(distribution):
    assert version(distribution) == WRITTEN_FOR[distribution], (
        f"{distribution} {version(distribution)} is installed; borrowed/ was written for "
        f"{WRITTEN_FOR[distribution]}: re-read its overrides, then update WRITTEN_FOR")


# -- each borrowed private read still finds what it reads ----------------------------------

async def test_broadcaster_keeps_the_backend_and_listener_the_hub_reads():
    import asyncio

    from broadcaster import Broadcast

    from borrowed.broadcaster import BroadcastBackend, backend, listener

    broadcast = Broadcast("memory://")
    assert listener(broadcast) is None  # not connected: no listener yet
    await broadcast.connect()
    try:
        assert isinstance(backend(broadcast), BroadcastBackend)
        task = listener(broadcast)
        assert isinstance(task, asyncio.Task) and not task.done()
    finally:
        await broadcast.disconnect()
    assert task.done() or task.cancelling()  # disconnect() stops it


@contextlib.asynccontextmanager
async def serving(app, **options):
    """`app` served by uvicorn on a free port, as `inbox serve` serves ours: its URL."""
    import asyncio

    import uvicorn

    from conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", **options))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_uvicorn_ws_writes_frames_to_the_transport_of_the_send_it_is_given(compression):
    import asyncio

    import websockets

    from borrowed.uvicorn_ws import flow_control, text_writer

    found = {}

    async def app(scope, receive, send):
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        found["writable"], write = flow_control(send), text_writer(send)
        found["written"] = write is not None and write('{"by":"hand","é":1}'.encode())
        await send({"type": "websocket.send", "text": "through send"})
        await receive()

    async with serving(app, ws="websockets-sansio") as address:
        async with websockets.connect(f"ws://{address}/", compression=compression) as client:
            first = await asyncio.wait_for(client.recv(), 10)
            if compression is None:  # the frame written by hand, then the one sent
                assert first == '{"by":"hand","é":1}'
                assert await asyncio.wait_for(client.recv(), 10) == "through send"
            else:  # an extension stands in the way: nothing written, the caller sends
                assert first == "through send"
    assert isinstance(found["writable"], asyncio.Event) and found["writable"].is_set()
    assert found["written"] is (compression is None)


def test_uvicorn_ws_reads_nothing_from_a_send_that_is_not_uvicorns():
    from borrowed.uvicorn_ws import flow_control, text_writer

    async def send(message):
        pass

    assert flow_control(send) is None and text_writer(send) is None and text_writer(None) is None


async def test_uvicorn_http_cycles_are_ours_and_write_the_head_with_the_body():
    import httpx

    from borrowed.uvicorn_http import OneWriteHttpToolsProtocol, _HeadWithBody, _OneWriteCycle

    seen = {}

    async def app(scope, receive, send):
        seen["cycle"] = type(send.__self__)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        seen["transport"] = type(send.__self__.transport)
        await send({"type": "http.response.body", "body": b"{}"})

    async with serving(app, http=OneWriteHttpToolsProtocol) as address:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://{address}/")
    assert response.status_code == 200 and response.content == b"{}"
    assert seen == {"cycle": _OneWriteCycle, "transport": _HeadWithBody}


def test_tortoise_meta_names_a_models_table_and_columns():
    import models
    from borrowed.tortoise import meta

    description = meta(models.Conversation)
    assert description.db_table == "conversation" and description.db_pk_column == "id"
    assert {"id", "status", "created_at"} <= set(description.db_fields)


def test_aiosqlite_statements_at_once_answer_as_tortoises_sqlite_client(caplog):
    import logging
    import sqlite3

    from tortoise.exceptions import IntegrityError

    from borrowed.aiosqlite import execute_at_once

    connection = sqlite3.connect(":memory:")
    connection.row_factory = sqlite3.Row  # as tortoise's client sets it
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        changed, rows = execute_at_once(connection, "INSERT INTO t (name) VALUES (?), (?) RETURNING id, name",
                                        ["a", "b\x00c"])
    assert changed == 2 and rows == [{"id": 1, "name": "a"}, {"id": 2, "name": "b\x00c"}]
    # Each statement is logged where tortoise logs it: tests and bench/ count them there.
    assert len([r for r in caplog.records if r.name == "tortoise.db_client"]) == 1
    with pytest.raises(IntegrityError):
        execute_at_once(connection, "INSERT INTO t (name) VALUES (?)", ["a"])


def test_strawberry_websocket_adapter_keeps_starlettes_socket_as_ws():
    import inspect

    from strawberry.asgi import ASGIWebSocketAdapter

    from borrowed.strawberry import starlette_websocket

    assert "self.ws = " in inspect.getsource(ASGIWebSocketAdapter.__init__)
    adapter = object.__new__(ASGIWebSocketAdapter)
    adapter.ws = socket = object()
    assert starlette_websocket(adapter) is socket and starlette_websocket(socket) is socket


# -- nothing outside borrowed/ reaches into a library ----------------------------------------

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ("inbox", "models", "schema", "resolvers", "subscriptions", "server", "channels")

# Private attributes read on objects other than `self`/`cls` outside borrowed/: only our own
# objects' (the owner named), never a library's.
OWN_PRIVATE_READS = {
    "_buffer": "subscriptions.direct.Sink",
    "_hub": "subscriptions.hub.LocalSubscription",
    "_topics": "subscriptions.hub.Hub",
    "_attach": "subscriptions.hub.Hub",
    "_detach": "subscriptions.hub.Hub",
    "_state": "subscriptions.hub.LocalSubscription",
    "_end": "subscriptions.hub.LocalSubscription",
    "_offer": "subscriptions.hub.LocalSubscription",
    "_prepare": "server.http.DirectExecution",
}


def _sources(packages):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text(), str(path))


def _defined_privately():
    """Private names our own code defines: methods, classes, module names, attributes it
    assigns on self/cls, class attributes and __slots__ entries."""
    names = set()
    for _, tree in _sources((*OUTSIDE, "borrowed")):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__slots__" for t in node.targets):
                names.update(e.value for e in getattr(node.value, "elts", ()) if isinstance(e, ast.Constant))
    return {name for name in names if name.startswith("_")}


def _private(name) -> bool:
    return isinstance(name, str) and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_library_access_outside_borrowed():
    """A private attribute read, a private module imported or a bound method's `__self__`
    taken outside borrowed/ is a library's internals used where WRITTEN_FOR does not
    guard it: move it into borrowed/ behind a named function with its reason."""
    own = _defined_privately()
    assert set(OWN_PRIVATE_READS) <= own, "OWN_PRIVATE_READS names a private attribute our code does not define"
    found = []
    for path, tree in _sources(OUTSIDE):
        for node in ast.walk(tree):
            where = f"{path}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and any(map(_private, node.module.split("."))):
                found.append(f"{where} imports the private module {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{where} imports the private module {a.name}" for a in node.names
                          if any(map(_private, a.name.split(".")))]
            elif isinstance(node, ast.Attribute) and node.attr == "__self__":
                found.append(f"{where} takes a bound method's object ({ast.unparse(node)})")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if on_self and node.attr not in own:
                    found.append(f"{where} reads {ast.unparse(node)}, which our classes never define")
                elif not on_self and node.attr not in OWN_PRIVATE_READS:
                    found.append(f"{where} reads {ast.unparse(node)} on an object not ours")
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr", "setattr")
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and _private(node.args[1].value)
                  and node.args[1].value not in OWN_PRIVATE_READS):
                found.append(f"{where} reads {node.args[1].value!r} by name ({ast.unparse(node)})")
    assert not found, "\n".join(found)
