"""One socket write per HTTP response (borrowed/uvicorn_http.py): the head waits for the body
and both go out together; a response whose body writes nothing, or that is cut off, still
sends its head; the bytes on the wire are the same."""
from __future__ import annotations

import asyncio

import httpx

from borrowed.uvicorn_http import _HeadWithBody


class Transport:
    """Records what would go to the socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_the_head_goes_out_with_the_first_body_bytes():
    transport = Transport()
    held = _HeadWithBody(transport)
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == []
    held.write(b"{}")
    held.write(b"more")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"more"]


def test_a_response_without_body_bytes_still_sends_its_head():
    transport = Transport()
    held = _HeadWithBody(transport)
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.flush()
    held.flush()
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_a_response_cut_off_sends_its_head_before_closing():
    transport = Transport()
    held = _HeadWithBody(transport)
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")
    held.close()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"] and transport.closed
    assert held.is_closing()


async def test_a_graphql_answer_arrives_whole_on_a_raw_socket(server, company):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        body = b'{"query": "{ me { id } }"}'
        for _ in range(2):  # keep-alive: the second response follows the first intact
            writer.write(b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + company.admin.token.encode() + b"\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            answer = await asyncio.wait_for(reader.readexactly(length), 10)
            assert answer.startswith(b'{"data":{"me":{"id":')
    finally:
        writer.close()


async def test_a_head_request_gets_its_head(server):
    async with httpx.AsyncClient() as http:
        response = await http.head(f"{server.url}/healthz")
    assert response.status_code == 200 and response.content == b""
