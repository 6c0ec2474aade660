"""Webhook ingestion benchmark: signed Messenger webhooks posted as fast as a bounded
client can, against a real `inbox serve` on 127.0.0.1; reports webhooks/s end to
end (each one persisted and published before its 200).

    .venv/bin/python bench/ingest.py                       # SQLite + memory://
    .venv/bin/python bench/ingest.py --database postgres://postgres@127.0.0.1:5432/inbox_bench \\
        --broadcast redis://127.0.0.1:6379/0

Bounded: --count webhooks (default 5000) with --concurrency in flight (default 32), from
--contacts senders (default 500: each one's first message makes a contact whose profile the
server fetches from the fake Graph API, about half of its CPU at --count 2000; with
--contacts 50 the 50 warm-up webhooks have made every sender known, so the figure is the
message alone).
The webhooks go out on plain keep-alive HTTP/1.1 connections (`post`, about 80 µs of
client CPU each): with httpx (about 3 ms each) the client, not the server, set the
pace on a 2-core machine.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
INBOX = shutil.which("inbox") or str(pathlib.Path(sys.executable).parent / "inbox")
APP_SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def reset_postgres(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


@contextlib.contextmanager
def inbox_server(env: dict):
    port = free_port()
    process = subprocess.Popen([INBOX, "serve", "--port", str(port)], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        yield base, process
    finally:
        process.terminate()
        process.wait(10)


def bootstrap(env: dict) -> str:
    done = subprocess.run([INBOX, "bootstrap", "--company", "Bench", "--admin-name", "Bench Admin",
                           "--admin-email", "bench@example.com"], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["token"]


def webhook(page_id: str, index: int, contacts: int = 500) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps({"object": "page", "entry": [{"id": page_id, "time": now, "messaging": [{
        "sender": {"id": f"psid-{index % contacts}"}, "recipient": {"id": page_id}, "timestamp": now,
        "message": {"mid": f"m_bench_{index}", "text": f"benchmark message {index}"}}]}]}).encode()


class FakeGraph:
    """Meta's Graph API on 127.0.0.1 for contact profiles: the benchmark never leaves
    this machine, and new contacts get a name as in production."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def profile(request):
            psid = request.path_params["psid"]
            return JSONResponse({"id": psid, "first_name": "Bench", "last_name": psid, "profile_pic": None})

        self.app = Starlette(routes=[Route("/v19.0/{psid}", profile)])
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v19.0"

    def start(self) -> None:
        import threading

        import uvicorn

        server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)


async def post(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str, body: bytes,
               headers: dict[str, str]) -> int:
    """One request on a keep-alive connection; returns the status (the body is read and dropped)."""
    reader, writer = connection
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
                 + body)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(base: str, token: str, count: int, concurrency: int, pid: int,
              profile: pathlib.Path | None = None, contacts: int = 500) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        installed = (await http.post("/graphql", headers={"Authorization": f"Bearer {token}"}, json={
            "query": "mutation($i: InstallChannelInput!) { installChannel(input: $i) { webhookPath } }",
            "variables": {"i": {"kind": "MESSENGER", "name": "Bench page", "messenger": {
                "pageId": "bench-page", "appSecret": APP_SECRET, "verifyToken": "v",
                "pageAccessToken": "bench-token"}}}})).json()
        path = installed["data"]["installChannel"]["webhookPath"]
        bodies = [webhook("bench-page", i, contacts) for i in range(count)]
        queue: asyncio.Queue = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        latencies: list[float] = []
        failures = 0

        host, port = base.removeprefix("http://").rsplit(":", 1)

        async def worker() -> None:
            nonlocal failures
            connection = await asyncio.open_connection(host, int(port))
            try:
                while not queue.empty():
                    body = queue.get_nowait()
                    signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
                    started = time.perf_counter()
                    status = await post(connection, path, body, {
                        "Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"})
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        failures += 1
            finally:
                connection[1].close()

        # Warm-up, not counted.
        for i in range(50):
            body = webhook("bench-page", count + i, contacts)
            signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            await http.post(path, content=body, headers={"X-Hub-Signature-256": f"sha256={signature}"})
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        profiled = None
        if profile is not None:
            # A further batch with py-spy attached, after the measured one (sampling slows the server).
            import pyspy

            for i in range(count // 2):
                queue.put_nowait(webhook("bench-page", count + 50 + i, contacts))
            recorder = pyspy.Recorder(pid, profile)
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            profiled = pyspy.summarise(profile) if recorder.stop() else {"samples": 0}
        stored = (await http.post("/graphql", headers={"Authorization": f"Bearer {token}"}, json={
            "query": "{ inboxCounts { unassigned } }"})).json()["data"]["inboxCounts"]["unassigned"]
    latencies.sort()
    return {"webhooks": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "server_cpu_us_per_webhook": round(cpu / count * 1e6), "failures": failures,
            "conversations": stored, **({"profile": profiled} if profiled is not None else {})}


def measure(count: int = 5000, concurrency: int = 32, database: str | None = None,
            broadcast: str = "memory://", profile: pathlib.Path | None = None, contacts: int = 500) -> dict:
    """One ingestion run on a fresh database (a fresh SQLite file, or `database`'s
    PostgreSQL schema dropped and recreated); bench/run.py calls this too."""
    tmp = tempfile.mkdtemp(prefix="inbox-bench-")
    database = database or f"sqlite://{tmp}/bench.sqlite3"
    if database.startswith("postgres"):
        asyncio.run(reset_postgres(database))
    graph = FakeGraph()
    graph.start()
    env = {"INBOX_DATABASE_URL": database, "INBOX_BROADCAST_URL": broadcast, "INBOX_LOG_LEVEL": "WARNING",
           "INBOX_MESSENGER_API_BASE": graph.base}
    token = bootstrap(env)
    try:
        with inbox_server(env) as (base, process):
            result = asyncio.run(run(base, token, count, concurrency, process.pid, profile, contacts))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    backend = "postgres" if database.startswith("postgres") else "sqlite"
    return {"backend": f"{backend}+{broadcast.split(':')[0]}", **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--contacts", type=int, default=500, help="distinct senders (default 500)")
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--broadcast", default="memory://")
    args = parser.parse_args()
    print(json.dumps(measure(args.count, args.concurrency, args.database, args.broadcast, contacts=args.contacts)))


if __name__ == "__main__":
    main()
