"""The process's connection to the broadcast backend: one upstream subscription per
topic, fanned out to bounded local subscribers, with failure detection and reconnects."""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlparse

from broadcaster import Broadcast, Event

from borrowed.broadcaster import BroadcastBackend, backend, listener
from server import metrics

log = logging.getLogger(__name__)

# Close code of a subscriber that fell too far behind: "try again later" (SPEC §6).
TRY_AGAIN_LATER = 1013

_CONNECT_TIMEOUT = 1.0
_PING_TIMEOUT = 1.0
_SUBSCRIBE_TIMEOUT = 2.0
_PUBLISH_TIMEOUT = 2.0
_CLOSE_TIMEOUT = 2.0
_BACKOFF_INITIAL = 0.1
_BACKOFF_MAX = 5.0
_REDIS_SCHEMES = ("redis", "rediss")
# A hub's own message on a topic: "events published here may be missing".
_GAP = "_hub_gap"


class SubscriptionEnded(Exception):
    """The local subscription is over; the client resumes with `after`."""


class Overflowed(SubscriptionEnded):
    """This local subscriber fell more than `buffer` events behind."""


class BackendLost(SubscriptionEnded):
    """The upstream listener died or the backend is unreachable: events may have been missed."""


def _redis_client(url: str, **options: Any):
    from redis import asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # No retriable errors: redis-py's retry handler would otherwise reconnect (and for
    # pub/sub resubscribe) before re-raising. Failures surface at once and the hub
    # reconnects itself, ending the subscriptions that may have missed something.
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0, supported_errors=()),
        **options,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _RedisBackend(BroadcastBackend):
    """broadcaster's RedisBackend, reworked where 0.3.1 falls short for us: its client has
    no connect timeout; its listener drops SUBSCRIBE confirmations, so subscribe() returns
    before Redis has registered the channel; and it stops reading whenever no channel is
    left, behind a ready flag that a concurrent subscribe can race."""

    def __init__(self, url: str) -> None:
        self._conn = _redis_client(url)
        self._pubsub = self._conn.pubsub()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self.listener: asyncio.Task[None] | None = None  # read by the hub (_listeners)
        self.closed = False

    async def connect(self) -> None:
        await self._pubsub.connect()
        self.listener = asyncio.create_task(self._pubsub_listener(), name="hub-redis-listener")

    async def disconnect(self) -> None:
        self.closed = True
        if self.listener is not None:
            self.listener.cancel()
        for waiters in self._confirmations.values():
            for waiter in waiters:
                waiter.cancel()
        self._confirmations.clear()
        await self._pubsub.aclose()
        await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        if self.closed:
            raise ConnectionError("backend closed")
        waiter = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, deque()).append(waiter)
        try:
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT):
                await self._pubsub.subscribe(channel)
                # Returning only once Redis confirmed guarantees every later PUBLISH reaches us.
                await waiter
        finally:
            waiters = self._confirmations.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._confirmations[channel]

    async def unsubscribe(self, channel: str) -> None:
        # A dropped backend must not reconnect just to unsubscribe.
        if not self.closed:
            await self._pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: Any) -> None:
        await self._conn.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def _pubsub_listener(self) -> None:
        # Reads until the connection fails; the exception is how the hub learns of it.
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                await self._queue.put(Event(channel=message["channel"].decode(), message=message["data"].decode()))
            elif kind == "subscribe":
                waiters = self._confirmations.get(message["channel"].decode())
                while waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        break


class _Topic:
    __slots__ = ("name", "subscribers", "ready", "pump")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[LocalSubscription] = set()
        # Result: None once the upstream subscription is confirmed, else why it failed.
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.pump: asyncio.Task[None] | None = None


def _settle(ready: asyncio.Future[str | None], failure: str | None) -> None:
    if not ready.done():
        ready.set_result(failure)


class LocalSubscription:
    """One local reader of a topic. `get()` returns the next payload (shared, read-only)
    or raises `Overflowed` / `BackendLost`; registration is complete once entered.
    With `deliver`, accepted payloads are handed to it at once, in the fan-out, instead
    of being buffered, and `ended(kind)` is called once the subscription ends."""

    def __init__(self, hub: Hub, topic: str, accept: Callable[[dict], bool] | None = None,
                 deliver: Callable[[dict], None] | None = None,
                 ended: Callable[[type[SubscriptionEnded]], None] | None = None) -> None:
        self._hub = hub
        self.topic = topic
        self._accept = accept
        self._deliver = deliver
        self._ended = ended
        self._items: deque[dict] = deque()
        self._error: tuple[type[SubscriptionEnded], str] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._state: _Topic | None = None
        self._used = False
        # Set by its reader once it reads live events (after any replay): from then on an
        # event published is one it delivers.
        self.live = False

    async def __aenter__(self) -> LocalSubscription:
        if self._used:
            raise RuntimeError("a LocalSubscription can be entered once")
        self._used = True
        state = self._hub._attach(self)
        try:
            failure = await asyncio.shield(state.ready)
            if failure is not None:
                raise BackendLost(failure)
            if self._error is not None:
                raise self._error[0](self._error[1])
        except BaseException:
            self._hub._detach(self)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.leave()

    def enter_now(self) -> LocalSubscription:
        """Registration at once, without waiting: for a topic this process already listens
        to (another local subscription of it is live), so that no event falls between a
        subscription that leaves and this one."""
        if self._used:
            raise RuntimeError("a LocalSubscription can be entered once")
        self._used = True
        state = self._hub._attach(self)
        if not state.ready.done() or state.ready.result() is not None:
            self._hub._detach(self)
            raise BackendLost("the topic is not live in this process")
        return self

    def leave(self) -> None:
        """Out of the fan-out at once (idempotent)."""
        self._hub._detach(self)
        self._items.clear()
        self._wake()

    @property
    def pending(self) -> int:
        """Events buffered and not yet read."""
        return len(self._items)

    async def get(self) -> dict:
        while True:
            if self._error is not None:
                raise self._error[0](self._error[1])
            if self._items:
                return self._items.popleft()
            if self._state is None:
                raise SubscriptionEnded("subscription is not active")
            if self._waiter is not None:
                raise RuntimeError("get() is already awaited by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[dict]:
        return self

    async def __anext__(self) -> dict:
        # Overflowed / BackendLost propagate out of `async for`: the caller must end its stream.
        if self._state is None and not self._items and self._error is None:
            raise StopAsyncIteration
        return await self.get()

    def _offer(self, payload: dict) -> bool:
        """Non-blocking delivery; False once this subscriber is out of the fan-out."""
        if self._error is not None:
            return False
        # Filtered before buffering: the buffer bounds what this subscriber would
        # receive, not the whole topic's traffic (other channels, other users).
        if self._accept is not None and not self._accepts(payload):
            return True
        if self._deliver is not None:
            self._deliver(payload)
            return True
        if len(self._items) >= self._hub._buffer:
            metrics.refused("subscription_buffer")
            self._end(Overflowed, f"fell more than {self._hub._buffer} events behind on {self.topic!r}")
            return False
        self._items.append(payload)
        self._wake()
        return True

    @property
    def accept(self) -> Callable[[dict], bool] | None:
        return self._accept

    def wants(self, payload: dict) -> bool:
        """Whether the subscription's filter (if any) accepts this payload now."""
        return self._accept is None or self._accepts(payload)

    def _accepts(self, payload: dict) -> bool:
        try:
            return bool(self._accept(payload))
        except Exception:
            # Fails closed: a filter decides who may see an event, and one that cannot
            # tell must not show it (issue 11). The event is dropped for this viewer only.
            log.exception("subscription filter failed on %s; dropping the event for this subscriber", self.topic)
            return False

    def _end(self, kind: type[SubscriptionEnded], reason: str) -> None:
        first = self._error is None
        if first:
            self._error = (kind, reason)
        self._items.clear()
        self._wake()
        if first and self._ended is not None:
            self._ended(kind)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Hub:
    """One per process. `publish` after commit; `subscribe` per GraphQL subscription."""

    def __init__(self, url: str, buffer: int = 1000, namespace: str = "") -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self.url = url
        self._buffer = buffer
        self._namespace = namespace
        scheme = urlparse(url).scheme
        self._is_redis = scheme in _REDIS_SCHEMES
        self._is_memory = scheme == "memory"
        self._broadcast: Broadcast | None = None
        self._healthy = False
        self._topics: dict[str, _Topic] = {}
        self._pumps: set[asyncio.Task[None]] = set()
        # Pumps of released topics that are still unsubscribing, by topic.
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._retired: list[Broadcast] = []
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._ping_client: Any = None
        # Topics this process failed to publish to: subscribers on other processes, whose
        # own connections may have stayed up, missed those events and are told once the
        # backend is back (`_announce_gaps`).
        self._gaps: set[str] = set()
        # Each payload the pumps fan out is stamped with the next number ("_seq"): a
        # subscriber that changes hands (subscriptions/direct.py) knows what it has seen.
        self.seq = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        try:
            await self._connect()
        except Exception as exc:
            log.warning("broadcast backend %s unavailable at start, retrying in background: %s", self._safe_url(), _describe(exc))
        self._supervisor = asyncio.create_task(self._supervise(), name="hub-supervisor")

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        broadcast, self._broadcast = self._broadcast, None
        self._healthy = False
        self._end_all("hub stopped")
        if self._gaps:
            await self._announce_last(broadcast)
        if broadcast is not None:
            self._retire(broadcast)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._close_retired()
        client, self._ping_client = self._ping_client, None
        if client is not None:
            await self._quietly(client.aclose())

    async def publish(self, topic: str, payload: dict | list[dict]) -> bool:
        """False when the event did not reach the backend; never raises for backend failures
        (a payload that is not JSON-serialisable is a bug and raises TypeError). A list is
        several events in one message of the backend, fanned out in its order: one
        serialisation, one round trip and one wake-up of each process's pump for all."""
        message = json.dumps(payload)
        broadcast = self._broadcast
        if broadcast is None:
            # Lost (reconnecting) or stopped: subscribers on other processes, whose own
            # connections may be up, would miss it silently without the gap.
            log.warning("publish to %s dropped: broadcast backend unavailable", topic)
            self._gap(topic)
            return False
        try:
            if self._is_memory:
                # broadcaster's memory backend puts on an unbounded queue: it never waits, and
                # a deadline would cost a timer per event (a tenth of a webhook's CPU).
                await broadcast.publish(self._channel(topic), message)
            else:
                async with asyncio.timeout(_PUBLISH_TIMEOUT):
                    await broadcast.publish(self._channel(topic), message)
        except Exception as exc:
            log.warning("publish to %s failed: %s", topic, _describe(exc))
            self._gap(topic)
            if broadcast is self._broadcast:
                self._end_topic(topic, f"publish to {topic!r} failed: {_describe(exc)}")
                self._lose(broadcast, f"publish failed: {_describe(exc)}")
            return False
        return True

    def _gap(self, topic: str) -> None:
        """An event of `topic` may be lost: announced to every process once the backend
        is back (`_announce_gaps`), or at `stop`."""
        self._gaps.add(topic)
        metrics.BROADCAST_GAPS.inc()

    def subscribe(self, topic: str, accept: Callable[[dict], bool] | None = None,
                  deliver: Callable[[dict], None] | None = None,
                  ended: Callable[[type[SubscriptionEnded]], None] | None = None) -> LocalSubscription:
        """`accept(payload)`, when given, runs in the fan-out (keep it cheap, no I/O):
        only accepted payloads are buffered (or handed to `deliver`). A filter that
        raises rejects the payload."""
        return LocalSubscription(self, topic, accept, deliver, ended)

    def _channel(self, topic: str) -> str:
        """The backend's channel of a topic: deployments sharing one Redis must never
        hear each other (a company id means another company in another database)."""
        return f"{self._namespace}:{topic}" if self._namespace else topic

    async def ping(self) -> bool:
        if not self._is_redis:
            return self._is_memory or self._broadcast is not None
        if self._ping_client is None:
            # Its own connection with a read timeout: the pub/sub one must block forever.
            self._ping_client = _redis_client(self.url, socket_timeout=_PING_TIMEOUT)
        try:
            async with asyncio.timeout(_PING_TIMEOUT):
                return bool(await self._ping_client.ping())
        except Exception:
            return False

    # -- local subscribers -------------------------------------------------------------

    def _attach(self, sub: LocalSubscription) -> _Topic:
        broadcast = self._broadcast
        if broadcast is None:
            raise BackendLost("broadcast backend unavailable")
        state = self._topics.get(sub.topic)
        if state is None:
            state = self._topics[sub.topic] = _Topic(sub.topic)
            previous = self._draining.get(sub.topic)
            pump = state.pump = asyncio.create_task(self._pump(state, broadcast, previous), name=f"hub-pump:{sub.topic}")
            self._pumps.add(pump)
            pump.add_done_callback(lambda task, topic=sub.topic: self._forget_pump(topic, task))
        # Registered before the upstream subscription is confirmed: nothing after it is missed.
        state.subscribers.add(sub)
        sub._state = state
        return state

    def _detach(self, sub: LocalSubscription) -> None:
        state, sub._state = sub._state, None
        if state is None or self._topics.get(sub.topic) is not state:
            return
        state.subscribers.discard(sub)
        if not state.subscribers:
            self._release(state)

    def _release(self, state: _Topic) -> None:
        del self._topics[state.name]
        if state.pump is None:
            return
        self._draining[state.name] = state.pump
        # A pump still subscribing finishes that and then leaves by itself: cancelling it
        # mid-SUBSCRIBE could leave the channel subscribed upstream with no owner.
        if state.ready.done():
            state.pump.cancel()

    def _forget_pump(self, topic: str, pump: asyncio.Task[None]) -> None:
        self._pumps.discard(pump)
        if self._draining.get(topic) is pump:
            del self._draining[topic]

    def _end_topic(self, topic: str, reason: str) -> None:
        state = self._topics.pop(topic, None)
        if state is None:
            return
        _settle(state.ready, reason)
        for sub in state.subscribers:
            sub._end(BackendLost, reason)
        if state.pump is not None:
            state.pump.cancel()

    def _end_all(self, reason: str) -> None:
        for topic in list(self._topics):
            self._end_topic(topic, reason)

    async def _pump(self, state: _Topic, broadcast: Broadcast, previous: asyncio.Task[None] | None) -> None:
        topic = state.name
        if previous is not None:
            # broadcaster keeps one queue set per channel and its subscribe/unsubscribe are
            # not safe to interleave for the same channel: let the old pump finish leaving.
            await asyncio.wait([previous])
        try:
            async with broadcast.subscribe(self._channel(topic)) as upstream:
                _settle(state.ready, None)
                if self._topics.get(topic) is not state:
                    return
                while True:
                    event = await upstream.get()
                    try:
                        message = json.loads(event.message)
                    except ValueError:
                        log.warning("dropping a non-JSON message on %s", topic)
                        continue
                    for payload in message if isinstance(message, list) else (message,):
                        if not self._fan_out(state, payload):
                            break
                        # A turn for the readers between events: a burst that piled up upstream
                        # while this process was busy would otherwise be fanned out whole
                        # before any of them runs, and overflow the brisk ones too.
                        await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Includes a failed SUBSCRIBE/UNSUBSCRIBE: the shared pub/sub connection is now
            # in an unknown state, so the whole backend is replaced.
            # broadcaster's cleanup can mask the real error with a KeyError: report both.
            cause = exc.__cause__ or exc.__context__
            reason = f"upstream subscription to {topic!r} failed: {_describe(exc)}"
            if cause is not None:
                reason += f" after {_describe(cause)}"
            _settle(state.ready, reason)
            self._lose(broadcast, reason)

    def _fan_out(self, state: _Topic, payload: Any) -> bool:
        """Offers one event to the topic's local subscribers; False once none is left (the
        topic is released)."""
        topic = state.name
        if isinstance(payload, dict):
            self.seq += 1
            payload["_seq"] = self.seq
        if isinstance(payload, dict) and payload.get(_GAP):
            for sub in list(state.subscribers):
                sub._end(BackendLost, f"a process failed to publish to {topic!r}: events may be missing")
                state.subscribers.discard(sub)
        for sub in list(state.subscribers):
            if not sub._offer(payload):
                state.subscribers.discard(sub)
        if not state.subscribers and self._topics.get(topic) is state:
            self._release(state)
            return False
        return True

    # -- backend lifecycle -------------------------------------------------------------

    def _make_broadcast(self) -> Broadcast:
        if self._is_redis:
            return Broadcast(backend=_RedisBackend(self.url))
        return Broadcast(self.url)

    async def _connect(self) -> None:
        broadcast = self._make_broadcast()
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT * 2):
                await broadcast.connect()
            if not await self.ping():
                raise ConnectionError("PING failed")
            await self._announce_gaps(broadcast)
        except BaseException:
            await self._close(broadcast)
            raise
        self._broadcast = broadcast
        self._healthy = True
        self._watch(broadcast)
        log.info("broadcast backend %s connected", self._safe_url())

    def _watch(self, broadcast: Broadcast) -> None:
        # When the backend's reader dies a Broadcast waits for ever and nothing else would notice.
        def on_done(task: asyncio.Task[Any]) -> None:
            error = None if task.cancelled() else task.exception()
            self._lose(broadcast, f"{task.get_name()} ended: {_describe(error) if error else 'cancelled'}")

        for task in _listeners(broadcast):
            task.add_done_callback(on_done)

    def _lose(self, broadcast: Broadcast, reason: str) -> None:
        """Synchronous, so no subscriber can attach to a backend that is known dead."""
        if broadcast is not self._broadcast:
            return
        log.warning("broadcast backend %s lost (%s); reconnecting", self._safe_url(), reason)
        self._broadcast = None
        self._healthy = False
        self._retire(broadcast)
        self._end_all(f"broadcast backend lost: {reason}")
        self._lost.set()

    def _retire(self, broadcast: Broadcast) -> None:
        upstream = backend(broadcast)
        if isinstance(upstream, _RedisBackend):
            upstream.closed = True
        self._retired.append(broadcast)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_INITIAL
        while True:
            if self._broadcast is not None:
                connected_at = loop.time()
                await self._lost.wait()
                if loop.time() - connected_at >= _BACKOFF_MAX:
                    delay = _BACKOFF_INITIAL  # it was stable: a single drop is not flapping
            self._lost.clear()
            await self._close_retired()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            try:
                await self._connect()
                metrics.BROADCAST_RECONNECTS.inc()
            except Exception as exc:
                log.warning("reconnecting to %s failed, next try in %.1fs: %s", self._safe_url(), delay, _describe(exc))

    async def _announce_gaps(self, broadcast: Broadcast) -> None:
        """Ends, on every process, the subscriptions of the topics whose events this process
        failed to publish (SPEC §8): their clients resume with `after`. Sent before the
        reconnected backend is in use, so that no subscription of this process, all of
        them new, hears it; a failure fails the reconnect and keeps the topics."""
        for topic in list(self._gaps):
            async with asyncio.timeout(_PUBLISH_TIMEOUT):
                await broadcast.publish(self._channel(topic), json.dumps({_GAP: True}))
            self._gaps.discard(topic)

    async def _announce_last(self, broadcast: Broadcast | None) -> None:
        """At stop, the gaps not announced yet (the backend was lost and not back), over
        the live backend or one last connection: best effort, bounded in time."""
        fresh = None
        try:
            if broadcast is None:
                broadcast = fresh = self._make_broadcast()
                async with asyncio.timeout(_CONNECT_TIMEOUT * 2):
                    await broadcast.connect()
            await self._announce_gaps(broadcast)
        except Exception as exc:
            log.warning("stopping with possibly lost events of %d topics unannounced: %s", len(self._gaps), _describe(exc))
        finally:
            if fresh is not None:
                await self._close(fresh)

    async def _close_retired(self) -> None:
        while self._retired:
            await self._close(self._retired.pop())

    async def _close(self, broadcast: Broadcast) -> None:
        # Not Broadcast.disconnect(): it re-raises a dead listener's error before
        # disconnecting the backend.
        tasks = _listeners(broadcast)
        for task in tasks:
            task.cancel()
        await self._quietly(backend(broadcast).disconnect())
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _quietly(closing: Any) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await closing
        except Exception as exc:
            log.debug("error while closing the broadcast backend: %r", exc)

    def _safe_url(self) -> str:
        parsed = urlparse(self.url)
        return f"{parsed.scheme}://{parsed.hostname or ''}{':' + str(parsed.port) if parsed.port else ''}{parsed.path}"


def _listeners(broadcast: Broadcast) -> list[asyncio.Task[Any]]:
    """The tasks reading a Broadcast's backend: broadcaster's own, and our Redis backend's."""
    upstream = backend(broadcast)
    tasks = [listener(broadcast), upstream.listener if isinstance(upstream, _RedisBackend) else None]
    return [task for task in tasks if task is not None]
