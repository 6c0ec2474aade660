"""Real `inbox serve` processes and the services around them, for the scale-out tests
(SPEC §6–§7): PostgreSQL databases of their own, a private PostgreSQL instance and
private redis-servers that tests may stop and restart, and a TCP proxy that can hold
what one process sends to Redis. Everything is awaited: the fake providers and the
SMTP server that the processes call run on this test process's event loop."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import json
import os
import pathlib
import pwd
import shutil
import sys
import tempfile
import uuid
from urllib.parse import urlparse, urlunparse

import httpx

from conftest import DEADLINE, Client, Company, Subscriber, free_port, staff_company, unique

INBOX = shutil.which("inbox") or str(pathlib.Path(sys.executable).parent / "inbox")
STARTUP_DEADLINE = 30.0


async def run(*command: str, env: dict | None = None, user: str | None = None,
              timeout: float = 60) -> tuple[int, str]:
    """Runs a command to its end without blocking the event loop; (exit code, output)."""
    if user is not None and os.geteuid() == 0:
        command = ("runuser", "-u", user, "--", *command)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})})
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, output.decode(errors="replace")


# -- inbox server processes ----------------------------------------------------------------


class ServerProcess:
    """`inbox serve` in a process of its own, its output kept in a log file."""

    def __init__(self, env: dict, name: str, workers: int = 1) -> None:
        self.env = env
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(tempfile.mkdtemp(prefix=f"inbox-scale-{name}-")) / "server.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self) -> "ServerProcess":
        command = [INBOX, "serve", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.log_path.parent.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env})
        await self.healthy()
        return self

    async def healthz(self) -> int | None:
        """/healthz's status, or None when nothing answers."""
        async with httpx.AsyncClient(timeout=2) as http:
            try:
                return (await http.get(f"{self.url}/healthz")).status_code
            except httpx.HTTPError:
                return None

    async def healthy(self, status: int = 200, timeout: float = STARTUP_DEADLINE) -> None:
        """Waits until /healthz answers `status` (with a deadline)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (found := await self.healthz()) != status:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"server {self.name} exited ({self.process.returncode}):\n{self.log()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"server {self.name}: /healthz is {found}, not {status}:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(self.log_path.parent, ignore_errors=True)


async def start_servers(*servers: ServerProcess) -> None:
    """Starts them together (as a deployment's processes start)."""
    try:
        await asyncio.gather(*(server.start() for server in servers))
    except BaseException:
        await asyncio.gather(*(server.stop() for server in servers))
        raise


def server_env(database_url: str, broadcast_url: str, namespace: str, fakes, mailbox) -> dict:
    """The settings of a test deployment: its own broadcast namespace, the fake providers
    and the test SMTP server, and quick retries."""
    return {
        "INBOX_DATABASE_URL": database_url, "INBOX_BROADCAST_URL": broadcast_url,
        "INBOX_BROADCAST_NAMESPACE": namespace, "INBOX_PUBLIC_URL": "http://inbox.test",
        "INBOX_SUBSCRIPTION_BUFFER": "500", "INBOX_LOG_LEVEL": "WARNING",
        "INBOX_MESSENGER_API_BASE": fakes.messenger_base, "INBOX_TWILIO_API_BASE": fakes.twilio_base,
        "INBOX_SEND_TIMEOUT": "2", "INBOX_SEND_RETRY_SECONDS": "30", "INBOX_SEND_BACKOFF_SECONDS": "0.05",
        "INBOX_CALLBACK_ALLOW_PRIVATE": "true",  # the fake partner endpoints listen on 127.0.0.1
        "INBOX_SMTP_URL": mailbox.url, "INBOX_EMAIL_COLLAPSE_SECONDS": "0.3", "INBOX_EMAIL_TIMEOUT": "2",
        "INBOX_EMAIL_BACKOFF_SECONDS": "0.05",
    }


_BOOTSTRAP_MANY = """
import asyncio, json, sys, uuid
from inbox.accounts import bootstrap
from server.db import close_database, open_database

async def main(url, count):
    await open_database(url)
    try:
        for _ in range(count):
            tag = uuid.uuid4().hex[:8]
            _, _, token = await bootstrap(f"Scale {tag}", "Ada Admin", f"ada-{tag}@example.com")
            print(json.dumps({"token": token}))
    finally:
        await close_database()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def bootstrap_admins(database_url: str, count: int) -> list[str]:
    """Admin tokens of `count` new companies (as `inbox bootstrap` makes them, in one
    process: a process per company would cost a second each)."""
    code, output = await run(sys.executable, "-c", _BOOTSTRAP_MANY, database_url, str(count))
    assert code == 0, output
    return [json.loads(line)["token"] for line in output.splitlines() if line.startswith("{")]


async def company_on(server: ServerProcess, http: httpx.AsyncClient, admin_token: str,
                     callback_url: str | None = None) -> Company:
    """A company as conftest's `company` fixture makes it (admin, ann a member of its
    CUSTOM channel, bob not), on a server process; the channel replies to `callback_url`."""
    return await staff_company(server.url, http, admin_token, callback_url)


def on(client: Client, server: ServerProcess) -> Client:
    """The same client (same token) talking to another server process."""
    return dataclasses.replace(client, base_url=server.url)


async def inbound_on(company: Company, server: ServerProcess, body: str, contact: str = "c1") -> dict:
    """An inbound message pushed by the partner through `server`."""
    return await company.inbound(body, contact=contact, partner=on(company.partner, server))


# -- websocket clients ---------------------------------------------------------------------


# The body of the messages that tests send to set a subscription up: company-wide
# subscriptions skip them (`messages_of`).
SETUP = "(setup)"

MESSAGE_ADDED = """subscription($after: String, $c: ID) {
  messageAdded(after: $after, conversationId: $c) { id body cursor } }"""


async def next_of(sub: Subscriber, op_id: str, timeout: float = DEADLINE) -> dict:
    """The next message of one operation (`next` or `complete`), skipping the others'."""
    while True:
        message = await sub.receive(timeout)
        if message.get("id") == op_id:
            return message


async def data_of(sub: Subscriber, op_id: str, timeout: float = DEADLINE) -> dict:
    message = await next_of(sub, op_id, timeout)
    assert message["type"] == "next" and not message["payload"].get("errors"), message
    return message["payload"]["data"]


async def messages_of(sub: Subscriber, op_id: str, count: int = 1) -> list[dict]:
    """The next `count` messages of a messageAdded operation, skipping setup messages."""
    found = []
    while len(found) < count:
        message = (await data_of(sub, op_id))["messageAdded"]
        if not message["body"].startswith(SETUP):
            found.append(message)
    return found


async def live(sub: Subscriber, company: Company, server: ServerProcess) -> None:
    """Returns once the socket's earlier subscriptions are in their process's fan-out with
    Redis confirmed (the protocol has no acknowledgement): a `messageAdded` with `after`
    replays only once its own upstream subscription, shared by the whole company topic
    of that process, is confirmed; it is started last and ended at once."""
    contact = unique("barrier")
    first = await inbound_on(company, server, f"{SETUP} barrier one", contact)
    second = await inbound_on(company, server, f"{SETUP} barrier two", contact)
    op = await sub.subscribe(MESSAGE_ADDED, {"after": first["cursor"], "c": first["conversation"]["id"]})
    assert (await data_of(sub, op))["messageAdded"]["id"] == second["id"]
    await sub.socket.send(json.dumps({"id": op, "type": "complete"}))


# -- services that tests stop and restart ----------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


async def create_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server of `server_url`; its URL."""
    import asyncpg

    name = f"inbox_scale_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


async def drop_database(database_url: str) -> None:
    import asyncpg

    name = urlparse(database_url).path.lstrip("/")
    server = with_database(database_url, "postgres")
    connection = await asyncpg.connect(server.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


class RedisServer:
    """A redis-server of the test's own on a free port: the machine's shared one is never
    stopped."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="inbox-redis-")
        self.process: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", self.dir, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not await self.answers():
            assert asyncio.get_running_loop().time() < deadline, "redis-server did not start"
            await asyncio.sleep(0.02)

    async def answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG")
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()

    async def destroy(self) -> None:
        await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL instance of the test's own (initdb in a temporary directory, on a free
    port) that tests may stop and restart: the machine's shared cluster is never touched.
    As root, it runs as the `postgres` user (initdb refuses root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bin = self._bindir()
        self.dir = tempfile.mkdtemp(prefix="inbox-pg-")
        self.data = os.path.join(self.dir, "data")
        self.user = "postgres" if os.geteuid() == 0 else None
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _bindir() -> str | None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        found = [path for path in candidates if os.path.exists(os.path.join(path, "initdb"))]
        if found:
            return found[-1]
        initdb = shutil.which("initdb")
        return os.path.dirname(initdb) if initdb else None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why one cannot be run here, or None."""
        if cls._bindir() is None:
            return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to run initdb as"
        return None

    async def init(self) -> None:
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        code, output = await run(os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                                 "-E", "UTF8", "--no-sync", user=self.user)
        assert code == 0, output
        await self.start()

    async def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        code, output = await run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-t", "30",
                                 "-l", os.path.join(self.dir, "log"), "-o", options, *args, user=self.user)
        assert code == 0, output

    async def start(self) -> None:
        await self._ctl("start")

    async def stop(self) -> None:
        # fast: active transactions are rolled back and their connections cut, as in a crash
        # or a failover.
        await self._ctl("stop", "-m", "fast")

    async def destroy(self) -> None:
        with contextlib.suppress(AssertionError, OSError, asyncio.TimeoutError):
            await self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class HoldingProxy:
    """A TCP proxy to a server. `hold()` keeps back what clients send (not the answers)
    until `release()`; `holding` is set once something is kept back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.holding = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        self.holding.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _connected(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        for task in (asyncio.create_task(self._pump(client_reader, server_writer, held=True)),
                     asyncio.create_task(self._pump(server_reader, client_writer, held=False))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader, writer, held: bool) -> None:
        try:
            while data := await reader.read(65536):
                if held and not self._open.is_set():
                    self.holding.set()
                    await self._open.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

