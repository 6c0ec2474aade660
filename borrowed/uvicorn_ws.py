"""Inside uvicorn 0.54's websockets-sansio protocol and websockets 16.1's `Protocol`
(borrowed/__init__.py names the versions): direct delivery (subscriptions/direct.py)
writes its frames to the socket's transport itself and waits on uvicorn's flow control,
past the ASGI `send` (which builds a message dict, a str and a frame per subscriber)."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State


def _server(send: Any) -> WebSocketsSansIOProtocol | None:
    """The uvicorn protocol whose `send` this is (the ASGI send is its bound method)."""
    server = getattr(send, "__self__", None)
    return server if isinstance(server, WebSocketsSansIOProtocol) else None


def flow_control(send: Any) -> asyncio.Event | None:
    """uvicorn's `writable` event (not API), set while the transport takes more: a socket
    that cannot is given a backlog instead of awaiting `send`."""
    server = _server(send)
    writable = getattr(server, "writable", None)
    return writable if isinstance(writable, asyncio.Event) else None


def text_writer(send: Any) -> Callable[[bytes], bool] | None:
    """A function writing one text frame (UTF-8 bytes) straight to the socket's transport,
    False when something stands in the way (the caller then uses `send`); None when `send`
    is not uvicorn's websockets-sansio protocol. Reads uvicorn's `conn` (the websockets
    protocol), `transport` and `close_sent`, none of them API."""
    server = _server(send)
    if server is None or not all(hasattr(server, name) for name in ("conn", "transport", "close_sent")):
        return None

    def write(frame: bytes) -> bool:
        conn = server.conn
        # Hand-built frames, not conn.send_text() + data_to_send(): the library's writer costs
        # ~9,800 more instructions per frame, 2.4-2.6x at 200 B-2 KB (bench/frame_writer.py;
        # bench/RESULTS.md, docs/decisions.md "Library overrides").
        if (conn.extensions or conn.state is not State.OPEN or conn.expect_continuation_frame
                or server.close_sent or server.transport.is_closing()):
            return False
        server.transport.write(text_frame(frame))
        return True

    return write


def text_frame(data: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying `data` (UTF-8): the bytes
    websockets' `Protocol.send_text` builds for a server with no extension."""
    length = len(data)
    if length < 126:
        return bytes((0x81, length)) + data
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big") + data
    return b"\x81\x7f" + length.to_bytes(8, "big") + data
