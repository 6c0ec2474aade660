"""Live delivery without a task per subscriber (issue 7).

A websocket subscription starts as strawberry runs it: its generator (resolvers/subscriptions.py)
replays what the client asked for and yields the events buffered meanwhile. Once it has
nothing buffered it hands over: it becomes a `Sink` of its topic's `Engine` and waits.
The engine is one reader of the topic per process. For each event it asks every sink
whether its viewer wants the event and which roots (messages, conversation events) it
turns into, executes each document once per root for all the sinks that share it
(fanout.py's rule: same operation and variables, and an execution that read nothing of
the viewer), encodes the result once, and writes every sink's frame, its operation id
spliced in, in one loop. So a delivery costs a filter, a string concatenation and a
socket write, rather than a task wake-up, a graphql execution and strawberry's result
hooks per subscriber.

Ordering and completeness are the generator's: the engine is registered with the hub
before the generator's own subscription leaves (no gap), a sink skips the events stamped
at or before its hand-over (no duplicate), and every lane a sink's events go through
works through them one at a time (in order). A socket that cannot take more (its transport paused)
gets a backlog of its own, drained by a task; more than `buffer` frames or
`buffer_bytes` bytes behind, its subscription ends with 1013 as a slow generator would.
Losing the backend ends every sink: the clients resume with `after`.

Fairness (issue 11): the work is split in lanes (`Engine`), so that neither one
viewer's expensive executions nor one slow socket delays or closes anyone else's."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections import deque
from typing import Any, Awaitable, Callable, Hashable

from graphql import ExecutionResult, GraphQLError
from graphql.execution.executor import Executor

from server import metrics
from server.pace import Pace

from . import fanout
from borrowed import uvicorn_ws
from borrowed.graphql_core import OPERATION, per_event_executor
from borrowed.strawberry import starlette_websocket
from inbox.events import CATALOGUE, decoded
from .hub import BackendLost, Hub, LocalSubscription, Overflowed, SubscriptionEnded

log = logging.getLogger(__name__)

# The event types the engine delivers (notifications stay with their generators).
# How an execution's errors are told to clients, contract codes included: the app sets
# schema/errors.py's rule here (subscriptions/ imports nothing of the schema).
format_error: Callable[[GraphQLError], GraphQLError] = lambda error: error
DIRECT_TYPES = frozenset(name for name, event_type in CATALOGUE.items() if event_type.delivery == "direct")
_JSON = json.JSONEncoder(separators=(",", ":")).encode
# A group's execution read the viewer: each of its sinks executes its own.
_DEPENDENT = object()

# Websocket operations set up at once per process. A crowd of clients subscribing together
# (a reconnect after a deploy) would otherwise hold every set-up's objects at the same
# moment, and the heap stays at that peak: ~20 KB more per idle subscription measured
# with 1,000 subscribers connecting at once. Each user holds at most a share of them
# (INBOX_WS_SETUP_SLOTS_PER_USER), so that nobody waits behind one user's slow set-ups.
SETTING_UP = 16
_setup_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SetupSlots] = weakref.WeakKeyDictionary()

# Own executions of one engine running at once: a crowd of viewers must not take every
# database connection from the requests. A lane waits its turn (first come, first
# served) for each execution, so the viewers stay served in turn.
OWN_AT_ONCE = 4

# Sockets a group's lane writes one event to before it lets the loop run something else:
# ~1 ms of frames at the fan-out's cost per delivery (bench/RESULTS.md), so that one
# company's event to thousands of sockets delays another's request by that at most.
SINKS_PER_TURN = 64

# The scope key under which the outermost ASGI layer keeps the server's own `send`.
RAW_SEND = "inbox.raw_send"

Roots = Callable[[dict, Any], Awaitable[list]]


class Detached(BaseException):
    """Raised through a subscription's generator once the engine owns its operation:
    strawberry's operation task ends there, with no `complete`, and frees its stack; the
    operation stays registered with its connection (server/app.py). A BaseException, so
    that no layer in between mistakes it for an error of the subscription."""


class Operation:
    """One websocket operation as the engine writes to it. Its connection's handler calls
    `forget` the moment the operation is over (completed, stopped, the client gone).
    `finish`, when given, lets the engine own it: it is awaited with Overflowed or
    BackendLost when the sink ends."""

    __slots__ = ("prefix", "executor", "finish", "sink", "_send", "_writable", "_write", "_settle")

    def __init__(self, websocket: Any, op_id: str, kind: str,
                 finish: Callable[[type[SubscriptionEnded]], Awaitable[None]] | None = None) -> None:
        self.finish = finish
        self.sink: Sink | None = None
        self._settle: Callable[[], None] | None = None
        op = _JSON(op_id)
        self.prefix = (f'{{"id":{op},"type":"next","payload":' if kind == "next"
                       else f'{{"type":"data","id":{op},"payload":').encode()
        self.executor: Executor | None = None
        websocket = starlette_websocket(websocket)
        # The server's own send, past starlette's wrappers; with uvicorn, its flow control
        # and a writer of frames straight to its transport (borrowed/uvicorn_ws.py).
        send = websocket.scope.get(RAW_SEND)
        writable = uvicorn_ws.flow_control(send)
        if send is None or writable is None:
            send, writable = websocket.send, None
        self._send = send
        self._writable = writable
        self._write = uvicorn_ws.text_writer(send) if writable is not None else None

    def writable(self) -> bool:
        return self._writable is None or self._writable.is_set()

    def write_now(self, frame: bytes) -> bool:
        """Writes the text frame straight to the transport when nothing stands in the way
        (no extension such as compression, the connection open, no fragment pending):
        uvicorn would build the same bytes (RFC 6455 §5.2, unmasked from a server) with
        more objects on the way. False: `send` it instead."""
        write = self._write
        return write is not None and write(frame)

    def send(self, frame: bytes) -> Awaitable[None]:
        return self._send({"type": "websocket.send", "text": frame.decode()})

    async def setting_up(self, owner: Hashable, share: int, per_second: float = 0) -> None:
        """Waits for one of the process's slots for operations being set up (parsed,
        checked, their horizon read), at most `share` of them held by one `owner` (a
        user) at once, and at most `per_second` of the owner's set-ups a second beyond a
        burst of twice that (0: no pace); `settled` gives the slot back."""
        loop = asyncio.get_running_loop()
        slots = _setup_slots.get(loop)
        if slots is None:
            slots = _setup_slots[loop] = SetupSlots(SETTING_UP)
        await slots.take(owner, share, per_second)
        self._settle = functools.partial(slots.give_back, owner)

    def settled(self) -> None:
        """Set up (a subscription reading live events) or over: its slot is free again."""
        release, self._settle = self._settle, None
        if release is not None:
            release()

    def forget(self) -> None:
        """The operation is over (the client completed it or left): no more deliveries."""
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.end(BackendLost)


class SetupSlots:
    """A process's set-up slots, shared fairly: an owner waits for one of its own `share`
    first, then for one of the process's; so one owner's slow set-ups hold at most
    `share` of them and everyone else's go through the rest."""

    def __init__(self, size: int) -> None:
        self._all = asyncio.Semaphore(size)
        # owner -> [its own slots, its set-ups holding or waiting for one]
        self._owners: dict[Hashable, list] = {}
        self._pace = Pace()

    async def take(self, owner: Hashable, share: int, per_second: float = 0) -> None:
        wait = self._pace.wait(owner, per_second)
        if wait:
            # One user's thousands of subscriptions take at most their pace of the
            # process's CPU (~0.6 ms a set-up), not all of it (issue 11).
            metrics.refused("ws_setup_rate")
            await asyncio.sleep(wait)
        entry = self._owners.get(owner)
        if entry is None:
            entry = self._owners[owner] = [asyncio.Semaphore(share), 0]
        entry[1] += 1
        try:
            if entry[0].locked():
                metrics.refused("ws_setup_slots")  # it waits for its own set-ups, not others'
            await entry[0].acquire()
            try:
                await self._all.acquire()
            except BaseException:
                entry[0].release()
                raise
        except BaseException:
            self._leave(owner, entry)
            raise

    def give_back(self, owner: Hashable) -> None:
        self._all.release()
        entry = self._owners[owner]
        entry[0].release()
        self._leave(owner, entry)

    def _leave(self, owner: Hashable, entry: list) -> None:
        entry[1] -= 1
        if not entry[1]:
            del self._owners[owner]


def begin(operation: Operation) -> None:
    """Called by the websocket handler in the task of each of its operations."""
    OPERATION.set(operation)


def settled() -> None:
    """Called by a subscription once it reads live events."""
    operation = OPERATION.get()
    if operation is not None:
        operation.settled()


class Sink:
    """A subscription the engine delivers to."""

    __slots__ = ("operation", "engine", "wants", "roots", "after", "key", "template", "context", "ended", "gone",
                 "backlog", "backlog_bytes", "queued", "_buffer", "_buffer_bytes", "_drainer")

    def __init__(self, operation: Operation, engine: Engine, wants: Callable[[dict], bool], roots: Roots,
                 after: int, buffer: int, buffer_bytes: int) -> None:
        self.operation = operation
        self.engine = engine
        self.wants = wants  # fails closed (the hub's rule): a filter that raises rejects
        self.roots = roots
        self.after = after  # the hub's stamp of the last event its generator saw
        # Its executions: the group it shares them with (None: its own), an executor of
        # the group's operation and variables to copy for each event, and its own context.
        self.key: tuple | None = None
        self.template: Executor | None = None
        self.context: Any = None
        # Set with the exception its generator raises: Overflowed or BackendLost.
        self.ended: asyncio.Future[type[SubscriptionEnded]] = asyncio.get_running_loop().create_future()
        # Its socket failed: the connection's clean-up ends the generator; nothing more to write.
        self.gone = False
        # Frames its socket has not taken yet, and their size (server.metrics.BACKLOG_BYTES).
        self.backlog: deque[bytes] | None = None
        self.backlog_bytes = 0
        # Events waiting in its viewer's lane for an execution of its own.
        self.queued = 0
        self._buffer = buffer
        self._buffer_bytes = buffer_bytes
        self._drainer: asyncio.Task[None] | None = None

    def end(self, kind: type[SubscriptionEnded]) -> None:
        """Idempotent; `ended` may be cancelled already (its generator was)."""
        self._free_backlog()
        if not self.ended.done():
            self.ended.set_result(kind)
        self.engine.remove(self)
        operation = self.operation
        if operation.sink is self:
            operation.sink = None
            if operation.finish is not None:
                _background(operation.finish(kind))

    def overflow(self, bound: str, why: str) -> None:
        """Over one of its bounds: its socket is closed with 1013, no one else's."""
        log.info("a subscriber %s; ending it", why)
        metrics.refused(bound)
        self.end(Overflowed)

    async def write(self, frame: bytes) -> None:
        """Never waits for the socket: what it cannot take now waits in the backlog."""
        operation = self.operation
        if self.gone or self.ended.done() or operation.sink is not self:
            return
        if self.backlog is not None:
            if len(self.backlog) >= self._buffer:
                self.overflow("subscription_buffer", f"socket fell {self._buffer} frames behind")
            elif self.backlog_bytes + len(frame) > self._buffer_bytes:
                self.overflow("subscription_buffer_bytes", f"socket fell {self._buffer_bytes} bytes behind")
            else:
                self._queue(frame)
            return
        if operation.writable():
            if operation.write_now(frame):
                return
            try:
                await operation.send(frame)
            except Exception:
                self.gone = True
            return
        self.backlog = deque()
        self._queue(frame)
        self._drainer = asyncio.create_task(self._drain())

    def _queue(self, frame: bytes) -> None:
        self.backlog.append(frame)
        self.backlog_bytes += len(frame)
        metrics.BACKLOG_BYTES.inc(len(frame))

    def _free_backlog(self) -> None:
        self.backlog = None
        if self.backlog_bytes:
            metrics.BACKLOG_BYTES.dec(self.backlog_bytes)
            self.backlog_bytes = 0

    async def _drain(self) -> None:
        try:
            while self.backlog:
                frame = self.backlog[0]
                if self.operation.sink is not self:
                    break
                await self.operation.send(frame)
                if self.backlog:
                    self.backlog.popleft()
                    self.backlog_bytes -= len(frame)
                    metrics.BACKLOG_BYTES.dec(len(frame))
        except Exception:
            self.gone = True
        self._free_backlog()


class _Lane:
    """Work of one engine done in order by a task of its own that exists while there is
    work: the events of one group (executed once for all its sinks), or one viewer's own
    executions, as (sink, payload). Lanes take turns event by event, so one lane's cost
    delays the others by one of its executions at most."""

    __slots__ = ("items", "task")

    def __init__(self) -> None:
        self.items: deque = deque()
        self.task: asyncio.Task[None] | None = None


class _Group(_Lane):
    __slots__ = ("key", "template", "sinks", "limit")

    def __init__(self, key: tuple | None, template: Executor) -> None:
        super().__init__()
        self.key = key
        self.template = template
        self.sinks: dict[Sink, None] = {}
        # Events it may hold: the smallest buffer of the sinks it had.
        self.limit = 0

    @property
    def own(self) -> bool:
        """Its executions are per sink: it cannot share (key None) or proved viewer-dependent."""
        return self.key is None or fanout.is_own(self.template)


class Engine:
    """The process's direct deliveries of one topic.

    Fair (issue 11): the hub hands each event to the engine at once, in its fan-out, and
    the engine only queues it on the lanes that want it. A group's lane executes the
    event once and writes every sink's frame; a group whose executions read the viewer
    passes each sink's event on to its viewer's lane instead, where that viewer's own
    executions run. So one viewer's expensive executions hold up only that viewer, a
    slow socket only its own backlog, and each bound ends only the subscriptions that
    are over it."""

    def __init__(self, hub: Hub, topic: str) -> None:
        self.hub = hub
        self.topic = topic
        self.sinks: dict[Sink, None] = {}
        # By group key (a sink that cannot share: by the sink itself).
        self._groups: dict[Any, _Group] = {}
        # Own executions, by viewer, OWN_AT_ONCE at a time.
        self._viewers: dict[Any, _Lane] = {}
        self._own_at_once = asyncio.Semaphore(OWN_AT_ONCE)
        # Registered now: whatever the hub fans out from here on reaches the engine.
        self._sub: LocalSubscription = hub.subscribe(topic, accept=_delivered, deliver=self._dispatch,
                                                     ended=self._ended).enter_now()

    def add(self, sink: Sink, executor: Executor) -> None:
        sink.key = fanout.group_key(executor)
        sink.context = executor.context_value
        group = self._groups.get(_group_of(sink))
        if group is None:
            group = self._groups[_group_of(sink)] = _Group(sink.key, executor)
        sink.template = group.template
        group.sinks[sink] = None
        group.limit = min(group.limit, sink._buffer) if group.limit else sink._buffer
        self.sinks[sink] = None

    def remove(self, sink: Sink) -> None:
        if self.sinks.pop(sink, 0) is not None:
            return
        group = self._groups[_group_of(sink)]
        del group.sinks[sink]
        if not group.sinks:
            del self._groups[_group_of(sink)]
            if group.task is not None and group.task is not asyncio.current_task():
                group.task.cancel()
        if not self.sinks:
            self.close()

    def close(self) -> None:
        if _engines.get((id(self.hub), self.topic)) is self:
            del _engines[(id(self.hub), self.topic)]
        self._sub.leave()
        current = asyncio.current_task()
        for lane in (*self._groups.values(), *self._viewers.values()):
            if lane.task is not None and lane.task is not current:
                lane.task.cancel()

    def _ended(self, kind: type[SubscriptionEnded]) -> None:
        """The hub ended the engine's subscription (backend lost, a gap): every sink ends."""
        log.info("broadcast backend lost; ending the direct subscribers of %s", self.topic)
        self.close()
        for sink in list(self.sinks):
            sink.end(kind)

    def _dispatch(self, payload: dict) -> None:
        """In the hub's fan-out: queues the event on each group that may want it."""
        for group in list(self._groups.values()):
            if any(sink.wants(payload) for sink in group.sinks):
                if len(group.items) >= group.limit:
                    # Its executions cannot keep up with the topic: its sinks only, who
                    # share its cost (the same document), are behind.
                    for sink in list(group.sinks):
                        sink.overflow("subscription_buffer", f"group fell {len(group.items)} events behind")
                    continue
                group.items.append(payload)
                self._run(group, self._deliver_group)

    def _run(self, lane: _Lane, work: Callable[[_Lane], Awaitable[None]]) -> None:
        if lane.task is None:
            lane.task = asyncio.create_task(work(lane), name=f"direct:{self.topic}")

    async def _deliver_group(self, group: _Group) -> None:
        try:
            while group.items:
                await self._deliver(group, group.items.popleft())
                if group.items:
                    await asyncio.sleep(0)  # every other lane's turn
        finally:
            group.task = None

    async def _deliver(self, group: _Group, payload: dict) -> None:
        event = decoded(payload)
        seq = payload.get("_seq", 0)
        bodies: dict[tuple, Any] = {}
        for n, sink in enumerate(list(group.sinks), 1):
            if seq <= sink.after or sink.gone or sink.ended.done():
                continue
            if group.own:
                self._pass_on(sink, payload)
            else:
                await self._deliver_to(sink, payload, event, bodies)
            if n % SINKS_PER_TURN == 0:
                # Every other lane's (and request's) turn: one event to thousands of
                # sockets must not hold the loop for its whole fan-out (issue 11).
                await asyncio.sleep(0)

    def _pass_on(self, sink: Sink, payload: dict) -> None:
        """To the sink's viewer's lane, in order: after every event it got before."""
        if sink.queued >= sink._buffer:
            sink.overflow("subscription_buffer", f"fell {sink.queued} events behind its own executions")
            return
        viewer = getattr(sink.context, "principal", None)
        # A user's and a partner channel's ids may be equal: the kind is part of the key.
        key = sink if viewer is None else (type(viewer).__name__, viewer.id)
        lane = self._viewers.get(key)
        if lane is None:
            lane = self._viewers[key] = _Lane()
        sink.queued += 1
        lane.items.append((sink, payload))
        self._run(lane, functools.partial(self._deliver_own, key))

    async def _deliver_own(self, key: Any, lane: _Lane) -> None:
        try:
            while lane.items:
                sink, payload = lane.items.popleft()
                sink.queued -= 1
                if not (sink.gone or sink.ended.done()):
                    async with self._own_at_once:
                        await self._deliver_to(sink, payload, decoded(payload), _viewer_bodies(sink, payload))
                if lane.items:
                    await asyncio.sleep(0)
        finally:
            lane.task = None
            if not lane.items and self._viewers.get(key) is lane:
                del self._viewers[key]

    async def _deliver_to(self, sink: Sink, payload: dict, event: Any, bodies: dict[tuple, Any]) -> None:
        try:
            # Checked again now: what it wants moves with what it received (messageAdded's `last`).
            if not sink.wants(payload):
                return
            for root in await sink.roots(payload, event):
                await sink.write(sink.operation.prefix + await _body(sink, root, bodies) + b"}")
        except Exception:
            log.exception("delivering an event of %s failed; ending one subscription", self.topic)
            sink.end(BackendLost)


def _group_of(sink: Sink) -> Any:
    """The key of a sink's group in its engine: a sink that cannot share is a group alone."""
    return sink if sink.key is None else sink.key


def _delivered(payload: dict) -> bool:
    """The event types the engine delivers (notifications stay with their generators)."""
    return payload.get("type") in DIRECT_TYPES


_engines: dict[tuple[int, str], Engine] = {}


async def hand_over(sub: LocalSubscription, roots: Roots, buffer: int, buffer_bytes: int) -> bool:
    """Turns the calling subscription generator into a sink of its topic's engine. An
    operation the engine may own raises Detached; any other waits until its sink ends
    and raises Overflowed or BackendLost like the hub's `get`. False at once when it
    cannot hand over (not a websocket operation of ours, events still buffered): the
    generator goes on reading its own subscription."""
    operation = OPERATION.get()
    if operation is None or operation.executor is None or sub.pending:
        return False
    hub = sub._hub
    engine = _engines.get((id(hub), sub.topic))
    if engine is None:
        engine = _engines[(id(hub), sub.topic)] = Engine(hub, sub.topic)
    sink = operation.sink = Sink(operation, engine, sub.wants, roots, hub.seq, buffer, buffer_bytes)
    engine.add(sink, operation.executor)
    operation.executor = None
    sub.leave()
    if operation.finish is not None:
        raise Detached()
    try:
        kind = await sink.ended
    finally:
        operation.forget()
    raise kind(f"direct delivery of {sub.topic!r} ended")


_tasks: set[asyncio.Task] = set()


def _background(coroutine: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _viewer_bodies(sink: Sink, payload: dict) -> dict[tuple, Any]:
    """The results of one event for one viewer, by group and root: a viewer's sinks of the
    same operation and variables (tabs, or one client subscribing twice) get the result
    of one execution. Kept in the payload, which holds the roots (their ids are keys)
    for as long as the event is delivered."""
    viewer = getattr(sink.context, "principal", None)
    if viewer is None or sink.key is None:
        return {}
    return payload.setdefault("_viewers", {}).setdefault((type(viewer).__name__, viewer.id), {})


async def _body(sink: Sink, root: Any, bodies: dict[tuple, Any]) -> bytes:
    """The JSON of the sink's result for one root: executed once per group, or, for an
    operation whose result depends on its viewer, once per group and viewer."""
    template, key = sink.template, sink.key
    if key is None:
        fanout.stats["own"] += 1
        return _encode(await _execute(template, root, sink.context))
    group = (key, id(root))
    body = bodies.get(group)
    if type(body) is bytes:
        fanout.stats["reused"] += 1
        return body
    if fanout.is_own(template):
        # `bodies` is the viewer's own here (`_viewer_bodies`): kept for its next sink.
        fanout.stats["own"] += 1
        result = await _execute(template, root, sink.context)
        body = _encode(result)
        if not result.errors:
            bodies[group] = body
        return body
    if body is None:
        watch = fanout.Watch()
        result = await _execute(template, root, fanout.WatchedContext(sink.context, watch))
        if watch.dependent:
            bodies[group] = _DEPENDENT
            fanout.mark_own(template)
        elif not result.errors:
            bodies[group] = body = _encode(result)
            fanout.stats["shared"] += 1
            return body
        fanout.stats["own"] += 1
        return _encode(result)
    fanout.stats["own"] += 1
    return _encode(await _execute(template, root, sink.context))


async def _execute(template: Executor, root: Any, context: Any) -> ExecutionResult:
    """One event's execution of the template's operation and variables, with `context`."""
    executor = per_event_executor(template, root)
    executor.context_value = context
    result = executor.execute_operation(False)
    return await result if executor.is_awaitable(result) else result


def _encode(result: ExecutionResult) -> bytes:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_error(error).formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return _JSON(payload).encode()


def live_subscriptions(hub: Hub, topic: str) -> int:
    """Subscriptions of a topic that deliver every event published from now on, in this
    process: the hub's readers past their replay, and the engine's sinks."""
    state = hub._topics.get(topic)
    readers = 0 if state is None else sum(1 for sub in state.subscribers if sub.live)
    engine = _engines.get((id(hub), topic))
    return readers if engine is None else readers + len(engine.sinks)
