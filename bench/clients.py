"""Subscriber client processes: each holds a share of the N graphql-transport-ws
sockets and records, per phase, every message it receives (loss, duplicates,
publish -> receive latency from the send time the publisher put in the body).

The parent drives them over pipes (`ClientPool`); each process runs its own event
loop, so the clients are not the bottleneck of one Python process.

Message bodies are `PHASE:SEQ:UNIX_TIME` (see `body()`).
"""
from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import resource
import threading
import time
from urllib.parse import urlparse

SUBSCRIPTION = "subscription($c: ID!) { messageAdded(conversationId: $c) { id body cursor } }"


def body(phase: str, seq: int) -> str:
    return f"{phase}:{seq}:{time.time():.6f}"


def raise_nofile() -> None:
    """10,000 sockets need more descriptors than a default soft limit: up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20,) * 2)


def cpu_times(pid: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds of a process (/proc/PID/stat utime, stime)."""
    fields = open(f"/proc/{pid or 'self'}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int | None = None) -> float:
    return sum(cpu_times(pid))


class _Phase:
    __slots__ = ("count", "seen", "latencies", "duplicates", "foreign", "first", "last", "received")

    def __init__(self, count: int, subscribers: int) -> None:
        self.count = count
        # One byte per (subscriber, message): 0 never seen, 1 seen once, 2+ duplicates.
        self.seen = [bytearray(count) for _ in range(subscribers)]
        self.latencies = array.array("d")
        self.duplicates = 0
        self.foreign = 0
        self.first = 0.0
        self.last = 0.0
        self.received = 0


class _Socket(asyncio.Protocol):
    """A lean graphql-transport-ws client over a hand-rolled websocket (RFC 6455):
    the benchmark needs its clients to cost much less than the servers they measure,
    and a full client library costs about 30 us per frame. Frames from the server
    are unmasked; frames to it are masked; pings are answered."""

    def __init__(self, worker: "_Worker", index: int, host: str, path: str, protocol: str) -> None:
        self.worker = worker
        self.index = index
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n").encode()
        self.buffer = bytearray()
        self.upgraded = False
        self.transport = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.acked: asyncio.Future = asyncio.get_running_loop().create_future()
        self.fragments = bytearray()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.closed and not self.worker.closing:
            self.worker.closed_early += 1
            self.worker.errors.append(f"socket {self.index} lost: {exc!r}")
        self.closed = True
        for future in (self.opened, self.acked):
            if not future.done():
                future.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = bytes((0x80 | opcode, 0x80 | length))
        elif length < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        # Few frames go this way (init, subscribe, pongs): a plain loop is enough.
        masked = bytes(byte ^ mask[i & 3] for i, byte in enumerate(payload))
        self.transport.write(head + mask + masked)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            with contextlib.suppress(Exception):
                self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        # The common case, one whole small unfragmented text frame: no buffer copies.
        if self.upgraded and not buffer and len(data) >= 2 and data[0] == 0x81 and data[1] < 126 \
                and len(data) == 2 + data[1]:
            self.worker.on_text(self, data[2:])
            return
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[:end + 4]
            if " 101 " not in head.split("\r\n", 1)[0]:
                self.opened.set_exception(ConnectionError(head.split("\r\n", 1)[0]))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        on_text = self.worker.on_text
        while True:
            size = len(buffer)
            if size < 2:
                return
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if size < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if size < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if size < offset + length:
                return
            payload = bytes(buffer[offset:offset + length])
            del buffer[:offset + length]
            opcode = first & 0x0F
            if opcode == 0x1 or opcode == 0x0:
                if not first & 0x80:  # a fragment: keep it until the final one
                    self.fragments += payload
                    continue
                if self.fragments:
                    payload, self.fragments = bytes(self.fragments) + payload, bytearray()
                on_text(self, payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                if not self.closed and not self.worker.closing:
                    self.worker.errors.append(f"socket {self.index} closed by the server: "
                                              f"{int.from_bytes(payload[:2], 'big') if payload else ''}")
                self.close()
                return


class _Worker:
    def __init__(self) -> None:
        self.sockets: list[_Socket] = []
        self.phases: dict[str, _Phase] = {}
        self.warm: set[int] = set()
        self.errors: list[str] = []
        self.closed_early = 0
        self.closing = False

    async def open(self, url: str, subs: list[tuple[str, dict]], protocol: str, parallel: int = 25) -> dict:
        parsed = urlparse(url)
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(parallel)

        async def one(index: int, token: str, variables: dict) -> None:
            async with gate:
                for attempt in range(5):
                    try:
                        _, socket = await loop.create_connection(
                            lambda: _Socket(self, index, parsed.netloc, parsed.path, protocol),
                            parsed.hostname, parsed.port)
                        break
                    except OSError:  # a full accept backlog: try again
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.2 * (attempt + 1))
                self.sockets[index] = socket
                await asyncio.wait_for(socket.opened, 30)
                socket.send_text(json.dumps({"type": "connection_init",
                                             "payload": {"authorization": f"Bearer {token}"}}))
                await asyncio.wait_for(socket.acked, 30)
                socket.send_text(json.dumps({"id": "1", "type": "subscribe",
                                             "payload": {"query": SUBSCRIPTION, "variables": variables}}))

        start = len(self.sockets)
        self.sockets.extend([None] * len(subs))
        results = await asyncio.gather(*(one(start + i, token, variables) for i, (token, variables) in enumerate(subs)),
                                       return_exceptions=True)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        self.errors.extend(failures[:5])
        return {"opened": len(subs) - len(failures), "failed": len(failures)}

    def on_text(self, socket: _Socket, frame: bytes) -> None:
        received = time.time()
        # The fast path: a `next` frame with a body (bodies are PHASE:SEQ:TIME, no escapes).
        start = frame.find(b'"body"')
        if start < 0 or b'"errors"' in frame:
            self._other(socket, frame)
            return
        start = frame.index(b'"', start + 6) + 1
        phase_name, seq, sent = frame[start:frame.index(b'"', start)].decode().split(":")
        if phase_name == "w":
            self.warm.add(socket.index)
            return
        phase = self.phases.get(phase_name)
        if phase is None:
            return
        seq = int(seq)
        if not 0 <= seq < phase.count:
            phase.foreign += 1
            return
        seen = phase.seen[socket.index]
        if seen[seq]:
            phase.duplicates += 1
            if seen[seq] < 255:
                seen[seq] += 1
            return
        seen[seq] = 1
        phase.received += 1
        phase.latencies.append(received - float(sent))
        if not phase.first:
            phase.first = received
        phase.last = received

    def _other(self, socket: _Socket, frame: bytes) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            self.errors.append(f"not JSON: {frame[:200]!r}")
            return
        kind = message.get("type")
        if kind == "connection_ack":
            if not socket.acked.done():
                socket.acked.set_result(None)
        elif kind == "ping":
            socket.send_text('{"type":"pong"}')
        elif kind == "pong":
            pass
        elif len(self.errors) < 50:  # error, complete, next with errors
            self.errors.append(frame[:300].decode(errors="replace"))

    def phase(self, name: str, count: int) -> dict:
        self.phases[name] = _Phase(count, len(self.sockets))
        return {}

    async def collect(self, name: str, idle_timeout: float, deadline: float) -> dict:
        """Waits until every socket has every message of the phase, or nothing arrived for
        `idle_timeout` seconds, or the deadline; then reports."""
        phase = self.phases[name]
        expected = phase.count * len(self.sockets)
        last_progress, last_count = time.monotonic(), -1
        end = time.monotonic() + deadline
        while phase.received < expected and time.monotonic() < end:
            if phase.received != last_count:
                last_progress, last_count = time.monotonic(), phase.received
            elif time.monotonic() - last_progress > idle_timeout:
                break
            await asyncio.sleep(0.02)
        missing = expected - phase.received
        report = {"expected": expected, "received": phase.received, "missing": missing,
                  "duplicates": phase.duplicates, "foreign": phase.foreign, "first": phase.first,
                  "last": phase.last, "latencies": phase.latencies.tobytes(), "cpu": cpu_seconds(),
                  "errors": self.errors[:5], "closed_early": self.closed_early}
        del self.phases[name]
        return report

    async def close(self) -> dict:
        self.closing = True
        sockets = [s for s in self.sockets if s is not None]
        for socket in sockets:
            socket.close()
        await asyncio.sleep(0.2)
        self.sockets, self.warm, self.errors = [], set(), []
        self.closed_early, self.closing = 0, False
        return {"closed": len(sockets)}


def _serve(connection) -> None:
    raise_nofile()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        worker = _Worker()
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue = asyncio.Queue()

        def pump() -> None:
            while True:
                try:
                    command = connection.recv()
                except EOFError:
                    command = {"cmd": "exit"}
                name = command.get("cmd")  # read first: the loop pops it from the dict
                loop.call_soon_threadsafe(commands.put_nowait, command)
                if name == "exit":
                    return

        threading.Thread(target=pump, daemon=True).start()
        while True:
            command = await commands.get()
            name = command.pop("cmd")
            if name == "exit":
                await worker.close()
                return
            try:
                if name == "open":
                    reply = await worker.open(**command)
                elif name == "warm":
                    reply = {"warm": len(worker.warm), "errors": worker.errors[:5]}
                elif name == "phase":
                    reply = worker.phase(**command)
                elif name == "collect":
                    reply = await worker.collect(**command)
                elif name == "close":
                    reply = await worker.close()
                else:
                    reply = {"error": f"unknown command {name}"}
            except Exception as error:
                reply = {"error": repr(error)}
            connection.send(reply)

    asyncio.run(main())


class ClientPool:
    """`processes` subscriber processes, kept for the whole run."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def _all(self, commands: list[dict]) -> list[dict]:
        for pipe, command in zip(self.pipes, commands):
            pipe.send(command)
        replies = [pipe.recv() for pipe in self.pipes]
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(f"client process failed: {reply['error']}")
        return replies

    def broadcast(self, command: dict) -> list[dict]:
        return self._all([dict(command) for _ in self.pipes])

    async def abroadcast(self, command: dict) -> list[dict]:
        return await asyncio.to_thread(self.broadcast, command)

    def open(self, url: str, subs: list[tuple[str, dict]], protocol: str = "graphql-transport-ws") -> dict:
        shares = [subs[i::len(self.pipes)] for i in range(len(self.pipes))]
        replies = self._all([{"cmd": "open", "url": url, "subs": share, "protocol": protocol} for share in shares])
        return {"opened": sum(r["opened"] for r in replies), "failed": sum(r["failed"] for r in replies)}

    def warm(self) -> tuple[int, list[str]]:
        replies = self.broadcast({"cmd": "warm"})
        return sum(r["warm"] for r in replies), [e for r in replies for e in r["errors"]]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def close(self) -> None:
        self.broadcast({"cmd": "close"})

    def exit(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"cmd": "exit"})
            except OSError:
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()


def merge(reports: list[dict]) -> dict:
    """One phase's figures over all client processes."""
    latencies = array.array("d")
    for report in reports:
        latencies.frombytes(report["latencies"])
    values = sorted(latencies)
    firsts = [r["first"] for r in reports if r["first"]]
    lasts = [r["last"] for r in reports if r["last"]]

    def pct(p: float) -> float | None:
        return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2) if values else None

    return {"expected": sum(r["expected"] for r in reports), "received": sum(r["received"] for r in reports),
            "missing": sum(r["missing"] for r in reports), "duplicates": sum(r["duplicates"] for r in reports),
            "foreign": sum(r["foreign"] for r in reports), "first": min(firsts) if firsts else None,
            "last": max(lasts) if lasts else None, "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(values[-1] * 1000, 2) if values else None,
            "closed_early": sum(r["closed_early"] for r in reports),
            "errors": [e for r in reports for e in r["errors"]][:5]}
