"""CPU per frame of direct delivery's socket write (issue 11 part 10): our hand-built
frame (borrowed/uvicorn_ws.py `text_frame`) against the websockets library's own
writer (`Protocol.send_text` then `data_to_send`), each with the checks that go with it
and one `transport.write`, on a real `websockets.ServerProtocol` in the OPEN state.

    .venv/bin/python bench/frame_writer.py                    # timeit, best of 7 (noisy)
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/frame_writer.py --count library 2048 20000
                                                              # instructions, stable

`--count WRITER SIZE N` writes N frames of SIZE bytes with one writer and nothing else
(N=0: the baseline to subtract), for callgrind's total instruction count."""
from __future__ import annotations

import sys
import timeit

from websockets.protocol import State
from websockets.server import ServerProtocol

from borrowed.uvicorn_ws import text_frame

SIZES = (200, 2048, 65536)


class Transport:
    """What the writers write to: asyncio's transport, minus the socket."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False


def connection() -> ServerProtocol:
    conn = ServerProtocol()
    conn.state = State.OPEN
    return conn


def hand_built(conn, transport, close_sent: bool, frame: bytes) -> bool:
    # subscriptions/direct.py's write_now as it stands.
    if (conn.extensions or conn.state is not State.OPEN or conn.expect_continuation_frame
            or close_sent or transport.is_closing()):
        return False
    transport.write(text_frame(frame))
    return True


def library(conn, transport, close_sent: bool, frame: bytes) -> bool:
    # The library's writer; its extensions (compression) apply by themselves.
    if conn.state is not State.OPEN or conn.expect_continuation_frame or close_sent or transport.is_closing():
        return False
    conn.send_text(frame)
    writes = conn.data_to_send()
    transport.write(writes[0] if len(writes) == 1 else b"".join(writes))
    return True


WRITERS = {"hand": hand_built, "library": library}


def payload(size: int) -> bytes:
    prefix = b'{"id":"1","type":"next","payload":{"data":{"messageAdded":{"body":"'
    return prefix + b"x" * (size - len(prefix) - 5) + b'"}}}}'


def count(writer: str, size: int, n: int) -> None:
    write, conn, transport, frame = WRITERS[writer], connection(), Transport(), payload(size)
    for _ in range(n):
        write(conn, transport, False, frame)


def main() -> None:
    print(f"{'size':>7} {'hand ns':>9} {'library ns':>11} {'library/hand':>13}")
    for size in SIZES:
        frame, best = payload(size), {}
        for name, write in WRITERS.items():
            conn, transport = connection(), Transport()
            number = 200_000 if size < 65536 else 20_000
            runs = timeit.repeat(lambda: write(conn, transport, False, frame), number=number, repeat=7)
            best[name] = min(runs) / number * 1e9
        print(f"{size:>7} {best['hand']:>9.0f} {best['library']:>11.0f} {best['library'] / best['hand']:>13.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count"]:
        count(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
