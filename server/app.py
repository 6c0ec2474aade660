"""The ASGI application: GraphQL over HTTP and websockets at /graphql, health, metrics,
authentication, body limits, and the lifespan that opens the database and hub."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import timedelta

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

import models
from channels import webhooks
from channels.messenger import Profiles
from channels.outbound import Providers
from inbox import media
from inbox.accounts import authenticate
from inbox.sending import Sender
from schema import schema
from schema.context import Context
from schema.errors import with_contract_code
from subscriptions import direct
from subscriptions.hub import Hub
from subscriptions.publish import current_hub, use_hub

from borrowed.strawberry_ws import GraphQLTransportWSHandler, LegacyGraphQLWSHandler
from borrowed.uvicorn_http import body_arrived

from . import metrics, web
from .config import Settings
from .db import close_database, database_reachable, open_database
from .http import GraphQLFirst, GraphQLHTTP, bearer, replaying, with_cors
from .mail import start_mailer
from .media import MediaKeeper, media_routes, refresh_stored_bytes, store_of
from .ws_bounds import WS_INTERNAL_ERROR, WS_MESSAGE_TOO_BIG, PendingSockets, UserSockets, refuse_pending

log = logging.getLogger("inbox")

# Live events' errors carry contract codes like every answer's.
direct.format_error = with_contract_code

class InboxGraphQL(GraphQL):
    graphql_transport_ws_handler_class = GraphQLTransportWSHandler
    graphql_ws_handler_class = LegacyGraphQLWSHandler

    def __init__(self, settings: Settings) -> None:
        # Operations per socket are counted by our handlers, whose refusal carries RATE_LIMITED.
        super().__init__(schema, graphql_ide="graphiql", allowed_origins=settings.allowed_origins,
                         connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout),
                         max_subscriptions_per_connection=None)
        self.settings = settings
        self.wake_sender = None
        self.providers = None  # the messaging apps' API client (channels/outbound.py), once started
        self.user_sockets = UserSockets(settings.ws_max_sockets_per_user)
        self.pending_sockets = PendingSockets(settings.ws_max_pending_sockets)

    @property
    def graphql_ide_html(self) -> str:
        return web.graphiql_html()  # its own, signed in from the start and served offline

    async def run(self, request, *args, **kwargs):
        # Strawberry answers a request it cannot read (bad JSON, no query, a mutation over
        # GET...) in plain text; clients get a GraphQL error with a contract code instead.
        try:
            return await super().run(request, *args, **kwargs)
        except HTTPException as error:
            if not isinstance(request, Request):
                raise
            metrics.answered("unknown", code="BAD_USER_INPUT")
            return JSONResponse({"data": None, "errors": [{"message": error.reason,
                                                           "extensions": {"code": "BAD_USER_INPUT"}}]},
                                status_code=error.status_code)

    async def get_context(self, request, response) -> Context:
        principal = request.scope.get("state", {}).get("principal")
        context = Context(request, response, self.settings, principal)
        context.wake_sender = self.wake_sender
        context.providers = self.providers
        return context

    async def on_ws_connect(self, context: Context):
        params = context.connection_params or {}
        token = None
        if isinstance(params, dict):
            token = bearer(params.get("authorization") or params.get("Authorization"))
        token = token or bearer(context.request.headers.get("authorization"))
        principal = await authenticate(token)
        if not isinstance(principal, models.User):
            raise ConnectionRejectionError({"message": "missing or invalid bearer token",
                                            "extensions": {"code": "UNAUTHENTICATED"}})
        self.user_sockets.admit(context, principal.id)
        self.pending_sockets.settle(context.request.scope)  # connection_init completed
        context.principal = principal
        return None


class GraphQLEndpoint:
    """/graphql: HTTP requests (server/http.py) and websockets."""

    def __init__(self, graphql: InboxGraphQL) -> None:
        self.graphql = graphql
        self.http = GraphQLHTTP(graphql)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
            return
        if scope["type"] == "websocket":
            send = _counting_closes(send)
            pending = self.graphql.pending_sockets
            if not pending.enter(scope):
                await refuse_pending(scope, receive, send)
                return
            metrics.SOCKETS.inc()
            try:
                await self.graphql(scope, counting_oversized(receive), send)
            except Exception:
                # Anything unexpected (the database down while the token is checked):
                # close with 1011, internal error, rather than drop the connection (1006).
                log.exception("websocket connection failed")
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": WS_INTERNAL_ERROR})
            finally:
                pending.settle(scope)
                metrics.SOCKETS.dec()
            return
        await self.graphql(scope, receive, send)


def _counting_closes(send):
    """The socket's `send`, counting the closes the server sends (whoever decided them:
    strawberry's handlers, ours, a bound); frames written past it (direct delivery's
    RAW_SEND) are never closes."""
    async def counted(message) -> None:
        await send(message)
        if message["type"] == "websocket.close":
            metrics.closed(message.get("code", 1000))

    return counted


def counting_oversized(receive):
    """The websockets library closes a socket whose client sent a message over
    INBOX_WS_MAX_MESSAGE_BYTES with 1009 (server/serving.py); the app learns it here."""
    async def counted():
        message = await receive()
        if message["type"] == "websocket.disconnect" and message.get("code") == WS_MESSAGE_TOO_BIG:
            metrics.refused("ws_message_bytes")
            metrics.closed(WS_MESSAGE_TOO_BIG)  # sent by the library, not through the app's `send`
        return message

    return counted


class BodyLimit:
    """413 for any HTTP body over the limit (webhooks included), before the app reads it;
    408 for a body that takes longer than INBOX_BODY_TIMEOUT_SECONDS to arrive, so that a
    client trickling it in cannot hold a connection and its buffer for ever."""

    def __init__(self, app, max_bytes: int, body_seconds: float, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_seconds = body_seconds
        # Paths with a bound of their own: POST /media takes a file (INBOX_MEDIA_MAX_BYTES).
        self.larger = larger or {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                # The server's own send, for direct delivery (subscriptions/direct.py).
                scope[direct.RAW_SEND] = send
            await self.app(scope, receive, send)
            return
        max_bytes, bound = self.max_bytes, "http_body_bytes"
        if scope.get("path") in self.larger:
            max_bytes, bound = self.larger[scope["path"]], "media_max_bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(scope, receive, send, 413, "request body too large", bound)
            return
        # A body that has all arrived (a webhook's comes with its head) has nothing to wait
        # for: no deadline, which costs a timer per request.
        deadline = contextlib.nullcontext() if body_arrived(receive) else asyncio.timeout(self.body_seconds)
        try:
            async with deadline:
                body = await self._body(receive, max_bytes)
        except TimeoutError:
            await self._refuse(scope, receive, send, 408, "request body too slow", "http_body_seconds")
            return
        if body is _TOO_LARGE:
            await self._refuse(scope, receive, send, 413, "request body too large", bound)
        elif body is not None:  # None: the client left
            await self.app(scope, replaying(body, receive), send)

    async def _body(self, receive, max_bytes: int) -> bytes | object | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > max_bytes:
                return _TOO_LARGE
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _refuse(self, scope, receive, send, status: int, text: str, bound: str) -> None:
        # The rest of the body is not read: the connection closes after the answer.
        metrics.refused(bound)
        response = JSONResponse({"errors": [{"message": text, "extensions": {"code": "BAD_USER_INPUT"}}]},
                                status_code=status, headers={"Connection": "close"})
        await response(scope, receive, send)


_TOO_LARGE = object()


async def healthz(request: Request) -> Response:
    hub = current_hub()
    database = await database_reachable()
    # Connected, not only reachable: after an outage the hub reconnects on its backoff,
    # and until then it cannot deliver live events.
    broadcast = bool(hub) and hub.healthy and await hub.ping()
    status = 200 if database and broadcast else 503
    return Response(json.dumps({"database": database, "broadcast": broadcast}), status_code=status,
                    media_type="application/json")


def metrics_endpoint(token: str):
    """GET /metrics (issue 11): Prometheus' text format, for `Authorization: Bearer <token>`
    only; any other request is a 401. A scrape reads the queues at most every few seconds
    and answers within a bounded time whatever the database does (server/metrics.py)."""
    queues = metrics.QueueGauges()

    async def scrape(request: Request) -> Response:
        if not metrics.authorized(request.headers.get("authorization"), token):
            return PlainTextResponse("Unauthorized", status_code=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        try:
            await queues.refresh()
            await refresh_stored_bytes()
        except Exception:  # what it has is still worth answering
            log.exception("refreshing the queue gauges failed")
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return scrape


def create_app(settings: Settings | None = None, *, on_start=None, migrate: bool = True):
    """`on_start`: an optional coroutine function run once the database and hub are up
    (the demo seeds its company there). `migrate=False` when the command that starts the
    server has applied the migrations already (once for all of its worker processes)."""
    settings = settings or Settings.from_env()
    view = InboxGraphQL(settings)
    graphql = GraphQLEndpoint(view)
    store = store_of(settings)
    # Set now, not at start: a second app on a running server's database (tests) serves files too.
    media.configure(settings.public_url, settings.media_secret, settings.media_url_seconds, None)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await open_database(settings.database_url, migrate_first=migrate)
        hub = Hub(settings.broadcast_url, buffer=settings.subscription_buffer,
                  namespace=settings.broadcast_namespace)
        await hub.start()
        use_hub(hub)
        providers = Providers(settings)
        app.state.profiles = Profiles(settings.messenger_api_base, providers.http)
        sender = Sender(providers.deliver, timeout=settings.send_timeout,
                        retry_seconds=settings.send_retry_seconds, backoff_seconds=settings.send_backoff_seconds,
                        per_channel=settings.send_concurrency_per_channel)
        sender.start()  # also resumes what an earlier run left pending
        view.wake_sender = sender.wake
        view.providers = providers
        app.state.providers = providers
        app.state.sender = sender
        app.state.mailer = await start_mailer(settings)
        keeper = MediaKeeper(providers, store, settings)
        media.configure(settings.public_url, settings.media_secret, settings.media_url_seconds, keeper.wake)
        keeper.start()  # also resumes fetches and erasures an earlier run left
        app.state.media_keeper = keeper
        if on_start is not None:
            await on_start()
        try:
            yield
        finally:
            view.wake_sender = None
            await sender.stop()
            await keeper.stop()
            media.configure(settings.public_url, settings.media_secret, settings.media_url_seconds, None)
            if app.state.mailer is not None:
                await app.state.mailer.stop()
            await app.state.profiles.aclose()
            await providers.aclose()
            # Stopped while still the process's hub: a publish meanwhile records a gap
            # (announced by `stop`) rather than being dropped unseen.
            await hub.stop()
            use_hub(None)
            await graphql.http.persisted.aclose()
            await close_database()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST", "OPTIONS"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        *webhooks.routes,
        *media_routes(store),
        *web.routes,
    ]
    if settings.metrics_token:  # unset: no route, a 404 like any unknown path
        routes.append(Route("/metrics", metrics_endpoint(settings.metrics_token)))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.pending_sockets = view.pending_sockets
    # The hot requests past starlette's middleware and router: GraphQL, then webhooks.
    first = GraphQLFirst(webhooks.WebhooksFirst(app, webhooks.routes), graphql.http, graphql)
    # CORS outermost, so that every answer a browser app can get (a 401, a 413) is readable to it.
    return with_cors(BodyLimit(first, settings.max_body_bytes, settings.body_timeout_seconds,
                               larger={"/media": settings.media_max_bytes}),
                     settings.allowed_origins)
