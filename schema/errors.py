"""Every error leaves with a contract code: expected ones keep theirs, document and
input errors become BAD_USER_INPUT, anything else is masked as INTERNAL.

Strawberry reaches errors through `Schema.process_errors` on some paths and through
extensions on others (subscription events), so both apply the same in-place rule.
Every operation strawberry runs is then counted with its code (CountedOperations)."""
from __future__ import annotations

import logging

import strawberry
from graphql.error import GraphQLError
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from inbox.errors import InboxError
from server import metrics

log = logging.getLogger("inbox.errors")

INTERNAL_MESSAGE = "Internal server error"


def with_contract_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    extensions = dict(error.extensions or {})
    if isinstance(original, InboxError):
        extensions["code"] = original.code
    elif not error.path and (original is None or isinstance(original, GraphQLError)):
        # Errors of the request itself, before any field runs: parse and validation errors,
        # limits, variables of the wrong type or enum (graphql-core wraps the coercion error).
        # A field's error without an InboxError (a null for a non-null field...) is ours: INTERNAL.
        extensions.setdefault("code", "BAD_USER_INPUT")
    else:
        log.error("internal error at %s", error.path, exc_info=original)
        error.message = INTERNAL_MESSAGE
        error.original_error = None
        extensions = {"code": "INTERNAL"}
    error.extensions = extensions
    return error


def refuses_authentication(errors: list[GraphQLError]) -> bool:
    """Whether an HTTP answer with these (processed) errors is a 401."""
    return any(error.extensions.get("code") == "UNAUTHENTICATED" for error in errors)


class ContractErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(error_message=INTERNAL_MESSAGE)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = [with_contract_code(error) for error in errors]
        if refuses_authentication(processed):
            response = getattr(self.execution_context.context, "response", None)
            if isinstance(response, Response):  # HTTP, not a websocket
                response.status_code = 401
        return processed


class InboxSchema(strawberry.Schema):
    async def execute(self, *args, allowed_operation_types=None, **kwargs):
        # Plain HTTP execution: subscriptions are served over websockets (SPEC §1); run
        # here they would only resolve to null. Refused, the client gets BAD_USER_INPUT.
        if allowed_operation_types is not None:
            allowed_operation_types = set(allowed_operation_types) - {OperationType.SUBSCRIPTION}
        return await super().execute(*args, allowed_operation_types=allowed_operation_types, **kwargs)

    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        # Expected errors are answers, not incidents: only unexpected ones are logged.
        for error in errors:
            with_contract_code(error)


class CountedOperations(SchemaExtension):
    """Counts each operation strawberry runs once (server/metrics.py `answered`), over HTTP
    and websockets: at its first result (an answer, a refusal, a subscription's first
    event) or when it ends without one (a subscription handed over to direct delivery).
    Its errors have their contract codes by then: `process_errors` sets them in place."""

    counted = False

    def _count(self, errors, code: str | None = None) -> None:
        if self.counted:
            return
        self.counted = True
        try:
            kind = self.execution_context.operation_type.value
        except Exception:  # no document, or it names no such operation
            kind = "unknown"
        metrics.answered(kind, errors, code=code)

    def on_operation(self):
        try:
            yield
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
            raise  # answered by the transport (over HTTP: InboxGraphQL.run counts it)
        except Exception as error:  # strawberry answers it as an error of the request
            self._count([error], code="BAD_USER_INPUT" if isinstance(error, GraphQLError) else "INTERNAL")
            raise
        except BaseException:  # the operation task ends (Detached, cancelled, closed)
            self._count(self._errors())
            raise
        self._count(self._errors())

    def on_execute(self):
        if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
            metrics.subscription_started()
        yield

    def on_stream_result(self, result):
        if not self.counted:
            self._count(getattr(result, "errors", None))
        yield

    def _errors(self):
        result = self.execution_context.result
        return getattr(result, "errors", None) if result is not None else self.execution_context.pre_execution_errors
