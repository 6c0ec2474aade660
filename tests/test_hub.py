"""The hub: fan-out, bounded buffers, no leaks, and Redis failure handling.

Runs against memory:// always and against Redis when INBOX_TEST_BROADCAST_URL is set."""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from prometheus_client import REGISTRY

from subscriptions.hub import BackendLost, Hub, Overflowed, SubscriptionEnded

REDIS_URL = os.environ.get("INBOX_TEST_BROADCAST_URL")
URLS = ["memory://"] + ([REDIS_URL] if REDIS_URL else [])
requires_redis = pytest.mark.skipif(not REDIS_URL, reason="INBOX_TEST_BROADCAST_URL is not set")

DEADLINE = 2.0


@pytest.fixture(params=URLS)
def url(request) -> str:
    return request.param


async def _hub_factory(url: str):
    hubs: list[Hub] = []

    async def make(buffer: int = 100) -> Hub:
        hub = Hub(url, buffer=buffer)
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.stop()


@pytest.fixture
async def make_hub(url):
    async for make in _hub_factory(url):
        yield make


@pytest.fixture
async def redis_hub():
    async for make in _hub_factory(REDIS_URL):
        yield await make()


@pytest.fixture
async def hub(make_hub) -> Hub:
    return await make_hub()


@pytest.fixture
def topic() -> str:
    return f"test.hub.{uuid.uuid4().hex}"


@pytest.fixture
async def redis_client():
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def get_shared(sub) -> dict:
    """The next payload as the hub hands it out (with its stamp)."""
    return await asyncio.wait_for(sub.get(), DEADLINE)


async def get(sub) -> dict:
    """The next payload as published, without the hub's own stamp."""
    payload = dict(await get_shared(sub))
    assert isinstance(payload.pop("_seq"), int)
    return payload


async def eventually(predicate, what: str) -> None:
    """For state that settles on its own (a task finishing, Redis processing a command)."""
    async def poll():
        while not await predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except asyncio.TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def pumps_finished(hub: Hub) -> None:
    if hub._pumps:
        await asyncio.wait_for(asyncio.wait(list(hub._pumps)), DEADLINE)


async def upstream_count(hub: Hub, topic: str) -> int:
    """Local broadcaster subscriptions of the topic (one per upstream subscription)."""
    return len(hub._broadcast._subscribers.get(topic, ()))


async def redis_numsub(client, topic: str) -> int:
    [(_, count)] = await client.pubsub_numsub(topic)
    return count


async def test_a_published_payload_reaches_every_local_subscriber_of_its_topic_only(hub, topic):
    other = topic + ".other"
    async with hub.subscribe(topic) as first, hub.subscribe(topic) as second, hub.subscribe(other) as elsewhere:
        assert await hub.publish(topic, {"n": 1}) is True
        assert await hub.publish(other, {"marker": True}) is True

        got_first, got_second = await get_shared(first), await get_shared(second)
        assert got_first == {"n": 1, "_seq": got_first["_seq"]}
        # Decoded once per process: every local subscriber gets the same object.
        assert got_first is got_second
        assert await get(elsewhere) == {"marker": True}


async def test_events_published_together_arrive_one_by_one_in_their_order(hub, topic):
    async with hub.subscribe(topic) as sub:
        assert await hub.publish(topic, [{"n": 1}, {"n": 2}, {"n": 3}]) is True
        await hub.publish(topic, {"n": 4})

        stamped = [await get_shared(sub) for _ in range(4)]
        assert [payload["n"] for payload in stamped] == [1, 2, 3, 4]
        # Each is stamped as an event of its own (direct delivery hands subscribers over by it).
        assert [payload["_seq"] for payload in stamped] == sorted({payload["_seq"] for payload in stamped})


async def test_an_event_published_right_after_entering_is_received(hub, topic):
    for n in range(5):
        async with hub.subscribe(f"{topic}.{n}") as sub:
            await hub.publish(f"{topic}.{n}", {"n": n})
            assert await get(sub) == {"n": n}


@requires_redis
async def test_an_event_published_by_another_process_right_after_entering_is_received(redis_hub, topic, redis_client):
    hub = redis_hub
    for n in range(5):
        async with hub.subscribe(f"{topic}.{n}") as sub:
            await redis_client.publish(f"{topic}.{n}", json.dumps({"n": n}))
            assert await get(sub) == {"n": n}


@requires_redis
async def test_entering_waits_until_redis_has_confirmed_the_subscription(redis_hub, topic, redis_client):
    hub = redis_hub
    pubsub = hub._broadcast._backend._pubsub
    real_subscribe = pubsub.subscribe

    async def subscribe_with_latency(*channels):
        # As if the SUBSCRIBE were still on the wire when the call returns.
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(real_subscribe(*channels)))

    pubsub.subscribe = subscribe_with_latency
    async with hub.subscribe(topic) as sub:
        assert await redis_numsub(redis_client, topic) == 1
        await redis_client.publish(topic, json.dumps({"n": 1}))
        assert await get(sub) == {"n": 1}


async def test_async_for_yields_payloads_in_order(hub, topic):
    async with hub.subscribe(topic) as sub:
        for n in range(3):
            await hub.publish(topic, {"n": n})

        async def read_three():
            seen = []
            async for payload in sub:
                seen.append(payload["n"])
                if len(seen) == 3:
                    return seen

        assert await asyncio.wait_for(read_three(), DEADLINE) == [0, 1, 2]


async def test_one_upstream_subscription_per_topic_however_many_local_subscribers(hub, topic, url):
    subs = [hub.subscribe(topic) for _ in range(5)]
    # Entered concurrently: they race to create the topic, still only one upstream.
    await asyncio.gather(*(sub.__aenter__() for sub in subs))
    try:
        assert await upstream_count(hub, topic) == 1
        assert len(hub._topics) == 1
        if url.startswith("redis"):
            from redis import asyncio as aioredis

            client = aioredis.Redis.from_url(url)
            try:
                assert await redis_numsub(client, topic) == 1
            finally:
                await client.aclose()
        await hub.publish(topic, {"n": 1})
        assert [await get(sub) for sub in subs] == [{"n": 1}] * 5
    finally:
        for sub in subs:
            await sub.__aexit__(None, None, None)


async def test_a_subscriber_that_never_reads_overflows_while_others_receive_everything(make_hub, topic):
    buffer = 5
    hub = await make_hub(buffer=buffer)
    async with hub.subscribe(topic) as stalled, hub.subscribe(topic) as reader:
        for n in range(buffer * 3):
            assert await hub.publish(topic, {"n": n}) is True
            assert await get(reader) == {"n": n}

        with pytest.raises(Overflowed):
            await stalled.get()
        # Out of the fan-out and its backlog freed, while the reader stays registered.
        assert stalled not in hub._topics[topic].subscribers
        assert len(stalled._items) == 0
        assert reader in hub._topics[topic].subscribers


async def test_an_overflowed_subscriber_raises_even_with_items_left(make_hub, topic):
    hub = await make_hub(buffer=2)
    async with hub.subscribe(topic) as stalled, hub.subscribe(topic) as reader:
        for n in range(3):
            await hub.publish(topic, {"n": n})
            await get(reader)
        with pytest.raises(Overflowed):
            await stalled.get()
        with pytest.raises(Overflowed):
            await stalled.get()


async def test_no_state_is_left_after_the_last_subscriber_leaves(make_hub, topic, url):
    hub = await make_hub(buffer=1)
    async with hub.subscribe(topic) as a, hub.subscribe(topic) as b, hub.subscribe(topic + ".2"):
        await hub.publish(topic, {"n": 1})
        await get(a)
        await hub.publish(topic, {"n": 2})
        await get(a)  # b overflows here
        with pytest.raises(Overflowed):
            await b.get()

    assert hub._topics == {}
    await pumps_finished(hub)
    assert hub._pumps == set()
    assert hub._draining == {}
    assert hub._broadcast._subscribers == {}
    if url.startswith("redis"):
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        try:
            await eventually(lambda: _no_subscribers(client, topic), "Redis to drop the subscription")
        finally:
            await client.aclose()


async def _no_subscribers(client, topic: str) -> bool:
    return await redis_numsub(client, topic) == 0 and await redis_numsub(client, topic + ".2") == 0


async def test_leaving_while_the_upstream_subscription_is_being_made_leaves_no_state(hub, topic):
    entering = asyncio.ensure_future(hub.subscribe(topic).__aenter__())
    await asyncio.sleep(0)  # let it register and start the pump
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    assert hub._topics == {}
    await pumps_finished(hub)
    assert hub._broadcast._subscribers == {}

    # The topic works again afterwards.
    async with hub.subscribe(topic) as sub:
        await hub.publish(topic, {"n": 1})
        assert await get(sub) == {"n": 1}


async def test_resubscribing_while_the_previous_upstream_subscription_is_still_being_made(hub, topic):
    broadcast = hub._broadcast
    entering = asyncio.ensure_future(hub.subscribe(topic).__aenter__())
    await asyncio.sleep(0)
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    assert hub._topics == {}
    async with hub.subscribe(topic) as sub:
        await hub.publish(topic, {"n": 1})
        assert await get(sub) == {"n": 1}
        assert await upstream_count(hub, topic) == 1
    assert hub._broadcast is broadcast and hub.healthy


async def test_resubscribing_right_after_the_last_subscriber_left_still_receives(hub, topic):
    for n in range(10):
        async with hub.subscribe(topic) as sub:
            await hub.publish(topic, {"n": n})
            assert await get(sub) == {"n": n}
    assert await upstream_count(hub, topic) <= 1


async def test_a_failed_publish_ends_the_topic_subscribers_and_the_hub_reconnects(hub, topic, monkeypatch):
    async with hub.subscribe(topic) as sub:
        broken = hub._broadcast

        async def fail(channel, message):
            raise ConnectionError("boom")

        monkeypatch.setattr(broken, "publish", fail)
        assert await hub.publish(topic, {"n": 1}) is False
        assert hub.healthy is False
        with pytest.raises(BackendLost):
            await get(sub)

    await eventually(lambda: _is_healthy(hub), "the hub to reconnect")
    assert hub._broadcast is not broken
    async with hub.subscribe(topic) as sub:
        assert await hub.publish(topic, {"n": 2}) is True
        assert await get(sub) == {"n": 2}


async def _is_healthy(hub: Hub) -> bool:
    return hub.healthy


async def test_stop_ends_subscribers_and_is_idempotent(make_hub, topic):
    hub = await make_hub()
    async with hub.subscribe(topic) as sub:
        await hub.stop()
        with pytest.raises(BackendLost):
            await get(sub)
    await hub.stop()
    assert hub.healthy is False
    assert await hub.publish(topic, {"n": 1}) is False
    with pytest.raises(BackendLost):
        async with hub.subscribe(topic):
            pass


async def test_get_outside_the_context_raises(hub, topic):
    sub = hub.subscribe(topic)
    with pytest.raises(SubscriptionEnded):
        await sub.get()
    async with sub:
        pass
    with pytest.raises(SubscriptionEnded):
        await sub.get()


async def test_ping_is_true_on_a_live_backend(hub):
    assert hub.healthy is True
    assert await hub.ping() is True


async def test_an_unreachable_redis_does_not_fail_start_and_reports_unhealthy(topic):
    hub = Hub("redis://127.0.0.1:1/0")
    try:
        await asyncio.wait_for(hub.start(), DEADLINE)
        assert hub.healthy is False
        assert await asyncio.wait_for(hub.ping(), DEADLINE) is False
        assert await asyncio.wait_for(hub.publish(topic, {"n": 1}), DEADLINE) is False
        with pytest.raises(BackendLost):
            async with hub.subscribe(topic):
                pass
    finally:
        await asyncio.wait_for(hub.stop(), DEADLINE)


@requires_redis
async def test_a_killed_redis_connection_ends_subscribers_and_the_hub_reconnects(redis_hub, topic, redis_client):
    hub = redis_hub
    async with hub.subscribe(topic) as a, hub.subscribe(topic + ".b") as b:
        await hub.publish(topic, {"n": 0})
        assert await get(a) == {"n": 0}

        await kill_pubsub_connection(hub, redis_client)

        with pytest.raises(BackendLost):
            await get(a)
        with pytest.raises(BackendLost):
            await get(b)
        assert hub.healthy is False
        assert isinstance(await hub.publish(topic, {"n": 1}), bool)

    await eventually(lambda: _is_healthy(hub), "the hub to reconnect")
    assert await hub.ping() is True
    async with hub.subscribe(topic) as sub:
        assert await hub.publish(topic, {"n": 2}) is True
        assert await get(sub) == {"n": 2}


async def kill_pubsub_connection(hub: Hub, redis_client) -> None:
    """CLIENT KILL TYPE pubsub, narrowed to this hub's connection so that other test
    runs sharing the Redis server are not disturbed. Redis closes the socket exactly as
    a restart would."""
    host, port = hub._broadcast._backend._pubsub.connection._writer.get_extra_info("sockname")[:2]
    killed = await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ADDR", f"{host}:{port}")
    assert killed == 1


@requires_redis
async def test_deployments_with_other_namespaces_on_one_redis_never_hear_each_other(topic):
    staging, production = Hub(REDIS_URL, namespace="staging"), Hub(REDIS_URL, namespace="production")
    await staging.start()
    await production.start()
    try:
        async with staging.subscribe(topic) as heard_by_staging, production.subscribe(topic) as heard_by_prod:
            assert await production.publish(topic, {"n": "production"})
            assert await staging.publish(topic, {"n": "staging"})
            assert await get(heard_by_staging) == {"n": "staging"}
            assert await get(heard_by_prod) == {"n": "production"}
    finally:
        await staging.stop()
        await production.stop()


async def test_a_subscriber_buffers_only_what_its_filter_accepts(make_hub, topic):
    hub = await make_hub(buffer=3)
    async with hub.subscribe(topic, accept=lambda payload: payload["n"] % 10 == 0) as picky:
        for n in range(25):  # 22 events it does not want, far more than its buffer of 3
            assert await hub.publish(topic, {"n": n})
        assert [await get(picky) for _ in range(3)] == [{"n": 0}, {"n": 10}, {"n": 20}]


async def test_a_filter_that_raises_drops_the_event_for_that_subscriber_only(make_hub, topic):
    hub = await make_hub()

    def picky(payload):
        return 1 / payload["n"]  # raises on n == 0

    async with hub.subscribe(topic, accept=picky) as failing, hub.subscribe(topic) as other:
        assert await hub.publish(topic, {"n": 0})
        assert await hub.publish(topic, {"n": 1})
        # Fails closed: the subscriber whose filter raised never sees the event, and stays.
        assert await get(failing) == {"n": 1}
        assert [await get(other), await get(other)] == [{"n": 0}, {"n": 1}]


def gaps_counted() -> float:
    return REGISTRY.get_sample_value("inbox_broadcast_gaps_total") or 0.0


def reconnects_counted() -> float:
    return REGISTRY.get_sample_value("inbox_broadcast_reconnects_total") or 0.0


@pytest.fixture
def failing_publish(monkeypatch):
    """Makes the hub's current backend fail its publishes (the first one marks it lost)
    and every reconnect fail until `recover()`."""
    class Failing:
        def __init__(self) -> None:
            self.hub: Hub | None = None

        def start(self, hub: Hub) -> None:
            self.hub = hub

            async def fail(channel, message):
                raise ConnectionError("boom")

            async def unreachable():
                raise ConnectionError("still down")

            monkeypatch.setattr(hub._broadcast, "publish", fail)
            monkeypatch.setattr(hub, "_connect", unreachable)

        def recover(self) -> None:
            monkeypatch.delattr(self.hub, "_connect")

    return Failing()


@pytest.fixture
def announced_gaps(monkeypatch) -> list[str]:
    """The channels any hub publishes a gap marker to from now on, on any backend."""
    from broadcaster import Broadcast

    seen: list[str] = []
    real = Broadcast.publish

    async def recording(self, channel, message):
        if json.loads(message).get("_hub_gap"):
            seen.append(channel)
        return await real(self, channel, message)

    monkeypatch.setattr(Broadcast, "publish", recording)
    return seen


async def test_every_publish_while_the_backend_is_lost_records_a_gap(hub, topic, failing_publish, announced_gaps):
    seen = announced_gaps
    failing_publish.start(hub)
    before, reconnects = gaps_counted(), reconnects_counted()

    assert await hub.publish(topic, {"n": 1}) is False  # the failure that marks it lost
    assert hub.healthy is False
    # Marked lost: each of these is dropped, and each records a gap, not only the first.
    for other in (f"{topic}.b", f"{topic}.c", f"{topic}.b"):
        assert await hub.publish(other, {"n": 2}) is False
    assert gaps_counted() - before == 4
    assert hub._gaps == {topic, f"{topic}.b", f"{topic}.c"}

    failing_publish.recover()
    await eventually(lambda: _is_healthy(hub), "the hub to reconnect")
    # Announced to every process once the backend is back (other processes' subscribers of
    # those topics end and resume with `after`), and counted as a reconnect.
    assert sorted(seen) == sorted([topic, f"{topic}.b", f"{topic}.c"])
    assert hub._gaps == set()
    assert reconnects_counted() - reconnects == 1


async def test_a_publish_after_stop_records_a_gap(make_hub, topic):
    hub = await make_hub()
    before = gaps_counted()
    await hub.stop()
    assert await hub.publish(topic, {"n": 1}) is False
    assert gaps_counted() - before == 1
    assert hub._gaps == {topic}


async def test_stop_announces_the_gaps_not_yet_announced(make_hub, topic, failing_publish, announced_gaps):
    seen = announced_gaps
    hub = await make_hub()
    failing_publish.start(hub)
    assert await hub.publish(topic, {"n": 1}) is False
    assert await hub.publish(f"{topic}.b", {"n": 2}) is False

    # Still lost when the process stops: one last connection announces them.
    await hub.stop()
    assert sorted(seen) == sorted([topic, f"{topic}.b"])
    assert hub._gaps == set()


@pytest.fixture
async def make_redis_hub():
    async for make in _hub_factory(REDIS_URL):
        yield make


@requires_redis
async def test_subscribers_on_another_process_end_for_publishes_dropped_while_lost(make_redis_hub, topic,
                                                                                  failing_publish):
    publisher, elsewhere = await make_redis_hub(), await make_redis_hub()
    async with elsewhere.subscribe(topic) as sub:
        failing_publish.start(publisher)
        assert await publisher.publish(f"{topic}.other", {"n": 0}) is False  # marks it lost
        # Dropped while lost: the other process's own connection is up and hears nothing.
        assert await publisher.publish(topic, {"n": 1}) is False
        failing_publish.recover()
        with pytest.raises(BackendLost):
            await asyncio.wait_for(sub.get(), DEADLINE * 3)


async def test_a_burst_larger_than_the_buffer_reaches_a_reader_that_keeps_up(make_hub, topic):
    # A burst that piled up upstream while the process was busy (a saturated CPU): the
    # fan-out gives the readers a turn between its events, so only a reader that really
    # falls behind overflows.
    hub = await make_hub(buffer=5)
    async with hub.subscribe(topic) as reader:
        async def read_all() -> list[int]:
            return [(await reader.get())["n"] for _ in range(50)]

        reading = asyncio.ensure_future(read_all())
        await asyncio.sleep(0)  # the reader waits for its first event
        for n in range(50):
            assert await hub.publish(topic, {"n": n})
        assert await asyncio.wait_for(reading, DEADLINE) == list(range(50))
