"""The inbox benchmark (issues 7 and 15): subscription fan-out against a raw-websocket
baseline and graphql-yoga measured in the same run, HTTP throughput and latency, webhook
ingestion, hostile clients.
Everything runs on 127.0.0.1 and stops by itself.

    .venv/bin/python bench/run.py            # full run, ~20 min on 2 cores (1M conversations); bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # ~3 min; writes bench/out/RESULTS-quick.md

bench/README.md says what each figure means.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import pathlib
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import clients  # noqa: E402
import hostile  # noqa: E402
import httpload  # noqa: E402
import ingest  # noqa: E402
import pyspy  # noqa: E402
import report  # noqa: E402
import seed  # noqa: E402

OUT = BENCH / "out"
INBOX = ingest.INBOX
RAW = "raw"
YOGA = "yoga"
OURS = "inbox"
YOGA_DIR = BENCH / "yoga"
HELLO = "{ hello }"
SEED_CHUNK = 100_000

FULL = {"subscribers": (10, 100, 1000, 10000), "steady_seconds": 10, "rate": 5.0,
        "burst": {10: 1000, 100: 1000, 1000: 200, 10000: 20},
        # At N = 10,000 one message/s is already 10,000 deliveries/s: the steady rate is 1/s there.
        "steady_rate": {10000: 1.0},
        "profiles": True, "profile_deliveries": 60_000, "inbound_probe": 100, "http_seconds": 10, "latency_seconds": 5,
        "conversations": 1_000_000, "ingest": 2000, "users": 10, "processes": 4, "publishers": 4,
        "hostile_seconds": 10}
# Indicative only: smaller bursts, 20k conversations, no profiles.
QUICK = {**FULL, "subscribers": (10, 100, 1000), "steady_seconds": 3, "burst": {10: 200, 100: 200, 1000: 30, 10000: 5},
         "profiles": False, "inbound_probe": 30, "http_seconds": 2, "latency_seconds": 2, "conversations": 20_000,
         "ingest": 300, "hostile_seconds": 3}

RECEIVE = "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id conversation { id } } }"
ME = "{ me { id } }"
PAGE = """query InboxPage($section: InboxSection!, $first: Int) {
  inbox(section: $section, first: $first) {
    edges { cursor node { id status section lastMessageAt unreadCount
      contact { id name avatarUrl } assignee { id name }
      lastMessage { id body sentAt direction senderName } } }
    pageInfo { hasNextPage endCursor } } }"""
PAGE_WITH_TOTAL = PAGE.replace("pageInfo {", "totalCount pageInfo {")
SEARCH = PAGE.replace("$first: Int)", "$first: Int, $search: String)").replace(
    "inbox(section: $section, first: $first)", "inbox(section: $section, first: $first, search: $search)")


def search_terms(conversations: int) -> dict:
    """The search figures' terms on the seed (bench/seed.py: bodies "Seeded message N of
    conversation I", contacts "Seeded contact I"): one message's conversation, one contact's
    name (both UNASSIGNED: I ends in 7), and a term in every row."""
    def unassigned(share: float) -> int:
        i = int(conversations * share)
        return i - i % 10 + 7 if i - i % 10 + 7 < conversations else i - i % 10 - 3

    return {"rare": f"conversation {unassigned(0.424247)}", "name": f"contact {unassigned(0.777777)}",
            "common": "seeded message"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes ----------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_busy() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    fields = open("/proc/stat").readline().split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def yoga_install() -> None:
    """`npm ci` from the committed lock file, once per checkout (node_modules is not committed)."""
    if not (YOGA_DIR / "node_modules" / ".package-lock.json").exists():
        log("installing graphql-yoga (npm ci in bench/yoga)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=YOGA_DIR, check=True)


def yoga_server(name: str) -> "Server":
    yoga_install()
    return Server(name, ["node", str(YOGA_DIR / "server.js")])


def own_cpu() -> float:
    """This process and its finished children (wrk)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class Server:
    """A server subprocess on a free 127.0.0.1 port, its output in bench/out/logs/."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, preexec=clients.raise_nofile) -> None:
        self.port = ingest.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / "logs" / f"{name}.log"
        self.process = subprocess.Popen([*argv, "--port", str(self.port)], env={**os.environ, **(env or {})},
                                        stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                        preexec_fn=preexec)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{name} exited at start; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{name} did not start; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return clients.cpu_seconds(self.pid)

    def system_cpu(self) -> float:
        """Kernel time: socket writes and the wake-ups of their readers."""
        return clients.cpu_times(self.pid)[1]

    def rss(self) -> int:
        return rss_kb(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Database:
    """A fresh database per inbox server: a new SQLite file, or the PostgreSQL database's
    public schema dropped and recreated."""

    created: list[str] = []  # SQLite files of this run, removed at its end

    def __init__(self, url: str | None) -> None:
        self.postgres_url = url
        self.sqlite_path: str | None = None

    @classmethod
    def remove_files(cls) -> None:
        for path in cls.created:
            for suffix in ("", "-wal", "-shm", "-journal", ".serve.lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + suffix)
        cls.created.clear()

    @property
    def kind(self) -> str:
        return "postgres" if self.postgres_url else "sqlite"

    def fresh(self) -> str:
        if self.postgres_url:
            asyncio.run(ensure_postgres(self.postgres_url))
            asyncio.run(ingest.reset_postgres(self.postgres_url))
            return self.postgres_url
        self.sqlite_path = tempfile.mktemp(prefix="inbox-bench-", suffix=".sqlite3")
        Database.created.append(self.sqlite_path)
        return f"sqlite://{self.sqlite_path}"


async def ensure_postgres(url: str) -> None:
    import asyncpg

    target = url.replace("postgres://", "postgresql://", 1)
    try:
        connection = await asyncpg.connect(target)
    except asyncpg.InvalidCatalogNameError:
        name = target.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(target.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return
    await connection.close()


def inbox_env(database_url: str, broadcast: str, **extra: str) -> dict:
    env = {"INBOX_DATABASE_URL": database_url, "INBOX_BROADCAST_URL": broadcast, "INBOX_LOG_LEVEL": "WARNING",
           "INBOX_BROADCAST_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
           # A burst queues events per subscription while the server catches up; the bench
           # measures throughput, not the 1013 overflow policy (tested in tests/).
           "INBOX_SUBSCRIPTION_BUFFER": "1000000", "INBOX_SMTP_URL": "",
           # N subscribers are 10 users' N / 10 sockets each (up to 1,000): over the per-user bound (50).
           "INBOX_WS_MAX_SOCKETS_PER_USER": "100000",
           # ... and their 1,000 subscriptions each start at once, not at one user's pace.
           "INBOX_WS_SETUPS_PER_SECOND_PER_USER": "0",
           # The publishers' bursts measure the server's capacity, not one partner's pace
           # (bench/hostile.py measures that, at the deployed defaults).
           "INBOX_HTTP_REQUESTS_PER_SECOND_PER_USER": "0"}
    env.update(extra)
    return env


# -- GraphQL over HTTP ------------------------------------------------------------------

async def gql(http: httpx.AsyncClient, token: str, query: str, variables: dict | None = None) -> dict:
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}},
                               headers={"Authorization": f"Bearer {token}"})
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(body['errors'])[:500]}")
    return body["data"]


@contextlib.asynccontextmanager
async def client(base: str):
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=64)) as http:
        yield http


async def company_setup(http: httpx.AsyncClient, admin: str, users: int) -> dict:
    """A CUSTOM channel, `users` members sharing it, and one conversation."""
    installed = (await gql(http, admin, "mutation($i: InstallChannelInput!) { installChannel(input: $i) "
                           "{ channel { id } channelToken } }", {"i": {"kind": "CUSTOM", "name": "Bench partner"}}))
    channel = installed["installChannel"]["channel"]["id"]
    tokens, ids = [], []
    for n in range(users):
        made = await gql(http, admin, "mutation($i: CreateUserInput!) { createUser(input: $i) "
                         "{ user { id } apiToken } }", {"i": {"name": f"Agent {n}", "email": f"agent{n}@bench.test"}})
        tokens.append(made["createUser"]["apiToken"])
        ids.append(made["createUser"]["user"]["id"])
    if ids:
        await gql(http, admin, "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }",
                  {"c": channel, "u": ids})
    return {"channel": channel, "channel_token": installed["installChannel"]["channelToken"],
            "user_tokens": tokens, "user_ids": ids}


def bootstrap(env: dict) -> str:
    return ingest.bootstrap(env)


# -- publishers ---------------------------------------------------------------------------

class InboxPublisher:
    """Inbound messages from one contact through the real inbound path."""

    def __init__(self, http: httpx.AsyncClient, channel_token: str) -> None:
        self.http = http
        self.token = channel_token
        self.failures = 0
        self.contact = "bench-contact"

    async def publish(self, phase: str, seq: int) -> dict | None:
        variables = {"i": {"externalMessageId": f"{phase}-{seq}-{uuid.uuid4().hex[:8]}",
                           "sender": {"externalId": self.contact, "name": "Bench Contact"},
                           "body": clients.body(phase, seq)}}
        try:
            response = await self.http.post("/graphql", json={"query": RECEIVE, "variables": variables},
                                            headers={"Authorization": f"Bearer {self.token}"})
            body = response.json()
        except (httpx.HTTPError, ValueError):
            self.failures += 1
            return None
        if body.get("errors") or response.status_code != 200:
            self.failures += 1
            return None
        return body["data"]["receiveChannelMessage"]


class RawPublisher:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.failures = 0

    async def publish(self, phase: str, seq: int) -> None:
        try:
            response = await self.http.post("/publish", json={"seq": seq, "body": clients.body(phase, seq)})
            if response.status_code != 200:
                self.failures += 1
        except httpx.HTTPError:
            self.failures += 1


async def steady(publisher, phase: str, count: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for seq in range(count):
        await asyncio.sleep(max(0.0, start + seq / rate - loop.time()))
        tasks.append(asyncio.create_task(publisher.publish(phase, seq)))
    await asyncio.gather(*tasks)


async def burst(publisher, phase: str, count: int, concurrency: int) -> None:
    sequence = iter(range(count))

    async def worker() -> None:
        for seq in sequence:
            await publisher.publish(phase, seq)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- the fan-out scenario ------------------------------------------------------------------

async def measure_phase(pool: clients.ClientPool, server: Server, publisher, phase: str, count: int,
                        *, rate: float | None, concurrency: int) -> dict:
    await pool.abroadcast({"cmd": "phase", "name": phase, "count": count})
    cpu_before, client_cpu_before, busy_before, own_before = server.cpu(), pool.cpu(), machine_busy(), own_cpu()
    system_before = server.system_cpu()
    started = time.time()
    if rate:
        await steady(publisher, phase, count, rate)
    else:
        await burst(publisher, phase, count, concurrency)
    published = time.time()
    reports = await pool.abroadcast({"cmd": "collect", "name": phase, "idle_timeout": 15.0, "deadline": 300.0})
    figures = clients.merge(reports)
    cpu = server.cpu() - cpu_before
    system = server.system_cpu() - system_before
    client_cpu = pool.cpu() - client_cpu_before
    ended = time.time()
    # What other processes on the machine took meanwhile: noise in every figure.
    others = machine_busy() - busy_before - cpu - client_cpu - (own_cpu() - own_before)
    span = (figures["last"] or published) - started
    figures.update({
        "messages": count, "publish_seconds": round(published - started, 2), "seconds": round(span, 2),
        "deliveries_per_s": round(figures["received"] / span) if span > 0 else 0,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_delivery": round(cpu / figures["received"] * 1e6, 1) if figures["received"] else None,
        "server_system_cpu_us_per_delivery": round(system / figures["received"] * 1e6, 1) if figures["received"] else None,
        "server_cpu_share": round(cpu / span, 2) if span > 0 else None,
        "client_cpu_s": round(client_cpu, 2), "publish_failures": publisher.failures,
        "other_processes_cores": round(max(0.0, others) / (ended - started), 2)})
    publisher.failures = 0
    for key in ("first", "last"):
        figures.pop(key)
    return figures


async def fanout(kind: str, n: int, cfg: dict, pool: clients.ClientPool, database: Database, broadcast: str,
                 profile: pathlib.Path | None = None) -> dict:
    result: dict = {"server": kind, "subscribers": n}
    if kind == RAW:
        server = Server(f"raw-{n}", [sys.executable, str(BENCH / "baseline.py")])
    elif kind == YOGA:
        server = yoga_server(f"yoga-{n}")
    else:
        env = inbox_env(database.fresh(), broadcast)
        admin = bootstrap(env)
        server = Server(f"inbox-{n}", [INBOX, "serve"], env)
    try:
        async with client(server.base) as http:
            if kind in (RAW, YOGA):
                publisher = RawPublisher(http)
                subs = [("raw", {"c": "raw"})] * n
                await http.post("/graphql", json={"query": ME if kind == RAW else HELLO})  # warm
            else:
                setup = await company_setup(http, admin, cfg["users"])
                publisher = InboxPublisher(http, setup["channel_token"])
                first = await publisher.publish("x", 0)
                conversation = first["conversation"]["id"]
                # The inbound path alone, with nobody listening: its cost is in every delivery
                # figure. Profiled on the run that profiles its burst, measured on the other.
                recorder = pyspy.Recorder(server.pid, OUT / "profile-inbound.txt") if profile else None
                cpu_before = server.cpu()
                started = time.perf_counter()
                await burst(publisher, "x", cfg["inbound_probe"], cfg["publishers"])
                elapsed = time.perf_counter() - started
                figures = {"messages": cfg["inbound_probe"], "per_s": round(cfg["inbound_probe"] / elapsed),
                           "server_cpu_us_per_message": round((server.cpu() - cpu_before) / cfg["inbound_probe"] * 1e6),
                           "failures": publisher.failures}
                if recorder is not None:
                    figures["profile"] = pyspy.summarise(recorder.output) if recorder.stop() else {"samples": 0}
                    figures["profile_file"] = str(recorder.output.relative_to(ROOT))
                    result["inbound_profiled"] = figures
                else:
                    result["inbound_only"] = figures
                tokens = setup["user_tokens"] or [admin]
                subs = [(tokens[i % len(tokens)], {"c": conversation}) for i in range(n)]
            await asyncio.sleep(0.5)
            rss_idle_before = server.rss()
            started = time.perf_counter()
            opened = await asyncio.to_thread(pool.open, server.ws_url, subs)
            if opened["failed"]:
                raise RuntimeError(f"{opened['failed']} of {n} subscribers failed to connect")
            # Subscriptions start asynchronously: publish warm-up messages until every
            # socket has received one; from then on no message can be missed.
            # Each warm-up message is N deliveries: at N = 10,000 they come slower.
            seq, deadline = 0, time.monotonic() + 120 + n / 50
            while True:
                await publisher.publish("w", seq)
                seq += 1
                await asyncio.sleep(0.3 + n / 10_000)
                warm, errors = await asyncio.to_thread(pool.warm)
                if warm >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {warm} of {n} subscriptions live after the warm-up: {errors}")
            result["connect_seconds"] = round(time.perf_counter() - started, 2)
            await asyncio.sleep(1.0)
            rss_idle_after = server.rss()
            result["rss_before_subscribers_kb"] = rss_idle_before
            result["rss_with_subscribers_kb"] = rss_idle_after
            result["kb_per_idle_subscription"] = round((rss_idle_after - rss_idle_before) / n, 2)

            rate = cfg["steady_rate"].get(n, cfg["rate"])
            log(f"  {kind} N={n}: steady {rate:g}/s for {cfg['steady_seconds']} s")
            result["steady"] = await measure_phase(pool, server, publisher, "s",
                                                   int(cfg["steady_seconds"] * rate), rate=rate, concurrency=1)
            result["steady"]["rate"] = rate
            messages = cfg["burst"][n]
            log(f"  {kind} N={n}: burst of {messages} messages ({messages * n} deliveries)")
            rss_before = server.rss()
            result["burst"] = await measure_phase(pool, server, publisher, "b", messages, rate=None,
                                                  concurrency=cfg["publishers"])
            rss_after = server.rss()
            result["burst"].update({"rss_before_kb": rss_before, "rss_after_kb": rss_after,
                                    "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1)})
            if profile is not None:
                messages = max(5, cfg["profile_deliveries"] // n)
                log(f"  {kind} N={n}: profiled burst of {messages} messages (py-spy)")
                recorder = pyspy.Recorder(server.pid, profile)
                result["profiled_burst"] = await measure_phase(pool, server, publisher, "p", messages, rate=None,
                                                               concurrency=cfg["publishers"])
                result["profile"] = pyspy.summarise(profile) if recorder.stop() else {"samples": 0}
                result["profile_file"] = str(profile.relative_to(ROOT))
            await asyncio.to_thread(pool.close)
    finally:
        server.stop()
    return result


# -- HTTP ------------------------------------------------------------------------------------

# The sender and mailer poll these on their own: not part of any request.
BACKGROUND = (b'FROM "delivery" WHERE "next_attempt_at"<=', b'"next_attempt_at"<=', b"Created connection",
              b"Closed connection")


def count_queries(server: Server, token: str, query: str, variables: dict, tries: int = 3) -> dict:
    """SQL statements one request runs: the server logs each at DEBUG (tortoise.db_client),
    with the time to the next record (the statement plus the Python work after it). The
    fewest of `tries` requests: the server's background work (the sender's and the media
    keeper's polls) only ever adds statements that fall in a request's window."""
    return min((_count_queries(server, token, query, variables) for _ in range(tries)), key=lambda q: q["count"])


def _count_queries(server: Server, token: str, query: str, variables: dict) -> dict:
    time.sleep(0.3)
    before = server.log_path.stat().st_size
    started = time.time()
    response = httpx.post(f"{server.base}/graphql", json={"query": query, "variables": variables},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    ended = time.time()
    assert not response.json().get("errors"), response.text[:300]
    time.sleep(0.3)
    with open(server.log_path, "rb") as logged:
        logged.seek(before)
        text = logged.read()
    records = []
    # Every log record starts with its time; a statement may span lines.
    heads = list(re.finditer(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): ", text, re.M))
    for i, head in enumerate(heads):
        if head.group(3) != b"tortoise.db_client":
            continue
        message = text[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        if any(marker in message for marker in BACKGROUND):
            continue
        moment = dt.datetime.strptime(head.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        records.append((moment, message.decode(errors="replace").strip()))
    statements = []
    for i, (moment, sql) in enumerate(records):
        following = records[i + 1][0] if i + 1 < len(records) else ended
        statements.append({"sql": re.sub(r"\s+", " ", sql)[:140], "ms_to_next": round((following - moment) * 1000, 1)})
    return {"count": len(records), "request_ms": round((ended - started) * 1000, 1), "statements": statements}


def http_load(server: Server, token: str | None, query: str, variables: dict, connections: int,
              seconds: float, path: str = "/graphql") -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    check = httpx.post(f"{server.base}{path}", json={"query": query, "variables": variables}, headers=headers,
                       timeout=30)
    if check.status_code != 200 or check.json().get("errors"):
        raise RuntimeError(f"query fails: {check.text[:300]}")
    cpu_before, busy_before, own_before, started = server.cpu(), machine_busy(), own_cpu(), time.time()
    figures = httpload.load(f"{server.base}{path}", {"query": query, "variables": variables}, headers,
                            connections, seconds)
    cpu = server.cpu() - cpu_before
    others = machine_busy() - busy_before - cpu - (own_cpu() - own_before)
    figures["other_processes_cores"] = round(max(0.0, others) / (time.time() - started), 2)
    figures["server_cpu_us_per_request"] = round(cpu / figures["requests"] * 1e6) if figures["requests"] else None
    figures["connections"] = connections
    return figures


def http_raw(cfg: dict) -> dict:
    server = Server("raw-http", [sys.executable, str(BENCH / "baseline.py")])
    try:
        return {"me": http_load(server, None, ME, {}, 32, cfg["http_seconds"]),
                "starlette": http_load(server, None, ME, {}, 32, cfg["latency_seconds"], "/starlette/graphql")}
    finally:
        server.stop()


def http_yoga(cfg: dict) -> dict:
    server = yoga_server("yoga-http")
    try:
        return {"hello": http_load(server, None, HELLO, {}, 32, cfg["http_seconds"])}
    finally:
        server.stop()


def seeded_inbox(env: dict, database: Database, conversations: int, label: str) -> tuple[str, dict, dict, float]:
    """A company made through the server (bootstrap, a CUSTOM channel, a member, a first
    conversation), then `conversations` cloned from it (bench/seed.py): the admin's
    token, what was made, the rows seeded and the seconds seeding took."""
    admin = bootstrap(env)
    server = Server(f"inbox-http-{label}-setup", [INBOX, "serve"], env)
    try:
        async def setup() -> dict:
            async with client(server.base) as http:
                made = await company_setup(http, admin, 1)
                publisher = InboxPublisher(http, made["channel_token"])
                template = await publisher.publish("t", 0)
                await publisher.publish("t", 1)
                me = (await gql(http, admin, ME))["me"]["id"]
                return {**made, "template": template["conversation"]["id"], "admin_id": me}

        made = asyncio.run(setup())
    finally:
        server.stop()
    from_global = lambda gid: int(__import__("base64").b64decode(gid + "=" * (-len(gid) % 4)).decode().split(":")[1])  # noqa: E731
    started = time.perf_counter()
    rows: dict = {}
    # In chunks of 100k conversations (rows of 1M at once would take gigabytes), oldest first.
    chunks = max(1, conversations // SEED_CHUNK)
    for chunk in range(chunks):
        size = conversations // chunks + (1 if chunk < conversations % chunks else 0)
        plan = seed.Plan(size, admin_id=from_global(made["admin_id"]), member_id=from_global(made["user_ids"][0]),
                         first=chunk * (conversations // chunks) + min(chunk, conversations % chunks),
                         days=(30 * (chunks - 1 - chunk) / chunks, 30 * (chunks - chunk) / chunks))
        if database.postgres_url:
            done = asyncio.run(seed.seed_postgres(database.postgres_url, plan, from_global(made["template"])))
        else:
            done = seed.seed_sqlite(database.sqlite_path, plan, from_global(made["template"]))
        rows = {table: rows.get(table, 0) + count for table, count in done.items()}
    return admin, made, rows, time.perf_counter() - started


def http_inbox(cfg: dict, database: Database, broadcast: str, label: str) -> dict:
    result: dict = {"database": database.kind, "conversations": cfg["conversations"]}
    env = inbox_env(database.fresh(), broadcast)
    admin, made, rows, seconds = seeded_inbox(env, database, cfg["conversations"], label)
    result["seeded_rows"] = rows
    result["seed_seconds"] = round(seconds, 1)
    log(f"  seeded {rows} in {result['seed_seconds']} s")

    page = {"section": "UNASSIGNED", "first": 25}
    server = Server(f"inbox-http-{label}-queries", [INBOX, "serve"], {**env, "INBOX_LOG_LEVEL": "DEBUG"})
    try:
        result["sql_queries"] = {
            "me": count_queries(server, admin, ME, {}),
            "page_first_5": count_queries(server, admin, PAGE, {**page, "first": 5}),
            "page_first_25": count_queries(server, admin, PAGE, page),
            "page_first_100": count_queries(server, admin, PAGE, {**page, "first": 100}),
            "page_with_total_first_25": count_queries(server, admin, PAGE_WITH_TOTAL, page),
        }
        # The inbound path: a message opening a conversation, then one into it (once each:
        # the same message again would be a duplicate, stored once).
        for name, external in (("receive_new_conversation", "q-1"), ("receive_existing_conversation", "q-2")):
            result["sql_queries"][name] = count_queries(server, made["channel_token"], RECEIVE, {"i": {
                "externalMessageId": external, "sender": {"externalId": "query-count-contact", "name": "Q"},
                "body": "counting statements"}}, tries=1)
    finally:
        server.stop()

    server = Server(f"inbox-http-{label}", [INBOX, "serve"], env)
    try:
        log(f"  {label}: {{ me {{ id }} }} x 32 connections, {cfg['http_seconds']} s")
        result["me"] = http_load(server, admin, ME, {}, 32, cfg["http_seconds"])
        log(f"  {label}: inbox page, 1 connection, {cfg['latency_seconds']} s")
        result["page"] = http_load(server, admin, PAGE, page, 1, cfg["latency_seconds"])
        result["page_loaded"] = http_load(server, admin, PAGE, page, 8, cfg["latency_seconds"])
        result["page_with_total"] = http_load(server, admin, PAGE_WITH_TOTAL, page, 1, cfg["latency_seconds"])
        result["search"] = {}
        for name, term in search_terms(cfg["conversations"]).items():
            log(f"  {label}: search page {term!r}, 1 connection, {cfg['latency_seconds']} s")
            result["search"][name] = {**http_load(server, admin, SEARCH, {**page, "search": term}, 1,
                                                  cfg["latency_seconds"]), "term": term}
        profiles = {}
        for name, query, variables, connections in ((("me", ME, {}, 32), ("page", PAGE, page, 1))
                                                    if cfg["profiles"] else ()):
            path = OUT / f"profile-http-{name}-{label}.txt"
            recorder = pyspy.Recorder(server.pid, path)
            httpload.load(f"{server.base}/graphql", {"query": query, "variables": variables},
                          {"Authorization": f"Bearer {admin}"}, connections, 4)
            profiles[name] = pyspy.summarise(path) if recorder.stop() else {"samples": 0}
            profiles[name]["file"] = str(path.relative_to(ROOT))
        result["profiles"] = profiles
    finally:
        server.stop()
    return result


# -- the run -------------------------------------------------------------------------------

def machine() -> dict:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+)", pathlib.Path("/proc/meminfo").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # Changes to the benchmark itself do not change what it measures.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(),
            "cpu": model.group(1).strip() if model else "?",
            "memory_gib": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
            "python": platform.python_version(), "kernel": platform.release(),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""), "http_tool": httpload.tool(),
            "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() or "?"}


def quiet_machine(wait: float) -> float:
    """Cores other processes use (sampled over 3 s); waits up to `wait` seconds for it to
    drop under 0.2 core: another test suite on a 2-core machine skews every figure."""
    deadline = time.monotonic() + wait
    while True:
        busy, own = machine_busy(), own_cpu()
        time.sleep(3)
        others = max(0.0, (machine_busy() - busy - (own_cpu() - own)) / 3)
        if others < 0.2 or time.monotonic() >= deadline:
            return round(others, 2)
        log(f"other processes use {others:.2f} cores; waiting for a quiet machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages and shorter runs (~3 min)")
    parser.add_argument("--database", default=None,
                        help="PostgreSQL URL for every inbox server (its public schema is DROPPED); "
                             "default: fresh SQLite files")
    parser.add_argument("--broadcast", default="memory://", help="broadcast backend of the inbox servers")
    parser.add_argument("--also-postgres", default=None, metavar="URL",
                        help="also measure the HTTP figures (me, inbox page) on this PostgreSQL database "
                             "(its public schema is DROPPED), e.g. postgres://postgres@127.0.0.1:5432/inbox_bench")
    parser.add_argument("--only", choices=("fanout", "http", "ingest", "hostile"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--subscribers", type=int, action="append", choices=(10, 100, 1000, 10000),
                        help="fan-out only for these N (repeatable; default: all of the mode)")
    parser.add_argument("--conversations", type=int, default=None,
                        help="conversations seeded for the page figures (default: 1,000,000; 20,000 with --quick)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for other processes to leave the CPUs alone")
    parser.add_argument("--output", default=None, help="markdown report (default: bench/RESULTS.md, "
                                                        "bench/out/RESULTS-quick.md with --quick)")
    args = parser.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    if args.conversations:
        cfg["conversations"] = args.conversations
    if args.subscribers:
        cfg["subscribers"] = tuple(sorted(set(args.subscribers)))
        cfg["burst"] = {**FULL["burst"], **cfg["burst"]}
    if cfg["profiles"] and not pyspy.available():
        log("py-spy is not installed (pip install -r bench/requirements.txt): no profiles")
        cfg["profiles"] = False
    parts = set(args.only or ("fanout", "http", "ingest", "hostile"))
    output = pathlib.Path(args.output) if args.output else (OUT / "RESULTS-quick.md" if args.quick
                                                            else BENCH / "RESULTS.md")
    OUT.mkdir(exist_ok=True)
    clients.raise_nofile()
    database = Database(args.database)
    results: dict = {"machine": machine(), "config": {k: (v if not isinstance(v, dict) else
                                                        {str(a): b for a, b in v.items()}) for k, v in cfg.items()},
                     "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
                     "database": database.kind, "broadcast": args.broadcast}
    try:
        run_parts(args, cfg, parts, database, results, output)
    finally:
        Database.remove_files()


def run_parts(args, cfg: dict, parts: set, database: Database, results: dict, output: pathlib.Path) -> None:
    started = time.perf_counter()
    log(f"machine: {results['machine']}")
    results["machine"]["other_processes_cores_at_start"] = quiet_machine(args.wait_quiet)
    if results["machine"]["other_processes_cores_at_start"] >= 0.2:
        log(f"warning: other processes use {results['machine']['other_processes_cores_at_start']} cores; "
            "figures will be noisy")
    if "fanout" in parts:
        pool = clients.ClientPool(cfg["processes"])
        try:
            results["fanout"] = {}
            for n in cfg["subscribers"]:
                for kind in (RAW, YOGA, OURS):
                    log(f"fan-out: {kind} server, N={n} subscribers in {cfg['processes']} client processes")
                    profile = (OUT / f"profile-fanout-{n}.txt" if cfg["profiles"] and kind == OURS
                               and n == max(cfg["subscribers"]) else None)
                    results["fanout"][f"{kind}-{n}"] = asyncio.run(
                        fanout(kind, n, cfg, pool, database, args.broadcast, profile))
                    log(f"  -> {summary_line(results['fanout'][f'{kind}-{n}'])}")
        finally:
            pool.exit()
    if "http" in parts:
        log("HTTP: raw baseline")
        results["http_raw"] = http_raw(cfg)
        log("HTTP: graphql-yoga { hello }")
        results["http_yoga"] = http_yoga(cfg)
        log(f"HTTP: inbox on {database.kind}")
        results["http"] = {database.kind: http_inbox(cfg, database, args.broadcast, database.kind)}
        if args.also_postgres and not args.database:
            log("HTTP: inbox on postgres")
            results["http"]["postgres"] = http_inbox(cfg, Database(args.also_postgres), args.broadcast, "postgres")
    if "ingest" in parts:
        # From senders the server knows (the warm-up's 50), and from 500 senders: a new sender's
        # first message also has its profile fetched from the Graph API and its picture kept.
        log(f"webhook ingestion: {cfg['ingest']} signed Messenger webhooks from 50 known senders")
        results["ingest_known"] = ingest.measure(cfg["ingest"], 32, args.database, args.broadcast, contacts=50)
        log(f"webhook ingestion: {cfg['ingest']} signed Messenger webhooks from 500 senders")
        results["ingest"] = ingest.measure(cfg["ingest"], 32, args.database, args.broadcast,
                                           OUT / "profile-ingest.txt" if cfg["profiles"] else None)
    if "hostile" in parts:
        log(f"hostile clients: {len(hostile.ATTACKS)} attacks of {cfg['hostile_seconds']} s beside another company")
        env = inbox_env(database.fresh(), args.broadcast, **hostile.ENV)
        try:
            results["hostile"] = hostile.measure(
                cfg["hostile_seconds"], lambda preexec: Server("inbox-hostile", [INBOX, "serve"], env, preexec),
                lambda company: hostile.bootstrap(env, company), OUT / "hostile" if cfg["profiles"] else None)
        except Exception as error:  # the rest of the run's figures are still worth writing
            log(f"hostile clients failed: {error!r}")
            results["hostile_error"] = repr(error)
    results["seconds"] = round(time.perf_counter() - started)
    # Other people may commit or edit the server while a run goes on: say so.
    now = machine()["commit"]
    if now != results["machine"]["commit"]:
        results["machine"]["commit"] += f"; by the end of the run: {now}"
    (OUT / ("results-quick.json" if args.quick else "results.json")).write_text(json.dumps(results, indent=1))
    report.write(results, output)
    log(f"done in {results['seconds']} s; wrote {output}")


def summary_line(result: dict) -> str:
    b, s = result["burst"], result["steady"]
    return (f"burst {b['deliveries_per_s']}/s, {b['server_cpu_us_per_delivery']} us/delivery, "
            f"steady p99 {s['p99_ms']} ms, {result['kb_per_idle_subscription']} KB/sub, "
            f"loss {b['missing'] + s['missing']}, dup {b['duplicates'] + s['duplicates']}")


if __name__ == "__main__":
    main()
