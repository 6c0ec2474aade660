"""Our overrides of strawberry 0.341's websocket protocol handlers (its base classes are
internal API: borrowed/__init__.py names the version). Each overridden method says why."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from server import metrics
from server.ws_bounds import (TOO_MANY_OPERATIONS, WS_INIT_TIMEOUT, WS_REJECTED, WS_TOO_MANY_SOCKETS, TooManySockets,
                              close_socket, over_operations, refused_operation_id, setup_owner)
from subscriptions import direct
from subscriptions.hub import TRY_AGAIN_LATER, Overflowed, SubscriptionEnded

log = logging.getLogger("inbox")


class GraphQLTransportWSHandler(BaseGraphQLTransportWSHandler):
    """Live events reach its subscriptions through direct delivery, which owns a
    subscription once it has replayed (subscriptions/direct.py): its task then ends and
    the operation stays registered until the client completes it or leaves."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.direct: dict[str, direct.Operation] = {}
        self.slots: dict[str, metrics.SubscriptionSlot] = {}

    # Override: frees the user's socket place however the connection ends.
    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            self.view.user_sockets.release(self.context)

    # Override: operation ids and operations per socket are bounded before strawberry reads them.
    async def handle_message(self, message) -> None:
        if await refused_operation_id(self, message):
            return
        if over_operations(self, message, "subscribe", self.operations):
            await self.send_message({"type": "error", "id": message["id"], "payload": [TOO_MANY_OPERATIONS]})
            return
        await super().handle_message(message)

    # Override: a user's socket over INBOX_WS_MAX_SOCKETS_PER_USER closes with 4429.
    async def handle_connection_init(self, message) -> None:
        try:
            await super().handle_connection_init(message)
        except TooManySockets:
            await close_socket(self.websocket, WS_TOO_MANY_SOCKETS, "Too many sockets")

    # Override: counts strawberry's own 4408 as a refusal.
    async def handle_connection_init_timeout(self) -> None:
        await super().handle_connection_init_timeout()
        if self.connection_timed_out:  # strawberry closed it with 4408 (counted as it left)
            metrics.refused("ws_connection_init_timeout")

    # Override: a fair set-up slot, then direct delivery takes the operation over.
    async def run_operation(self, operation) -> None:
        handle = self.direct[operation.id] = direct.Operation(
            self.websocket, operation.id, "next", finish=functools.partial(self._finish, operation))
        direct.begin(handle)
        self.slots[operation.id] = metrics.websocket_operation()
        try:
            await handle.setting_up(setup_owner(self), self.view.settings.ws_setup_slots_per_user,
                                   self.view.settings.ws_setups_per_second_per_user)
            await super().run_operation(operation)
        except direct.Detached:
            pass
        finally:
            handle.settled()

    async def _finish(self, operation, kind: type[SubscriptionEnded]) -> None:
        if kind is Overflowed:
            log.info("a subscriber overflowed its buffer; closing with %s", TRY_AGAIN_LATER)
            await self.websocket.close(code=TRY_AGAIN_LATER, reason="")
        else:  # it may have missed events: the client resumes with `after`
            await operation.send_operation_message({"id": operation.id, "type": "complete"})

    # Override: strawberry forgets an id; its direct-delivery sink goes with it.
    def forget_id(self, id: str) -> None:
        self._forget_direct(id)
        super().forget_id(id)

    # Override: a completed operation leaves direct delivery and the metrics too.
    async def cleanup_operation(self, operation_id: str) -> None:
        self._forget_direct(operation_id)
        await super().cleanup_operation(operation_id)

    def _forget_direct(self, operation_id: str) -> None:
        handle = self.direct.pop(operation_id, None)
        if handle is not None:
            handle.forget()
        slot = self.slots.pop(operation_id, None)
        if slot is not None:
            slot.end()

    # Override: operations strawberry dropped without cleanup still leave the gauges.
    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:  # operations strawberry dropped without forgetting them (closed with 4400)
            for slot in self.slots.values():
                slot.end()
            self.slots.clear()


class LegacyGraphQLWSHandler(BaseGraphQLWSHandler):
    """The legacy graphql-ws protocol closes a refused connection with 4403 too
    (SPEC §1), where strawberry would close it with 1011, and a socket without
    connection_init in time with 4408 as graphql-transport-ws does (strawberry has no
    such timeout for it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.direct: dict[str, direct.Operation] = {}
        self.connection_init_received = False

    # Override: the legacy protocol gets a connection_init deadline (strawberry has none).
    async def handle(self) -> None:
        deadline = asyncio.create_task(self._connection_init_deadline())
        try:
            await super().handle()
        finally:
            deadline.cancel()
            self.view.user_sockets.release(self.context)

    async def _connection_init_deadline(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.connection_init_received:
            metrics.refused("ws_connection_init_timeout")
            with contextlib.suppress(Exception):  # the client left meanwhile
                await close_socket(self.websocket, WS_INIT_TIMEOUT, "Connection initialisation timeout")

    # Override: operation ids and operations per socket are bounded before strawberry reads them.
    async def handle_message(self, message) -> None:
        if await refused_operation_id(self, message):
            return
        if over_operations(self, message, "start", self.tasks):
            await self.send_message({"type": "error", "id": message["id"], "payload": TOO_MANY_OPERATIONS})
            return
        await super().handle_message(message)

    # Override: a fair set-up slot, then direct delivery writes the live events.
    async def handle_async_results(self, operation_id: str, *args) -> None:
        # Live events reach the subscription through direct delivery; its generator waits.
        handle = self.direct[operation_id] = direct.Operation(self.websocket, operation_id, "data")
        direct.begin(handle)
        slot = metrics.websocket_operation()
        try:
            await handle.setting_up(setup_owner(self), self.view.settings.ws_setup_slots_per_user,
                                   self.view.settings.ws_setups_per_second_per_user)
            await super().handle_async_results(operation_id, *args)
        finally:
            slot.end()
            handle.settled()
            if self.direct.get(operation_id) is handle:
                del self.direct[operation_id]
            handle.forget()

    # Override: a stopped operation leaves direct delivery too.
    async def cleanup_operation(self, operation_id: str) -> None:
        handle = self.direct.pop(operation_id, None)
        if handle is not None:
            handle.forget()
        await super().cleanup_operation(operation_id)

    # Override: a refused or excess socket closes with 4403 / 4429 (strawberry: 1011).
    async def handle_connection_init(self, message) -> None:
        self.connection_init_received = True
        payload = message.get("payload")
        self.context.connection_params = payload if isinstance(payload, dict) else None
        try:
            await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as error:
            await self.send_message({"type": "connection_error", "payload": error.payload})
            await close_socket(self.websocket, WS_REJECTED, "Forbidden")
            return
        except TooManySockets:
            await close_socket(self.websocket, WS_TOO_MANY_SOCKETS, "Too many sockets")
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())
