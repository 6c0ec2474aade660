"""The hostile benchmark (issue 11): while one user of one company attacks the server,
a user of another company loads inbox pages and holds a subscription. Each attack is
a phase of its own; the victim's page p99 and delivery latency are reported beside the
same figures with no attack, with the server's RSS.

Targets: under every attack the victim's p99 (page and delivery) ≤ 2× its figure with
no attack, and the server's RSS ≤ 300 MB.

    .venv/bin/python bench/run.py --only hostile [--quick]   # as a part of the benchmark
    .venv/bin/python bench/hostile.py [--seconds 10]          # alone, prints JSON
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import httpx
import websockets

import clients
import pyspy

PAGE = """query VictimPage { inbox(section: UNASSIGNED, first: 25) { edges { node { id unreadCount
  contact { name } lastMessage { body } } } } }"""
RECEIVE = "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id conversation { id } } }"
INSTALL = ("mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }")
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
UNASSIGN = "mutation($c: ID!) { unassignConversation(conversationId: $c) { id } }"
SEND = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"
LIVE = "subscription($c: ID!) { messageAdded(conversationId: $c) { id body } }"
ME = "{ me { id } }"
MB = 1024 * 1024


def _nested(first: int) -> str:
    """The query of issue 11: 5 × 5 aliases of nested message pages, 200,000 nodes at first: 20."""
    inner = " ".join(f"b{i}: messages(first: {first}) {{ edges {{ node {{ body }} }} }}" for i in range(5))
    middle = " ".join(f"a{i}: messages(first: {first}) {{ edges {{ node {{ conversation {{ {inner} }} }} }} }}"
                      for i in range(5))
    return (f"query($c: ID!) {{ conversation(id: $c) {{ messages(first: {first}) {{ edges {{ node {{ "
            f"conversation {{ {middle} }} }} }} }} }} }}")


def _heavy_subscription() -> str:
    """A viewer-dependent subscription made as expensive as the document limits allow."""
    fields = " ".join(f"u{i}: unreadCount s{i}: section" for i in range(14))
    return f"subscription {{ conversationChanged {{ conversation {{ id {fields} }} }} }}"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class Tally:
    """What the server answered the attacker: HTTP statuses, error codes, close codes."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def answer(self, response: httpx.Response) -> None:
        try:
            errors = response.json().get("errors") or []
        except ValueError:
            errors = []
        code = errors[0].get("extensions", {}).get("reason") or errors[0].get("extensions", {}).get("code") \
            if errors else "ok"
        self.add(f"{response.status_code} {code}")


async def gql(http: httpx.AsyncClient, token: str, query: str, variables: dict | None = None) -> dict:
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}},
                               headers={"Authorization": f"Bearer {token}"})
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(body['errors'])[:300]}")
    return body["data"]


async def connect(ws_url: str, token: str | None, *, init: bool = True):
    socket_ = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], max_size=None,
                                       open_timeout=10, close_timeout=1)
    if init:
        await socket_.send(json.dumps({"type": "connection_init",
                                       "payload": {"authorization": f"Bearer {token}"} if token else {}}))
        while json.loads(await socket_.recv())["type"] != "connection_ack":
            pass
    return socket_


# -- the two companies -------------------------------------------------------------------------

async def company(http: httpx.AsyncClient, admin: str, name: str, callback: str | None = None) -> dict:
    made = await gql(http, admin, INSTALL, {"i": {"kind": "CUSTOM", "name": name,
                                                  **({"custom": {"callbackUrl": callback}} if callback else {})}})
    channel_token = made["installChannel"]["channelToken"]
    me = (await gql(http, admin, ME))["me"]["id"]
    return {"admin": admin, "me": me, "channel": made["installChannel"]["channel"]["id"],
            "channel_token": channel_token}


async def inbound(http: httpx.AsyncClient, channel_token: str, contact: str, body: str) -> dict:
    variables = {"i": {"externalMessageId": uuid.uuid4().hex, "sender": {"externalId": contact, "name": contact},
                       "body": body}}
    return (await gql(http, channel_token, RECEIVE, variables))["receiveChannelMessage"]


# -- the victim ----------------------------------------------------------------------------------

async def victim_load(base: str, ws_url: str, victim: dict, seconds: float) -> dict:
    """Inbox pages on one connection and a live subscription fed 20 messages/s."""
    pages: list[float] = []
    deliveries: list[float] = []
    sent: dict[str, float] = {}
    closed: list[str] = []
    failures: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        live = await connect(ws_url, victim["admin"])
        await live.send(json.dumps({"id": "v", "type": "subscribe",
                                    "payload": {"query": LIVE, "variables": {"c": victim["conversation"]}}}))
        # The subscription is live once a message sent after it arrives.
        ready = asyncio.Event()

        async def receive() -> None:
            try:
                async for raw in live:
                    frame = json.loads(raw)
                    if frame.get("type") != "next":
                        continue
                    body = frame["payload"]["data"]["messageAdded"]["body"]
                    if body in sent:
                        deliveries.append((time.perf_counter() - sent.pop(body)) * 1000)
                    ready.set()
            except websockets.ConnectionClosed as closed_:
                closed.append(str(closed_.rcvd.code if closed_.rcvd else "no close frame"))

        receiver = asyncio.create_task(receive())
        while not ready.is_set():
            await inbound(http, victim["channel_token"], "victim-contact", "warm-up")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ready.wait(), 0.5)

        async def send(body: str) -> None:
            try:
                await inbound(http, victim["channel_token"], "victim-contact", body)
            except (httpx.HTTPError, RuntimeError, ValueError):
                failures.append("message")

        async def publish() -> None:
            seq, tasks = 0, []
            while loop.time() < deadline:
                body = f"victim-{seq}"
                sent[body] = time.perf_counter()
                tasks.append(asyncio.create_task(send(body)))
                seq += 1
                await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)

        async def browse() -> None:
            while loop.time() < deadline:
                started = time.perf_counter()
                try:
                    response = await http.post("/graphql", json={"query": PAGE},
                                               headers={"Authorization": f"Bearer {victim['admin']}"})
                    ok = response.status_code == 200 and not response.json().get("errors")
                except (httpx.HTTPError, ValueError):
                    ok = False
                # A failed page counts at the time it took: an attack must not hide in errors.
                pages.append((time.perf_counter() - started) * 1000)
                if not ok:
                    failures.append("page")

        await asyncio.gather(publish(), browse())
        await asyncio.sleep(1.0)  # the last deliveries
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await live.close()
    return {"pages": len(pages), "page_p50_ms": percentile(pages, 0.5), "page_p99_ms": percentile(pages, 0.99),
            "deliveries": len(deliveries), "delivery_p50_ms": percentile(deliveries, 0.5),
            "delivery_p99_ms": percentile(deliveries, 0.99), "undelivered": len(sent), "victim_closed": closed,
            "failed_pages": failures.count("page"), "failed_messages": failures.count("message")}


# -- the attacks ---------------------------------------------------------------------------------

async def until(deadline: float) -> bool:
    return asyncio.get_running_loop().time() < deadline


async def costly_query(ctx: dict, deadline: float, tally: Tally) -> None:
    """The nested query of issue 11 (200,000 nodes at first: 20), four at a time."""
    async def one() -> None:
        async with httpx.AsyncClient(base_url=ctx["base"], timeout=60) as http:
            while await until(deadline):
                tally.answer(await http.post("/graphql", json={"query": _nested(20),
                                                               "variables": {"c": ctx["attacker"]["conversation"]}},
                                             headers={"Authorization": f"Bearer {ctx['attacker']['admin']}"}))
    await asyncio.gather(*(one() for _ in range(4)))


async def search_flood(ctx: dict, deadline: float, tally: Tally) -> None:
    """Searches of the longest allowed text (and longer), with totalCount, four at a time."""
    async def one(n: int) -> None:
        async with httpx.AsyncClient(base_url=ctx["base"], timeout=60) as http:
            while await until(deadline):
                text = ("x" * 200) if n % 2 else ("y" * 5000)
                query = "query($s: String) { inbox(section: UNASSIGNED, search: $s, first: 100) { totalCount } }"
                tally.answer(await http.post("/graphql", json={"query": query, "variables": {"s": text}},
                                             headers={"Authorization": f"Bearer {ctx['attacker']['admin']}"}))
    await asyncio.gather(*(one(n) for n in range(4)))


async def big_documents(ctx: dict, deadline: float, tally: Tally) -> None:
    """Distinct documents near the body limit, to fill the parse and validation caches."""
    async def one(n: int) -> None:
        seq = 0
        async with httpx.AsyncClient(base_url=ctx["base"], timeout=60) as http:
            while await until(deadline):
                padding = " " * (1000 * 1000 - 100)
                query = f"query Q{n}x{seq} {{ me {{ id }} }}{padding}"
                seq += 1
                tally.answer(await http.post("/graphql", json={"query": query},
                                             headers={"Authorization": f"Bearer {ctx['attacker']['admin']}"}))
    await asyncio.gather(*(one(n) for n in range(2)))


async def _assign_loop(ctx: dict, deadline: float, tally: Tally) -> None:
    attacker = ctx["attacker"]
    async with httpx.AsyncClient(base_url=ctx["base"], timeout=30) as http:
        while await until(deadline):
            for query, variables in ((ASSIGN, {"c": attacker["conversation"], "u": attacker["me"]}),
                                     (UNASSIGN, {"c": attacker["conversation"]})):
                tally.answer(await http.post("/graphql", json={"query": query, "variables": variables},
                                             headers={"Authorization": f"Bearer {attacker['admin']}"}))


async def _hold(socket_, tally: Tally, deadline: float) -> None:
    """Never reads: wait for the close the server should send, or the deadline."""
    remaining = deadline - asyncio.get_running_loop().time()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(socket_.wait_closed(), max(0.1, remaining))
    tally.add(f"close {socket_.close_code}" if socket_.close_code else "still open")


async def huge_operation_id(ctx: dict, deadline: float, tally: Tally) -> None:
    """A subscription with a 5 MB operation id on a socket that stops reading, while the
    same user's assignments make events for it."""
    socket_ = await connect(ctx["ws_url"], ctx["attacker"]["admin"])
    socket_.transport.pause_reading()
    with contextlib.suppress(websockets.ConnectionClosed):
        await socket_.send(json.dumps({"id": "i" * (5 * MB), "type": "subscribe",
                                       "payload": {"query": "subscription { conversationChanged { id } }"}}))
    await asyncio.gather(_hold(socket_, tally, deadline), _assign_loop(ctx, deadline, tally))


async def unread_backlog(ctx: dict, deadline: float, tally: Tally) -> None:
    """Ten sockets of 100 subscriptions each, ids of 128 characters, never read."""
    sockets = []
    for n in range(10):
        socket_ = await connect(ctx["ws_url"], ctx["attacker"]["admin"])
        for op in range(100):
            await socket_.send(json.dumps({"id": f"{n}-{op}".ljust(128, "x"), "type": "subscribe",
                                           "payload": {"query": "subscription { conversationChanged { id kind "
                                                                "conversation { id status lastMessageAt } } }"}}))
        socket_.transport.pause_reading()
        sockets.append(socket_)
    await asyncio.gather(_assign_loop(ctx, deadline, tally), *(_hold(s, tally, deadline) for s in sockets))


async def socket_flood(ctx: dict, deadline: float, tally: Tally) -> None:
    """200 authenticated sockets of one user, each asking for 150 subscriptions."""
    async def one(n: int) -> None:
        try:
            socket_ = await connect(ctx["ws_url"], ctx["attacker"]["admin"])
        except (OSError, websockets.WebSocketException) as error:
            tally.add(f"refused {type(error).__name__}")
            return
        try:
            for op in range(150):
                await socket_.send(json.dumps({"id": str(op), "type": "subscribe",
                                               "payload": {"query": "subscription { conversationChanged { id } }"}}))
            while await until(deadline):
                frame = json.loads(await asyncio.wait_for(socket_.recv(), max(0.1, deadline - time.monotonic())))
                if frame.get("type") == "error":
                    error = frame["payload"][0]
                    tally.add(f"error {error.get('extensions', {}).get('code') or error.get('message', '')[:60]}")
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        tally.add(f"close {socket_.close_code}" if socket_.close_code else "still open")
        await socket_.close()
    await asyncio.gather(*(one(n) for n in range(200)))


async def slow_clients(ctx: dict, deadline: float, tally: Tally) -> None:
    """300 sockets that never send connection_init, and 50 HTTP bodies sent a byte a second."""
    sockets = []
    for _ in range(300):
        with contextlib.suppress(OSError, websockets.WebSocketException):
            sockets.append(await connect(ctx["ws_url"], None, init=False))

    async def trickle() -> None:
        host, port = ctx["base"].removeprefix("http://").split(":")
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            tally.add("http refused")
            return
        writer.write(f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 100000\r\n\r\n".encode())
        try:
            while await until(deadline):
                writer.write(b" ")
                await writer.drain()
                if reader.at_eof():
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break
            tally.add("http body: closed by server" if reader.at_eof() else "http body: still open")
        except OSError:
            tally.add("http body: closed by server")
        writer.close()
    await asyncio.gather(*(trickle() for _ in range(50)), *(_hold(s, tally, deadline) for s in sockets))


async def heavy_subscriptions(ctx: dict, deadline: float, tally: Tally) -> None:
    """50 viewer-dependent subscriptions at the document limits, fed by assignments."""
    sockets = []
    for n in range(5):
        socket_ = await connect(ctx["ws_url"], ctx["attacker"]["admin"])
        for op in range(10):
            await socket_.send(json.dumps({"id": f"h{op}", "type": "subscribe",
                                           "payload": {"query": _heavy_subscription()}}))
        sockets.append(socket_)

    async def drain(socket_) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while await until(deadline):
                with contextlib.suppress(asyncio.TimeoutError):
                    frame = json.loads(await asyncio.wait_for(socket_.recv(), 0.5))
                    if frame.get("type") == "error":
                        tally.add(f"error {frame['payload'][0].get('extensions', {}).get('reason')}")
        tally.add(f"close {socket_.close_code}" if socket_.close_code else "still open")
    await asyncio.gather(_assign_loop(ctx, deadline, tally), *(drain(s) for s in sockets))


async def dead_partner(ctx: dict, deadline: float, tally: Tally) -> None:
    """Replies to a partner endpoint that accepts connections and never answers."""
    attacker = ctx["attacker"]
    async with httpx.AsyncClient(base_url=ctx["base"], timeout=30) as http:
        while await until(deadline):
            response = await http.post("/graphql", json={"query": SEND, "variables": {
                "c": attacker["dead_conversation"], "b": "are you there?"}},
                headers={"Authorization": f"Bearer {attacker['admin']}"})
            tally.answer(response)
            await asyncio.sleep(0.01)


ATTACKS = {"costly_query": costly_query, "search_flood": search_flood, "big_documents": big_documents,
           "huge_operation_id": huge_operation_id, "unread_backlog": unread_backlog, "socket_flood": socket_flood,
           "slow_clients": slow_clients, "heavy_subscriptions": heavy_subscriptions, "dead_partner": dead_partner}


# -- the run -------------------------------------------------------------------------------------

class BlackHole:
    """A TCP server on 127.0.0.1 that accepts and never answers (a dead partner endpoint)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(1024)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/callback"

    def close(self) -> None:
        self.socket.close()


async def prepare(base: str, victim_admin: str, attacker_admin: str, hole: BlackHole) -> tuple[dict, dict]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        victim = await company(http, victim_admin, "Victim partner")
        for n in range(200):  # a page of real conversations to load
            await inbound(http, victim["channel_token"], f"victim-{n}", f"hello {n}")
        victim["conversation"] = (await inbound(http, victim["channel_token"], "victim-contact",
                                                "first"))["conversation"]["id"]
        attacker = await company(http, attacker_admin, "Attacker partner")
        for n in range(120):  # the conversation of 120 messages the nested query walks
            conversation = (await inbound(http, attacker["channel_token"], "attacker-contact",
                                          f"message {n}"))["conversation"]["id"]
        attacker["conversation"] = conversation
        dead = await company(http, attacker_admin, "Dead partner", callback=hole.url)
        attacker["dead_conversation"] = (await inbound(http, dead["channel_token"], "dead-contact",
                                                       "hi"))["conversation"]["id"]
    return victim, attacker


# Where each process runs. The server gets a core of its own and the clients the other,
# as when they run on other machines: the attacker's client work (building 1 MB bodies,
# 200 sockets) must not be timed as the server's, and the victim's client must not wait
# behind the attacker's for a CPU. The attacker runs in a process of its own, niced, so
# that its event loop is not the one that times the victim.
SERVER_CPUS, CLIENT_CPUS = ({0}, {1}) if len(os.sched_getaffinity(0)) >= 2 else (None, None)


def _on(cpus: set[int] | None, nice: int = 0):
    def pin() -> None:
        clients.raise_nofile()
        if cpus:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.nice(nice)
    return pin


def measure(seconds: float, start_server, bootstrap_admin, profile_dir: str | None = None,
            attacks: list[str] | None = None) -> dict:
    """`start_server(preexec)` starts a fresh `inbox serve` (an object with base, ws_url,
    pid, rss(), stop()) calling `preexec` in its process; `bootstrap_admin(company)` makes a
    company on its database and returns its admin's token. With `profile_dir`, py-spy
    records the server during each phase (FILE per phase, raw, for bench/pyspy.py)."""
    hole = BlackHole()
    victim_admin, attacker_admin = bootstrap_admin("Victim"), bootstrap_admin("Attacker")
    server = start_server(_on(SERVER_CPUS))
    pinned_before = os.sched_getaffinity(0)
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)
    result: dict = {"seconds_per_phase": seconds, "phases": {},
                    "cpus": {"server": sorted(SERVER_CPUS or []), "clients": sorted(CLIENT_CPUS or [])}}
    try:
        victim, attacker = asyncio.run(prepare(server.base, victim_admin, attacker_admin, hole))
        ctx = {"base": server.base, "ws_url": server.ws_url, "attacker": attacker}
        for name in ("none", *(attacks or ATTACKS)):
            result["phases"][name] = _phase(name, ctx, victim, server, seconds, profile_dir)
            phase = result["phases"][name]
            print(f"  hostile {name}: page p99 {phase['page_p99_ms']} ms, delivery p99 "
                  f"{phase['delivery_p99_ms']} ms, RSS max {phase['rss_max_mb']} MB, "
                  f"server CPU {phase['server_cpu_cores']} cores, attacker got {phase['attacker']}", file=sys.stderr, flush=True)
            if server.process.poll() is not None:
                result["phases"][name]["server"] = "DIED"
                break
    finally:
        os.sched_setaffinity(0, pinned_before)
        server.stop()
        hole.close()
    return result


def _phase(name: str, ctx: dict, victim: dict, server, seconds: float, profile_dir: str | None) -> dict:
    """One phase: the attack (in its own process) and the victim (in this one) for
    `seconds`, the server's RSS sampled meanwhile."""
    attack = None
    if name in ATTACKS:
        attack = subprocess.Popen([sys.executable, __file__, "--attack", name, "--context", json.dumps(ctx),
                                   "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True,
                                  preexec_fn=_on(CLIENT_CPUS, nice=10))
    recorder = None
    if profile_dir and pyspy.available():
        os.makedirs(profile_dir, exist_ok=True)
        recorder = pyspy.Recorder(server.pid, pathlib.Path(profile_dir) / f"hostile-{name}.txt")
    cpu_before, started = clients.cpu_seconds(server.pid), time.monotonic()
    figures = asyncio.run(_victim_with_rss(ctx, victim, server, seconds))
    figures["server_cpu_cores"] = round((clients.cpu_seconds(server.pid) - cpu_before)
                                        / (time.monotonic() - started), 2)
    tally: dict = {}
    if attack:
        try:
            out, _ = attack.communicate(timeout=20)
            tally = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"attack printed nothing": 1}
        except subprocess.TimeoutExpired:
            attack.kill()
            attack.communicate()
            tally = {"attack still running at the end": 1}
    if recorder:
        figures["profile"] = pyspy.summarise(recorder.output, top=8) if recorder.stop() else {"samples": 0}
    figures["attacker"] = dict(sorted(tally.items(), key=lambda kv: -kv[1])[:6])
    return figures


async def _victim_with_rss(ctx: dict, victim: dict, server, seconds: float) -> dict:
    rss: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def sample() -> None:
        while loop.time() < deadline + 1:
            with contextlib.suppress(OSError):
                rss.append(server.rss())
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    figures = await victim_load(ctx["base"], ctx["ws_url"], victim, seconds)
    await sampler
    figures["rss_max_mb"] = round(max(rss, default=0) / 1024, 1)
    return figures


async def _attack(name: str, ctx: dict, seconds: float) -> dict:
    """The attacker's process: one attack for `seconds`, then what the server answered."""
    tally = Tally()
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        await asyncio.wait_for(ATTACKS[name](ctx, deadline, tally), seconds + 15)
    except asyncio.TimeoutError:
        tally.add("attack still running at the end")
    except Exception as error:  # an attack that the server cut short
        tally.add(f"attack ended: {type(error).__name__}")
    return tally.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server during each phase into DIR")
    parser.add_argument("--only", choices=ATTACKS, action="append", help="these attacks only (repeatable)")
    parser.add_argument("--attack", choices=ATTACKS, help=argparse.SUPPRESS)  # the attacker's process,
    parser.add_argument("--context", help=argparse.SUPPRESS)  # with the server and the attacker's company
    args = parser.parse_args()
    if args.attack:
        print(json.dumps(asyncio.run(_attack(args.attack, json.loads(args.context), args.seconds))), flush=True)
        return
    import run

    database = run.Database(None)
    env = run.inbox_env(database.fresh(), "memory://", **ENV)
    try:
        result = measure(args.seconds, lambda preexec: run.Server("inbox-hostile", [run.INBOX, "serve"], env,
                                                                  preexec=preexec),
                         lambda company: bootstrap(env, company), args.profile, args.only)
    finally:
        run.Database.remove_files()
    print(json.dumps(result, indent=1))


# The server as deployed, but for a partner endpoint on this machine (the dead partner).
ENV = {"INBOX_CALLBACK_ALLOW_PRIVATE": "true", "INBOX_SUBSCRIPTION_BUFFER": "1000",
       "INBOX_WS_MAX_SOCKETS_PER_USER": "50", "INBOX_WS_SETUPS_PER_SECOND_PER_USER": "100",
       "INBOX_HTTP_REQUESTS_PER_SECOND_PER_USER": "200"}


def bootstrap(env: dict, company: str) -> str:
    import os

    import ingest

    done = subprocess.run([ingest.INBOX, "bootstrap", "--company", company, "--admin-name",
                           f"{company} Admin", "--admin-email", f"admin@{company.lower()}.test"],
                          env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["token"]


if __name__ == "__main__":
    main()
