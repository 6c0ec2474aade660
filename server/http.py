"""GraphQL over HTTP at /graphql: the bearer token first, then the common request (a JSON
POST of one query or mutation whose document parses and validates) executed straight on
graphql-core; anything else goes to strawberry's view, which answers it as it always has.

The direct path does what the view and the schema's extensions do for such a request
(cached parse with the token limit, cached validation with the depth and alias rules, the
cost and the execution budget, contract error codes, 401 for UNAUTHENTICATED, the same
JSON, the same count in the metrics), without their per-request machinery: more than
half of the server's time on a
small query."""
from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qsl, urlencode

from graphql import ExecutionResult, GraphQLError, OperationType, execute
from graphql.validation import specified_rules
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import AddValidationRules, MaxTokensLimiter

from borrowed.strawberry import graphql_core_schema
from inbox.accounts import authenticate
from schema import cost
from schema.documents import DOCUMENTS, Document, PreparedDocuments
from schema.errors import (INTERNAL_MESSAGE, ContractErrors, CountedOperations, refuses_authentication,
                           with_contract_code)

from . import metrics

from .pace import Pace
from .persisted import PersistedQueries, Refusal, persisted_query

log = logging.getLogger("inbox")


def bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def unauthenticated(message: str = "missing or invalid bearer token") -> JSONResponse:
    return JSONResponse({"data": None, "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
                        status_code=401)


def internal_error() -> JSONResponse:
    """What a request gets when it fails before GraphQL runs (the database is down while
    its token is checked): the same masked INTERNAL error as a failing field."""
    return JSONResponse({"data": None, "errors": [{"message": INTERNAL_MESSAGE, "extensions": {"code": "INTERNAL"}}]},
                        status_code=500)


def with_cors(app, origins: tuple[str, ...]):
    """Browser apps on the allowed origins may call the server over HTTP: preflights are
    answered and every response carries Access-Control-Allow-Origin for them; other
    origins get no CORS header, so browsers keep their pages from reading anything.
    The token travels in Authorization, never in a cookie: no credentials mode is needed
    (which is what makes '*' safe to offer). No origins configured: no middleware at all."""
    if not origins:
        return app
    return CORSMiddleware(app, allow_origins=list(origins), allow_methods=["GET", "POST"],
                          allow_headers=["Authorization", "Content-Type"], max_age=600)


class DirectExecution:
    """What the direct path needs of the schema, or None when the schema has anything it
    does not reproduce (another extension, middleware, incremental delivery): then every
    request goes through the view."""

    # CountedOperations: this path counts its operations itself (`_answer`).
    KNOWN = (MaxTokensLimiter, AddValidationRules, PreparedDocuments, cost.ExecutionBudget, CountedOperations,
             ContractErrors)

    def __init__(self, schema, max_tokens: int, rules: tuple) -> None:
        self.graphql_schema = graphql_core_schema(schema)
        self.executor_class = schema.execution_context_class
        self.max_tokens = max_tokens
        self.rules = rules

    @classmethod
    def of(cls, schema) -> "DirectExecution | None":
        extensions = schema.get_extensions()
        if (schema.config.enable_experimental_incremental_execution
                or any(type(extension) not in cls.KNOWN for extension in extensions)):
            return None
        max_tokens = [e.max_token_count for e in extensions if isinstance(e, MaxTokensLimiter)]
        added = tuple(rule for e in extensions if isinstance(e, AddValidationRules) for rule in e.validation_rules)
        return cls(schema, max_tokens[0] if max_tokens else None, (*specified_rules, *added))

    def _prepare(self, query: str) -> Document | None:
        """The document when it parses and validates (the same cache as the view's)."""
        try:
            document = DOCUMENTS.parsed(query, self.max_tokens, self.rules)
        except GraphQLError:
            return None
        return None if DOCUMENTS.validated(self.graphql_schema, document, self.rules) else document

    def operation(self, data: object) -> tuple[Document, dict | None, str | None, OperationType] | None:
        """The prepared document, variables, operation name and type of a request body this
        path answers as the view would; None for anything else."""
        if type(data) is not dict or data.get("extensions") is not None:
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if type(query) is not str or not (variables is None or type(variables) is dict):
            return None
        if not (name is None or type(name) is str):
            return None
        prepared = self._prepare(query)
        if prepared is None:
            return None
        kind = prepared.kind(name)
        if kind is not OperationType.QUERY and kind is not OperationType.MUTATION:
            return None  # a subscription (refused by the view), or no such operation
        return prepared, variables, name, kind

    async def run(self, prepared: Document, variables: dict | None, name: str | None, kind: OperationType,
                  context) -> tuple[dict | None, list[GraphQLError]]:
        """The data and the errors, with their contract codes."""
        settings = context.settings
        refusal = cost.check(self.graphql_schema, prepared.node, name, variables, settings.max_query_nodes,
                             prepared.costs)
        if refusal is not None:
            return None, [with_contract_code(refusal)]
        try:
            result = execute(self.graphql_schema, prepared.node, context_value=context,
                             variable_values=variables, operation_name=name, is_awaitable=optimized_is_awaitable,
                             executor_class=self.executor_class, operation_extensions=None)
            if optimized_is_awaitable(result):
                if kind is OperationType.QUERY:
                    async with cost.budget(settings.query_timeout_seconds):
                        result = await result
                else:  # as the view: a mutation runs to its end (schema/cost.py)
                    result = await result
        except Exception as error:  # as strawberry does: an error of the request, masked
            result = ExecutionResult(None, [error if isinstance(error, GraphQLError)
                                            else GraphQLError(str(error), original_error=error)])
        return result.data, [with_contract_code(error) for error in result.errors or ()]


# A request's share of its owner's pace: one, and one more for each 64 KiB of its body
# (parsing, decoding and validating a large document costs in proportion).
COST_BYTES = 64 * 1024


def _cost(content_length: bytes | str | None) -> int:
    """A request's share of its owner's pace, from its Content-Length header (as sent, or as
    starlette decodes it; None when it has none)."""
    return 1 + int(content_length) // COST_BYTES if content_length is not None and content_length.isdigit() else 1


class GraphQLHTTP:
    """/graphql over HTTP: 401 on a missing or bad token (the browser's GraphiQL page
    needs none), then the direct path or the view."""

    def __init__(self, view) -> None:
        self.view = view
        self.direct = DirectExecution.of(view.schema)
        self.persisted = PersistedQueries(view.settings.broadcast_url, view.settings.broadcast_namespace)
        self.pace = Pace()
        if self.direct is None:
            log.warning("GraphQL over HTTP: every request goes through strawberry's view")

    async def __call__(self, scope, receive, send) -> None:
        method = scope["method"]
        if method == "POST":
            authorization = content_type = accept = length = None
            for key, value in scope["headers"]:
                if key == b"authorization" and authorization is None:
                    authorization = value.decode("latin-1")
                elif key == b"content-type" and content_type is None:
                    content_type = value
                elif key == b"accept" and accept is None:
                    accept = value
                elif key == b"content-length" and length is None:
                    length = value
            principal = await self._principal(authorization, scope, receive, send, _cost(length))
            if principal is None:
                return
            if _json(content_type):
                body = await _body(receive)
                if body is None:
                    return  # the client left
                data = _decoded(body)
                if b"persistedQuery" in body and type(data) is dict and persisted_query(data) is not None:
                    data = await self.persisted.resolve(data, self._valid)
                    if isinstance(data, Refusal):
                        await _refuse(data, scope, receive, send)
                        return
                    body = json.dumps(data).encode()
                if self.direct is not None and _plain_answer(accept) and await self._answer(scope, receive, send,
                                                                                            data):
                    return
                receive = replaying(body, receive)
        elif method != "OPTIONS":
            request = Request(scope, receive)
            wants_ide = (method == "GET" and "text/html" in request.headers.get("accept", "")
                         and "query" not in request.query_params and "extensions" not in request.query_params)
            if not wants_ide:
                cost = _cost(request.headers.get("content-length"))
                if await self._principal(request.headers.get("authorization"), scope, receive, send, cost) is None:
                    return
                if method == "GET" and b"persistedQuery" in scope["query_string"]:
                    if not await self._resolve_get(scope, receive, send):
                        return
        await self.view(scope, receive, send)

    def _valid(self, query: str) -> bool:
        """Whether a document may be kept as a persisted query: it parses and validates."""
        return self.direct is None or self.direct._prepare(query) is not None

    async def _resolve_get(self, scope, receive, send) -> bool:
        """A GET naming a persisted query becomes the GET of its document; False once refused."""
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        extensions = _decoded(params.get("extensions", "").encode())
        if type(extensions) is not dict or persisted_query({"extensions": extensions}) is None:
            return True
        params["extensions"] = extensions
        resolved = await self.persisted.resolve(params, self._valid)
        if isinstance(resolved, Refusal):
            await _refuse(resolved, scope, receive, send)
            return False
        if "extensions" in resolved:
            resolved["extensions"] = json.dumps(resolved["extensions"])
        scope["query_string"] = urlencode(resolved).encode()
        return True

    async def _principal(self, authorization: str | None, scope, receive, send, cost: int):
        """The request's principal, also kept in its scope; None once refused. `cost`: the
        request's share of its owner's pace (`_cost`)."""
        try:
            principal = await authenticate(bearer(authorization))
        except Exception:
            log.exception("authenticating a request failed")
            metrics.answered("unknown", code="INTERNAL")
            await internal_error()(scope, receive, send)
            return None
        if principal is None:
            metrics.answered("unknown", code="UNAUTHENTICATED")
            await unauthenticated()(scope, receive, send)
            return None
        scope.setdefault("state", {})["principal"] = principal
        wait = self.pace.wait((type(principal).__name__, principal.id),
                              self.view.settings.http_requests_per_second_per_user, cost)
        if wait:
            # One user's (or partner's) flood of valid requests takes its pace of the
            # process, not all of it; it waits, nothing is refused (issue 11).
            metrics.refused("http_rate")
            await asyncio.sleep(wait)
        return principal

    async def _answer(self, scope, receive, send, data: object) -> bool:
        """Answers the request (its decoded JSON body) and returns True, or returns False for
        the view to answer it."""
        operation = self.direct.operation(data)
        if operation is None:
            return False
        request = Request(scope, receive)
        sub_response = await self.view.get_sub_response(request)
        context = await self.view.get_context(request, sub_response)
        data, errors = await self.direct.run(*operation, context)
        metrics.answered(operation[3].value, errors)
        # As the view: "errors" only when there are some, and 401 for UNAUTHENTICATED.
        answer = {"data": data, "errors": [error.formatted for error in errors]} if errors else {"data": data}
        status = 401 if refuses_authentication(errors) else (sub_response.status_code or 200)
        encoded = json.dumps(answer, separators=(",", ":")).encode()
        # As the view's response: its own two headers, then any the resolvers set.
        headers = [(b"content-length", str(len(encoded)).encode()), (b"content-type", b"application/json"),
                   *sub_response.headers.raw]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})
        if sub_response.background is not None:
            await sub_response.background()
        return True


class GraphQLFirst:
    """POST /graphql straight to GraphQLHTTP, and websockets at /graphql straight to their
    endpoint, past starlette's middleware and router: a tenth of the server's time on a
    small query, and ~3 KB of stack frames held by every websocket for its lifetime. The
    same answers (the route takes GET, POST and OPTIONS to the same endpoint; an
    exception is a 500 from uvicorn instead)."""

    def __init__(self, app, graphql: GraphQLHTTP, websockets) -> None:
        self.app = app
        self.graphql = graphql
        self.websockets = websockets

    def __getattr__(self, name: str):
        return getattr(self.app, name)  # starlette's `state`, `routes`...: this is its stand-in

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind != "lifespan" and scope["path"] == "/graphql" and not scope.get("root_path"):
            if kind == "http" and scope["method"] == "POST":
                await self.graphql(scope, receive, send)
                return
            if kind == "websocket":
                await self.websockets(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.partition(b";")[0].strip().lower() == b"application/json"


def _plain_answer(accept: bytes | None) -> bool:
    """No streamed answer asked for (multipart or server-sent events)."""
    return accept is None or not (b"multipart" in accept.lower() or b"event-stream" in accept.lower())


def _decoded(body: bytes) -> object:
    """A JSON body decoded, or None when it is not JSON (the view answers that)."""
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _refuse(refusal: Refusal, scope, receive, send) -> None:
    metrics.answered("unknown", code=refusal.code)  # an operation, though none ran
    await JSONResponse(refusal.body(), status_code=refusal.status, headers=refusal.headers)(scope, receive, send)


async def _body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive):
    """An ASGI `receive` that gives the body read already, then what `receive` gives."""
    delivered = False

    async def replay():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
