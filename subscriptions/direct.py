"""Live delivery without a task per subscriber (issue 7).

A websocket subscription starts as strawberry runs it: its generator (streams.py)
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
at or before its hand-over (no duplicate), and the engine delivers events one at a time
(in order). A socket that cannot take more (its transport paused) gets a backlog of its
own, drained by a task; more than `buffer` frames behind, its subscription ends with
1013 as a slow generator would. Losing the backend ends every sink: the clients resume
with `after`."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections import deque
from typing import Any, Awaitable, Callable, Hashable

from graphql import ExecutionResult
from graphql.execution.executor import Executor
from websockets.protocol import Protocol as WebSocketProtocol, State

from schema.errors import with_contract_code
from server import metrics

from . import fanout
from borrowed.graphql_core import OPERATION, per_event_executor
from .events import ConversationChanged, MessageAdded, MessageUpdated, decoded
from .hub import BackendLost, Hub, LocalSubscription, Overflowed, SubscriptionEnded

log = logging.getLogger(__name__)

# The event types the engine delivers (notifications stay with their generators).
_TYPES = frozenset({MessageAdded.type, MessageUpdated.type, ConversationChanged.type})
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

    __slots__ = ("prefix", "executor", "finish", "sink", "_send", "_writable", "_server", "_settle")

    def __init__(self, websocket: Any, op_id: str, kind: str,
                 finish: Callable[[type[SubscriptionEnded]], Awaitable[None]] | None = None) -> None:
        self.finish = finish
        self.sink: Sink | None = None
        self._settle: Callable[[], None] | None = None
        op = _JSON(op_id)
        self.prefix = (f'{{"id":{op},"type":"next","payload":' if kind == "next"
                       else f'{{"type":"data","id":{op},"payload":').encode()
        self.executor: Executor | None = None
        websocket = getattr(websocket, "ws", websocket)  # strawberry's adapter: starlette's socket
        # The server's own send, past starlette's wrappers; with uvicorn, its flow control.
        send = websocket.scope.get(RAW_SEND)
        writable = getattr(getattr(send, "__self__", None), "writable", None)
        if send is None or not isinstance(writable, asyncio.Event):
            send, writable = websocket.send, None
        self._send = send
        self._writable = writable
        # uvicorn's websockets-based protocol, whose transport takes frames written here.
        server = getattr(send, "__self__", None)
        self._server = server if (isinstance(getattr(server, "conn", None), WebSocketProtocol)
                                  and hasattr(server, "transport") and hasattr(server, "close_sent")) else None

    def writable(self) -> bool:
        return self._writable is None or self._writable.is_set()

    def write_now(self, frame: bytes) -> bool:
        """Writes the text frame straight to the transport when nothing stands in the way
        (no extension such as compression, the connection open, no fragment pending):
        uvicorn would build the same bytes (RFC 6455 §5.2, unmasked from a server) with
        more objects on the way. False: `send` it instead."""
        server = self._server
        if server is None:
            return False
        conn = server.conn
        if (conn.extensions or conn.state is not State.OPEN or conn.expect_continuation_frame
                or server.close_sent or server.transport.is_closing()):
            return False
        server.transport.write(text_frame(frame))
        return True

    def send(self, frame: bytes) -> Awaitable[None]:
        return self._send({"type": "websocket.send", "text": frame.decode()})

    async def setting_up(self, owner: Hashable, share: int) -> None:
        """Waits for one of the process's slots for operations being set up (parsed,
        checked, their horizon read), at most `share` of them held by one `owner` (a
        user) at once; `settled` gives it back."""
        loop = asyncio.get_running_loop()
        slots = _setup_slots.get(loop)
        if slots is None:
            slots = _setup_slots[loop] = SetupSlots(SETTING_UP)
        await slots.take(owner, share)
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

    async def take(self, owner: Hashable, share: int) -> None:
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


def text_frame(data: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying `data` (UTF-8)."""
    length = len(data)
    if length < 126:
        return bytes((0x81, length)) + data
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big") + data
    return b"\x81\x7f" + length.to_bytes(8, "big") + data


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
                 "backlog", "_buffer", "_drainer")

    def __init__(self, operation: Operation, engine: Engine, wants: Callable[[dict], bool], roots: Roots,
                 after: int, buffer: int) -> None:
        self.operation = operation
        self.engine = engine
        self.wants = wants
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
        self.backlog: deque[bytes] | None = None
        self._buffer = buffer
        self._drainer: asyncio.Task[None] | None = None

    def end(self, kind: type[SubscriptionEnded]) -> None:
        """Idempotent; `ended` may be cancelled already (its generator was)."""
        self.backlog = None
        if not self.ended.done():
            self.ended.set_result(kind)
        self.engine.remove(self)
        operation = self.operation
        if operation.sink is self:
            operation.sink = None
            if operation.finish is not None:
                _background(operation.finish(kind))

    async def write(self, frame: bytes) -> None:
        operation = self.operation
        if self.gone or self.ended.done() or operation.sink is not self:
            return
        if self.backlog is not None:
            if len(self.backlog) >= self._buffer:
                log.info("a subscriber's socket fell %s frames behind; ending it", self._buffer)
                metrics.refused("subscription_buffer")
                self.end(Overflowed)
            else:
                self.backlog.append(frame)
            return
        if operation.writable():
            if operation.write_now(frame):
                return
            try:
                await operation.send(frame)
            except Exception:
                self.gone = True
            return
        self.backlog = deque((frame,))
        self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.backlog:
                frame = self.backlog[0]
                if self.operation.sink is not self:
                    break
                await self.operation.send(frame)
                if self.backlog:
                    self.backlog.popleft()
        except Exception:
            self.gone = True
        self.backlog = None


class Engine:
    """The process's direct deliveries of one topic."""

    def __init__(self, hub: Hub, topic: str) -> None:
        self.hub = hub
        self.topic = topic
        self.sinks: dict[Sink, None] = {}
        # One subscription executor per group, with the number of sinks using it: every
        # other sink's own executor is freed once it has handed over.
        self._templates: dict[tuple, list] = {}
        # Registered now: whatever the hub fans out from here on reaches the engine.
        self._sub: LocalSubscription = hub.subscribe(topic, accept=self._wanted).enter_now()
        self._task = asyncio.create_task(self._run(), name=f"direct:{topic}")

    def _wanted(self, payload: dict) -> bool:
        """Buffered for the engine only when a sink may want it: its buffer then bounds
        what its subscribers would receive, as each subscriber's own would."""
        return payload.get("type") in _TYPES and any(sink.wants(payload) for sink in self.sinks)

    def add(self, sink: Sink, executor: Executor) -> None:
        sink.key = fanout.group_key(executor)
        sink.context = executor.context_value
        if sink.key is None:
            sink.template = executor
        else:
            template = self._templates.get(sink.key)
            if template is None:
                template = self._templates[sink.key] = [executor, 0]
            template[1] += 1
            sink.template = template[0]
        self.sinks[sink] = None

    def remove(self, sink: Sink) -> None:
        if self.sinks.pop(sink, 0) is not None:
            return
        if sink.key is not None:
            template = self._templates[sink.key]
            template[1] -= 1
            if not template[1]:
                del self._templates[sink.key]
        if not self.sinks:
            self.close()

    def close(self) -> None:
        if _engines.get((id(self.hub), self.topic)) is self:
            del _engines[(id(self.hub), self.topic)]
        self._sub.leave()
        if asyncio.current_task() is not self._task:
            self._task.cancel()

    async def _run(self) -> None:
        kind: type[SubscriptionEnded] = BackendLost
        try:
            while True:
                await self.deliver(await self._sub.get())
        except Overflowed:
            log.info("direct delivery of %s fell behind; ending its subscribers", self.topic)
            kind = Overflowed
        except SubscriptionEnded:
            log.info("broadcast backend lost; ending the direct subscribers of %s", self.topic)
        except Exception:
            log.exception("direct delivery of %s failed; ending its subscribers", self.topic)
        finally:
            self.close()
            for sink in list(self.sinks):
                sink.end(kind)

    async def deliver(self, payload: dict) -> None:
        event = decoded(payload)
        seq = payload.get("_seq", 0)
        bodies: dict[tuple, Any] = {}
        for sink in list(self.sinks):
            if seq <= sink.after or sink.gone or sink.ended.done():
                continue
            try:
                if not sink.wants(payload):
                    continue
                for root in await sink.roots(payload, event):
                    await sink.write(sink.operation.prefix + await _body(sink, root, bodies) + b"}")
            except Exception:
                log.exception("delivering an event of %s failed; ending one subscription", self.topic)
                sink.end(BackendLost)


_engines: dict[tuple[int, str], Engine] = {}


async def hand_over(sub: LocalSubscription, roots: Roots, buffer: int) -> bool:
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
    sink = operation.sink = Sink(operation, engine, sub.accept or _everything, roots, hub.seq, buffer)
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


def _everything(payload: dict) -> bool:
    return True


_tasks: set[asyncio.Task] = set()


def _background(coroutine: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _body(sink: Sink, root: Any, bodies: dict[tuple, Any]) -> bytes:
    """The JSON of the sink's result for one root: executed once per group."""
    template, key = sink.template, sink.key
    if key is not None and not fanout.is_own(template):
        group = (key, id(root))
        body = bodies.get(group)
        if type(body) is bytes:
            fanout.stats["reused"] += 1
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
        payload["errors"] = [with_contract_code(error).formatted for error in result.errors]
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
