"""Issue 11, websockets: the bounds on what one client or user may hold through
/graphql's sockets (message size, operation ids, operations per socket, sockets per
user, the time to connection_init, the set-up slots) and on a slow HTTP body, each
driven as an attacker would, on both protocols where the rule applies."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json

import httpx
import pytest
import uvicorn
import websockets
from prometheus_client import REGISTRY
from websockets.exceptions import ConnectionClosed

from conftest import DEADLINE, Company, company_pk, eventually, make_settings, subscriptions_live

TRANSPORT, LEGACY = "graphql-transport-ws", "graphql-ws"
PROTOCOLS = pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
MAX_MESSAGE = 262144
MIB = 1024 * 1024

CONVERSATION_CHANGED = "subscription($c: ID) { conversationChanged(conversationId: $c) { kind conversationId } }"
MESSAGE_ADDED = "subscription($c: ID, $after: String) { messageAdded(conversationId: $c, after: $after) { id body } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id status } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
STATUS = "query($c: ID!) { conversation(id: $c) { status } }"


# -- helpers ------------------------------------------------------------------------------


async def connected(url: str, token: str, protocol: str):
    """A websocket past its connection_init's ack."""
    socket = await websockets.connect(url, subprotocols=[protocol], max_size=None)
    await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    reply = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
    assert reply["type"] == "connection_ack", reply
    return socket


def start(protocol: str, op_id: str, query: str, variables: dict | None = None) -> str:
    """The message that starts an operation, in the protocol's words."""
    return json.dumps({"id": op_id, "type": "subscribe" if protocol == TRANSPORT else "start",
                       "payload": {"query": query, "variables": variables or {}}})


def stop(protocol: str, op_id: str) -> str:
    return json.dumps({"id": op_id, "type": "complete" if protocol == TRANSPORT else "stop"})


def padded(message: str, size: int) -> str:
    """The start message with its query padded with blanks to exactly `size` bytes."""
    decoded = json.loads(message)
    decoded["payload"]["query"] += " " * (size - len(message.encode()))
    result = json.dumps(decoded)
    assert len(result.encode()) == size
    return result


async def reply(socket) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))


async def close_code(socket) -> int:
    """Reads until the server closes the socket; the code of its close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), DEADLINE)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def still_open(socket) -> None:
    """The socket answers a ping: the server kept it open."""
    await asyncio.wait_for(await socket.ping(), DEADLINE)


def refusals(bound: str) -> float:
    return REGISTRY.get_sample_value("inbox_refusals_total", {"bound": bound}) or 0.0


def closes(code: int) -> float:
    return REGISTRY.get_sample_value("inbox_websocket_closes_total", {"code": str(code)}) or 0.0


async def status(company: Company, conversation_id: str) -> str:
    return (await company.admin.data(STATUS, {"c": conversation_id}))["conversation"]["status"]


def rss_bytes() -> int:
    with open("/proc/self/status") as status_file:
        for line in status_file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
async def tight(app_with):
    """A second app on the session server's database and hub, with small bounds."""
    return await app_with(ws_connection_init_timeout=0.5, body_timeout_seconds=0.5, header_timeout_seconds=0.5)


# -- message size -------------------------------------------------------------------------


@PROTOCOLS
async def test_a_message_over_the_size_bound_closes_the_socket_with_1009_and_runs_nothing(company, server,
                                                                                        protocol):
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    socket = await connected(server.ws_url, company.admin.token, protocol)
    before = refusals("ws_message_bytes")
    await socket.send(padded(start(protocol, "1", CLOSE, {"c": conversation_id}), MAX_MESSAGE + 1))
    assert await close_code(socket) == 1009
    assert await status(company, conversation_id) == "OPEN"
    await eventually(lambda: asyncio.sleep(0, refusals("ws_message_bytes")), lambda n: n == before + 1)


async def test_a_message_of_exactly_the_size_bound_is_read(company, server):
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    socket = await connected(server.ws_url, company.admin.token, TRANSPORT)
    await socket.send(padded(start(TRANSPORT, "1", CLOSE, {"c": conversation_id}), MAX_MESSAGE))
    answer = await reply(socket)
    assert answer["type"] == "next", answer
    assert answer["payload"]["data"]["closeConversation"]["status"] == "CLOSED"
    await socket.close()


async def test_a_five_mb_operation_id_closes_with_1009_and_memory_stays_flat(company, server):
    # The attack of issue 11: a subscription whose id is 5 MB, on a socket that stops
    # reading, then 120 assignments by the same user (it took the server 198 → 789 MB).
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    gc.collect()
    before = rss_bytes()
    socket = await connected(server.ws_url, company.admin.token, TRANSPORT)
    # The server refuses the frame from its header and hangs up while the rest is still
    # on its way (sent uncompressed: the server declines permessage-deflate).
    with contextlib.suppress(ConnectionClosed):
        await socket.send(start(TRANSPORT, "x" * (5 * MIB), CONVERSATION_CHANGED, {"c": conversation_id}))
    for turn in range(120):
        await company.admin.data(ASSIGN, {"c": conversation_id, "u": company.ids["ann" if turn % 2 else "admin"]})
    assert await close_code(socket) == 1009
    gc.collect()
    # The client's own 5 MB message lives in this process too.
    assert rss_bytes() - before < 40 * MIB, (rss_bytes() - before) / MIB


# -- operation ids ------------------------------------------------------------------------


@PROTOCOLS
async def test_an_operation_id_over_128_characters_closes_the_socket_with_4400(company, server, protocol):
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    socket = await connected(server.ws_url, company.admin.token, protocol)
    before = refusals("ws_operation_id"), closes(4400)
    await socket.send(start(protocol, "x" * 129, CLOSE, {"c": conversation_id}))
    assert await close_code(socket) == 4400
    assert await status(company, conversation_id) == "OPEN"
    assert (refusals("ws_operation_id"), closes(4400)) == (before[0] + 1, before[1] + 1)


@PROTOCOLS
async def test_an_operation_id_of_128_characters_runs(company, server, protocol):
    first = await company.inbound("one")
    second = await company.inbound("two")
    socket = await connected(server.ws_url, company.admin.token, protocol)
    op_id = "x" * 128
    await socket.send(start(protocol, op_id, MESSAGE_ADDED, {"after": first["cursor"]}))
    answer = await reply(socket)
    assert answer["id"] == op_id and answer["payload"]["data"]["messageAdded"]["id"] == second["id"], answer
    await socket.close()


# -- operations per socket ----------------------------------------------------------------


@PROTOCOLS
async def test_an_operation_past_the_bound_on_one_socket_is_rate_limited_and_the_socket_stays_open(
        company, server, protocol):
    busy = (await company.inbound("busy", contact="busy"))["conversation"]["id"]
    first = await company.inbound("one", contact="replayed")
    second = await company.inbound("two", contact="replayed")
    socket = await connected(server.ws_url, company.admin.token, protocol)
    for n in range(1, 101):
        await socket.send(start(protocol, str(n), CONVERSATION_CHANGED, {"c": busy}))
    before = refusals("ws_subscriptions_per_socket")
    # the 101st: a replay that would answer at once, had it run
    await socket.send(start(protocol, "101", MESSAGE_ADDED, {"after": first["cursor"]}))
    refused = await reply(socket)
    assert refused["type"] == "error" and refused["id"] == "101", refused
    errors = refused["payload"] if protocol == TRANSPORT else [refused["payload"]]
    assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
    assert refusals("ws_subscriptions_per_socket") == before + 1
    # the socket stays open: one operation less, and a new one runs
    await socket.send(stop(protocol, "1"))
    await socket.send(start(protocol, "102", MESSAGE_ADDED, {"after": first["cursor"]}))
    answer = await reply(socket)
    if protocol == LEGACY:  # it confirms the stop
        assert answer == {"type": "complete", "id": "1"}, answer
        answer = await reply(socket)
    assert answer["id"] == "102" and answer["payload"]["data"]["messageAdded"]["id"] == second["id"], answer
    await socket.close()


# -- sockets per user ---------------------------------------------------------------------


@PROTOCOLS
async def test_a_users_socket_past_the_bound_is_closed_with_4429(company, server, protocol):
    sockets = [await connected(server.ws_url, company.ann.token, TRANSPORT) for _ in range(50)]
    try:
        before = refusals("ws_sockets_per_user")
        async with websockets.connect(server.ws_url, subprotocols=[protocol]) as newest:
            await newest.send(json.dumps({"type": "connection_init",
                                          "payload": {"authorization": f"Bearer {company.ann.token}"}}))
            assert await close_code(newest) == 4429
        assert refusals("ws_sockets_per_user") == before + 1
        # the older ones stay open, and another user connects
        await still_open(sockets[0])
        await (await connected(server.ws_url, company.bob.token, protocol)).close()
        # one closed: the user may open one again
        await sockets.pop().close()

        async def reconnect():
            try:
                return await connected(server.ws_url, company.ann.token, protocol)
            except (AssertionError, ConnectionClosed):
                return None

        sockets.append(await eventually(reconnect, lambda socket: socket is not None))
    finally:
        for socket in sockets:
            await socket.close()


# -- connection_init ----------------------------------------------------------------------


@PROTOCOLS
async def test_a_socket_without_connection_init_in_time_is_closed_with_4408(tight, protocol):
    before = refusals("ws_connection_init_timeout"), closes(4408)
    async with websockets.connect(tight.ws_url, subprotocols=[protocol]) as socket:
        assert await close_code(socket) == 4408
    assert (refusals("ws_connection_init_timeout"), closes(4408)) == (before[0] + 1, before[1] + 1)


@PROTOCOLS
async def test_a_socket_that_sent_connection_init_in_time_stays_open(company, tight, protocol):
    socket = await connected(tight.ws_url, company.admin.token, protocol)
    with pytest.raises(asyncio.TimeoutError):  # twice the deadline, and nothing closes it
        await asyncio.wait_for(socket.recv(), 2 * tight.settings.ws_connection_init_timeout)
    await still_open(socket)
    await socket.close()


def test_the_connection_init_deadline_is_ten_seconds_by_default():
    assert make_settings().ws_connection_init_timeout == 10


# -- sockets not yet through connection_init, per process -----------------------------------


@pytest.fixture
async def few_pending(app_with):
    """A second app that lets 3 sockets at once wait for their connection_init."""
    return await app_with(ws_max_pending_sockets=3)


async def waiting(url: str, protocol: str):
    """A socket that sent nothing yet (no connection_init), still open."""
    socket = await websockets.connect(url, subprotocols=[protocol])
    await still_open(socket)
    return socket


@PROTOCOLS
async def test_sockets_over_the_pending_bound_close_at_once_with_1013_until_one_initialises(
        company, few_pending, protocol):
    url = few_pending.ws_url
    before = refusals("ws_pending_sockets"), closes(1013)
    held = [await waiting(url, protocol) for _ in range(3)]
    try:
        async with websockets.connect(url, subprotocols=[protocol]) as refused:
            assert refused.subprotocol == protocol  # its client reads the close code
            assert await close_code(refused) == 1013
        assert (refusals("ws_pending_sockets"), closes(1013)) == (before[0] + 1, before[1] + 1)
        for socket in held:  # the three waiting sockets are untouched
            await still_open(socket)

        # One of them completes connection_init: its place is free for a new socket.
        await held[0].send(json.dumps({"type": "connection_init",
                                       "payload": {"authorization": f"Bearer {company.admin.token}"}}))
        assert (await reply(held[0]))["type"] == "connection_ack"
        held.append(await waiting(url, protocol))

        # One that leaves without connection_init frees its place too.
        await held[1].close()
        await eventually(pending_count(few_pending), lambda count: count == 2)
        held.append(await waiting(url, protocol))
        async with websockets.connect(url, subprotocols=[protocol]) as refused:
            assert await close_code(refused) == 1013
        await still_open(held[0])  # the authenticated one, throughout
    finally:
        for socket in held:
            await socket.close()
    await eventually(pending_count(few_pending), lambda count: count == 0)


def pending_count(running):
    """A probe of the app's count of sockets not yet through connection_init."""
    async def probe() -> int:
        return running.server.config.app.app.state.pending_sockets.count
    return probe


@PROTOCOLS
async def test_a_refused_token_frees_the_pending_place(few_pending, protocol):
    async with websockets.connect(few_pending.ws_url, subprotocols=[protocol]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer nope"}}))
        assert await close_code(socket) == 4403
    await eventually(pending_count(few_pending), lambda count: count == 0)


def test_pending_sockets_are_bounded_at_1000_per_process_by_default():
    assert make_settings().ws_max_pending_sockets == 1000


# -- set-up slots -------------------------------------------------------------------------


async def test_one_users_slow_set_ups_do_not_hold_another_users_subscription(company, other_company, server,
                                                                             monkeypatch):
    from resolvers import subscriptions as streams
    from subscriptions import direct

    # Given one user whose subscriptions' set-up is slow (each waits on its horizon)
    slow_company = await company_pk(company)
    gate = asyncio.Event()
    waiting = []
    horizon = streams.committed_horizon

    async def slow_horizon(company_id: int) -> int:
        if company_id == slow_company:
            waiting.append(company_id)
            await gate.wait()
        return await horizon(company_id)

    monkeypatch.setattr(streams, "committed_horizon", slow_horizon)
    hog = await connected(server.ws_url, company.admin.token, TRANSPORT)
    other = await connected(server.ws_url, other_company.admin.token, LEGACY)
    try:
        # with more set-ups under way than the process has slots
        held_back = refusals("ws_setup_slots")
        for n in range(direct.SETTING_UP + 4):
            await hog.send(start(TRANSPORT, str(n), MESSAGE_ADDED))
        share = server.settings.ws_setup_slots_per_user
        await eventually(lambda: asyncio.sleep(0, len(waiting)), lambda n: n >= share)
        await eventually(lambda: asyncio.sleep(0, refusals("ws_setup_slots") - held_back),
                         lambda n: n == direct.SETTING_UP + 4 - share)
        # when another user subscribes, then its subscription is set up and delivers
        await other.send(start(LEGACY, "1", MESSAGE_ADDED))
        await subscriptions_live(other_company)
        pushed = await other_company.inbound("for the other user")
        data = await reply(other)
        assert data["payload"]["data"]["messageAdded"]["id"] == pushed["id"], data
        # and the slow user held no more than its share
        assert len(waiting) == share
    finally:
        gate.set()
    # and once its set-ups go through, every one of them is live
    await subscriptions_live(company, direct.SETTING_UP + 4)
    await hog.close()
    await other.close()


@pytest.fixture
async def paced(app_with):
    """10 set-ups a second per user."""
    return await app_with(ws_setups_per_second_per_user=10)


async def test_one_users_set_ups_keep_to_their_pace_and_another_users_go_through_at_once(
        company, other_company, paced):
    # Given one user starting 40 subscriptions at once, at 10 a second after a burst of 20
    hog = await connected(paced.ws_url, company.admin.token, TRANSPORT)
    other = await connected(paced.ws_url, other_company.admin.token, TRANSPORT)
    paced_before = refusals("ws_setup_rate")
    try:
        started = asyncio.get_running_loop().time()
        for n in range(40):
            await hog.send(start(TRANSPORT, str(n), MESSAGE_ADDED))
        await subscriptions_live(company, 20)
        # another user's subscription is live at once, while the first one's wait their turn
        await other.send(start(TRANSPORT, "mine", MESSAGE_ADDED))
        await subscriptions_live(other_company, 1)
        assert asyncio.get_running_loop().time() - started < 1.5
        assert refusals("ws_setup_rate") - paced_before == 20
        # and every one of the 40 is live in the end, none refused
        await subscriptions_live(company, 40)
        assert asyncio.get_running_loop().time() - started >= 1.8
        message = await company.inbound("to all 40")
        received = [json.loads(await asyncio.wait_for(hog.recv(), DEADLINE)) for _ in range(40)]
        assert {frame["id"] for frame in received} == {str(n) for n in range(40)}
        assert {frame["payload"]["data"]["messageAdded"]["id"] for frame in received} == {message["id"]}
    finally:
        await hog.close()
        await other.close()


# -- one user's pace of HTTP requests ----------------------------------------------------


@pytest.fixture
async def paced_http(app_with):
    """10 requests a second per user."""
    return await app_with(http_requests_per_second_per_user=10)


async def test_one_users_flood_of_requests_keeps_to_its_pace_and_another_users_go_through_at_once(
        company, other_company, paced_http):
    before = refusals("http_rate")
    async with httpx.AsyncClient(base_url=paced_http.url, timeout=DEADLINE) as http:
        async def me(token: str) -> float:
            started = asyncio.get_running_loop().time()
            answer = await http.post("/graphql", json={"query": "{ me { id } }"},
                                     headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200 and answer.json()["data"]["me"]["id"], answer.text
            return asyncio.get_running_loop().time() - started

        # Given one user's 30 requests at once (a burst of 20, then 10 a second)
        flood = [asyncio.create_task(me(company.admin.token)) for _ in range(30)]
        await asyncio.sleep(0.2)
        # another user's request goes through at once
        assert await me(other_company.admin.token) < 0.5
        took = await asyncio.gather(*flood)
    # every one of the flood is answered, none refused, the last ten in their turn
    assert max(took) >= 0.9
    assert refusals("http_rate") - before == 10


def test_a_requests_share_of_its_pace_grows_with_its_body():
    from server.http import _cost

    assert _cost(b"100") == 1
    assert _cost(str(1024 * 1024).encode()) == 17
    assert _cost(str(1024 * 1024)) == 17
    assert _cost(None) == 1
    assert _cost(b"-5") == 1


# -- slow HTTP bodies ---------------------------------------------------------------------


async def test_a_body_that_trickles_in_is_answered_408_and_runs_nothing(company, tight):
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    body = json.dumps({"query": CLOSE, "variables": {"c": conversation_id}}).encode()
    before = refusals("http_body_seconds")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(tight.url.rsplit(":", 1)[1]))
    try:
        writer.write(f"POST /graphql HTTP/1.1\r\nHost: inbox.test\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {company.admin.token}\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[:10])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), DEADLINE)
        assert status_line.split()[1] == b"408", status_line
        assert await asyncio.wait_for(reader.read(), DEADLINE)  # the answer, then the server hangs up
    finally:
        writer.close()
    assert await status(company, conversation_id) == "OPEN"
    assert refusals("http_body_seconds") == before + 1


async def test_a_request_head_that_trickles_in_is_answered_408_and_the_connection_closes(company, tight):
    """uvicorn's keep-alive timer stops at a request's first byte and it has no deadline
    for the rest of the head: ours closes a head sent a byte at a time."""
    conversation_id = (await company.inbound("hello"))["conversation"]["id"]
    before = refusals("http_head_seconds")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(tight.url.rsplit(":", 1)[1]))
    head = (f"POST /graphql HTTP/1.1\r\nHost: inbox.test\r\nAuthorization: Bearer {company.admin.token}\r\n"
            "X-Slow: " + "a" * 100).encode()
    try:
        answer = b""
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.05)
            if answer or reader.at_eof():
                break
        answer += await asyncio.wait_for(reader.read(), DEADLINE)  # the rest, then the server hangs up
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Request Timeout", answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert reader.at_eof()
    finally:
        writer.close()
    assert await status(company, conversation_id) == "OPEN"
    assert refusals("http_head_seconds") == before + 1


def test_the_http_protocol_with_its_head_deadline_pickles_for_worker_processes():
    """`inbox serve --workers N` pickles uvicorn's config, protocol included, to each worker."""
    import pickle

    from server.serving import uvicorn_options

    protocol = uvicorn_options(make_settings(header_timeout_seconds=3.5))["http"]
    copied = pickle.loads(pickle.dumps(protocol))
    assert copied.keywords == {"head_seconds": 3.5} and copied.func is protocol.func


async def test_a_request_head_in_time_is_served_on_a_kept_alive_connection(company, tight):
    async with httpx.AsyncClient(base_url=tight.url) as http:
        for _ in range(2):
            answer = await http.post("/graphql", json={"query": "{ me { id } }"},
                                     headers={"Authorization": f"Bearer {company.admin.token}"})
            assert answer.status_code == 200 and answer.json()["data"]["me"]["id"]
            await asyncio.sleep(0.3)  # idle between requests, within the keep-alive timeout


# -- one uvicorn configuration ------------------------------------------------------------


def test_serve_workers_demo_and_the_tests_give_uvicorn_the_same_bounds(monkeypatch, tmp_path, server):
    from server import cli, demo
    from server.serving import uvicorn_options

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    monkeypatch.setattr(cli.asyncio, "run", lambda coroutine: coroutine.close())
    settings = make_settings(database_url=f"sqlite://{tmp_path}/bounds.sqlite3", ws_max_message_bytes=12345)
    cli.serve(settings, "127.0.0.1", 1)
    cli.serve(dataclasses.replace(settings, database_url="postgres://nobody@127.0.0.1:1/none"), "127.0.0.1", 1,
              workers=2)
    demo.run_demo(settings, "127.0.0.1", 1)
    assert len(started) == 3
    for options in started:
        assert {key: options[key] for key in uvicorn_options(settings)} == uvicorn_options(settings)
        assert options["ws_max_size"] == 12345
    assert server.server.config.ws_max_size == server.settings.ws_max_message_bytes == MAX_MESSAGE
