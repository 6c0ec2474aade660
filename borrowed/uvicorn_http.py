"""uvicorn 0.54's httptools protocol with one socket write per small HTTP response
(its request cycle and `_start_asgi_task` are internal: borrowed/__init__.py names the version).

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, then its body on `http.response.body`: two send() calls per
answer. py-spy puts about a quarter of a `{ me { id } }` request's server CPU in that
`send` (issue 15, bench/RESULTS.md). Here the head waits for the body's first bytes and
goes out with them in one write; what reaches the client is byte for byte the same.
"""
from __future__ import annotations

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


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.run(http=OneWriteHttpToolsProtocol)`: every request's cycle writes its head
    with its body."""

    # Override (a private method): the one place every request's cycle passes before it runs.
    def _start_asgi_task(self, cycle, app) -> None:
        cycle.__class__ = _OneWriteCycle
        super()._start_asgi_task(cycle, app)
