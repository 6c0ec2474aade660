"""Every error leaves with a contract code: expected ones keep theirs, document and
input errors become BAD_USER_INPUT, anything else is masked as INTERNAL."""
from __future__ import annotations

import logging

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from inbox.errors import InboxError

log = logging.getLogger("inbox.errors")


class ContractErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(error_message="Internal server error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [_with_code(error) for error in errors]


def _with_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, InboxError):
        error.extensions = {**(error.extensions or {}), "code": original.code}
        return error
    if original is None:
        # Parse and validation errors, limits, variables of the wrong type or enum.
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        return error
    log.error("internal error at %s", error.path, exc_info=original)
    return GraphQLError("Internal server error", nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions={"code": "INTERNAL"})
