"""uvicorn 0.54's httptools protocol with one socket write per small HTTP response
(its request cycle and `_start_asgi_task` are internal: borrowed/__init__.py names the version).

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, then its body on `http.response.body`: two send() calls per
answer. py-spy puts about a quarter of a `{ me { id } }` request's server CPU in that
`send` (issue 15, bench/RESULTS.md). Here the head waits for the body's first bytes and
goes out with them in one write; what reaches the client is byte for byte the same.
"""
from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeadWithBody:
    """A response's transport from its start: the first write (the head) is held and
    joined to the next; a close, or the end of the response, sends a head still held."""

    __slots__ = ("transport", "head", "passing")

    def __init__(self, transport) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.passing = False

    def write(self, data: bytes) -> None:
        if self.passing:
            self.transport.write(data)
        elif self.head is None:
            self.head = data
        else:
            self.passing = True
            head, self.head = self.head, None
            self.transport.write(head + data)

    def flush(self) -> None:
        if self.head is not None:
            self.passing = True
            head, self.head = self.head, None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


class _OneWriteCycle(RequestResponseCycle):
    # Override: the cycle's `transport` (an attribute, not API) holds the head for the body.
    async def send(self, message) -> None:
        if not self.response_started and message["type"] == "http.response.start":
            self.transport = _HeadWithBody(self.transport)
        await super().send(message)
        transport = self.transport
        if type(transport) is _HeadWithBody and self.response_complete and not self.disconnected:
            transport.flush()  # a body that wrote nothing (HEAD, empty body)


def body_arrived(receive) -> bool:
    """Whether `receive` is a request cycle's of this protocol (its `more_body`, set by
    uvicorn's parser, is internal) whose whole body has arrived: receiving it does not wait."""
    cycle = getattr(receive, "__self__", None)
    return type(cycle) is _OneWriteCycle and cycle.more_body is False


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.run(http=OneWriteHttpToolsProtocol)`: every request's cycle writes its head
    with its body."""

    # Override (a private method): the one place every request's cycle passes before it runs.
    def _start_asgi_task(self, cycle, app) -> None:
        cycle.__class__ = _OneWriteCycle
        super()._start_asgi_task(cycle, app)


# One class per deadline: the same settings give the same uvicorn options.
_BOUNDED: dict[float, functools.partial] = {}

# What a request whose head did not arrive in time gets before its connection closes.
_HEAD_TOO_SLOW = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"content-length: 87\r\n\r\n"
                  b'{"errors":[{"message":"request head too slow","extensions":{"code":"BAD_USER_INPUT"}}]}')


class BoundedHttpToolsProtocol(OneWriteHttpToolsProtocol):
    """One write per response, and a deadline for each request's line and headers
    (uvicorn has none: a client sending its headers a byte at a time would hold its
    connection for ever, as uvicorn's keep-alive timer stops at the first byte). The head
    must be in within `head_seconds` of its first byte: else 408 and the connection closes.
    `bounded(seconds)` is what uvicorn instantiates."""

    def __init__(self, *args, head_seconds: float = 10.0, **kwargs) -> None:
        self.head_seconds = head_seconds
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_pending = False  # a request has begun and its head is not all in
        super().__init__(*args, **kwargs)

    @classmethod
    def bounded(cls, seconds: float):
        """What uvicorn instantiates: a partial, not a class made here, because
        `--workers N` pickles it to each worker process."""
        made = _BOUNDED.get(seconds)
        if made is None:
            made = _BOUNDED[seconds] = functools.partial(cls, head_seconds=seconds)
        return made

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending = True

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._stop_head_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The deadline runs from the head's first bytes, read just now: a head that came whole
        # with them needs none (uvloop's timer, set and cancelled, was 5 % of a webhook's CPU).
        if self._head_pending and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def connection_lost(self, exc) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        from server import metrics

        self._head_timer = None
        metrics.refused("http_head_seconds")
        if not self.transport.is_closing():
            self.transport.write(_HEAD_TOO_SLOW)
            self.transport.close()
