"""Issue 11's websocket bounds, the policy our websocket handlers apply
(borrowed/strawberry_ws.py): close codes, operation ids, operations per socket, sockets
per user, and whose share of the set-up slots an operation takes."""
from __future__ import annotations

from collections import Counter

from . import metrics

WS_REJECTED = 4403
WS_INTERNAL_ERROR = 1011
# Issue 11's websocket bounds: the close codes, and the longest operation id.
WS_MESSAGE_TOO_BIG = 1009  # sent by the websockets library itself (server/serving.py)
WS_BAD_MESSAGE = 4400
WS_INIT_TIMEOUT = 4408
WS_TOO_MANY_SOCKETS = 4429
WS_TRY_AGAIN_LATER = 1013
MAX_OPERATION_ID = 128


async def close_socket(websocket, code: int, reason: str) -> None:
    """A close the handlers decide on; counted where it leaves, as every close sent
    (GraphQLEndpoint's `_counting_closes`)."""
    await websocket.close(code=code, reason=reason)


async def refused_operation_id(handler, message) -> bool:
    """An operation id must be a string of at most 128 characters: anything else closes the
    socket with 4400 before the id is kept anywhere (issue 11). True when it did."""
    if not isinstance(message, dict) or "id" not in message:
        return False
    op_id = message["id"]
    if isinstance(op_id, str) and len(op_id) <= MAX_OPERATION_ID:
        return False
    metrics.refused("ws_operation_id")
    await close_socket(handler.websocket, WS_BAD_MESSAGE, "Invalid operation id")
    return True


def over_operations(handler, message, start: str, running) -> bool:
    """A message starting one more operation than a socket may run at once
    (INBOX_WS_MAX_SUBSCRIPTIONS): it is answered with RATE_LIMITED and the socket stays open.
    A start before the ack, or reusing a running id, is left to the protocol's own rule."""
    if not (isinstance(message, dict) and message.get("type") == start and handler.connection_acknowledged
            and "id" in message):
        return False
    if message["id"] in running or len(running) < handler.view.settings.ws_max_subscriptions:
        return False
    metrics.refused("ws_subscriptions_per_socket")
    return True


TOO_MANY_OPERATIONS = {"message": "too many operations at once on this socket",
                       "extensions": {"code": "RATE_LIMITED"}}


class TooManySockets(Exception):
    """The user has INBOX_WS_MAX_SOCKETS_PER_USER sockets open in this process already."""


class UserSockets:
    """Open websockets per user in this process: a socket counts from its connection_init's
    ack until it closes (INBOX_WS_MAX_SOCKETS_PER_USER)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[int] = Counter()
        self._held: dict[object, int] = {}  # the connection's context -> its user's id

    def admit(self, context, user_id: int) -> None:
        if context in self._held:  # the legacy protocol's repeated connection_init
            return
        if self._open[user_id] >= self.limit:
            metrics.refused("ws_sockets_per_user")
            raise TooManySockets()
        self._open[user_id] += 1
        self._held[context] = user_id

    def release(self, context) -> None:
        user_id = self._held.pop(context, None)
        if user_id is not None:
            self._open[user_id] -= 1
            if not self._open[user_id]:
                del self._open[user_id]


class PendingSockets:
    """Websockets of this process that have not completed connection_init
    (INBOX_WS_MAX_PENDING_SOCKETS): each lives at most INBOX_WS_CONNECTION_INIT_TIMEOUT,
    this bounds how many there are. A socket counts from its arrival until its
    connection_init is accepted or it closes, whichever comes first."""

    KEY = "inbox.pending_socket"  # set in the socket's ASGI scope while it counts

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self, scope) -> bool:
        """False, and counted as a refusal, when the process holds `limit` already."""
        if self.count >= self.limit:
            metrics.refused("ws_pending_sockets")
            return False
        self.count += 1
        scope[self.KEY] = True
        return True

    def settle(self, scope) -> None:
        """The socket completed connection_init or is gone: it no longer counts (once)."""
        if scope.pop(self.KEY, False):
            self.count -= 1


async def refuse_pending(scope, receive, send) -> None:
    """Closes a socket over INBOX_WS_MAX_PENDING_SOCKETS at once with 1013 (try again later),
    before any protocol handler or task exists for it: accepted (with the GraphQL
    subprotocol it asked for, so that its client reads the close code) and closed."""
    if (await receive())["type"] != "websocket.connect":
        return
    asked = [p for p in scope.get("subprotocols") or () if p in ("graphql-transport-ws", "graphql-ws")]
    await send({"type": "websocket.accept", "subprotocol": asked[0] if asked else None})
    await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": "Too many sockets connecting"})


def setup_owner(handler):
    """Whose share of the set-up slots an operation takes (subscriptions/direct.py)."""
    return getattr(handler.context.principal, "id", None)
