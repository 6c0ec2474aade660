"""Parsed and validated documents by query text: one cache for every path (the HTTP
direct path, strawberry's view, websockets), bounded in bytes.

strawberry's ParserCache and ValidationCache keep 512 documents of any size, and a
parsed document holds its whole text: 512 queries padded to a megabyte each would stay
in memory. Here a text over LONGEST_CACHED characters is never kept, and the cache
holds at most CACHE_BYTES by an estimate of each entry's size (its text, and what its
parsed tokens and nodes take: about TOKEN_BYTES per token, measured)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode, OperationType, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from . import cost

LONGEST_CACHED = 16_384
CACHE_BYTES = 32 * 1024 * 1024
# Measured with tracemalloc on graphql-core 3.3: a parsed document with locations takes
# ~385 bytes per token (tokens, nodes and locations).
TOKEN_BYTES = 400


class Document:
    """A parsed document, its validation errors once validated, and the costs found for
    its operations (schema/cost.py)."""

    __slots__ = ("node", "errors", "operations", "costs", "size")

    def __init__(self, node: DocumentNode, size: int) -> None:
        self.node = node
        self.errors: list[GraphQLError] | None = None
        # Each operation's type by name (None: an anonymous one).
        self.operations: dict[str | None, OperationType] = {
            (definition.name.value if definition.name else None): definition.operation
            for definition in node.definitions if isinstance(definition, OperationDefinitionNode)}
        self.costs = cost.Known()
        self.size = size

    def kind(self, name: str | None) -> OperationType | None:
        """The type of the named operation (None: the only one), None when there is no such one."""
        if name is not None:
            return self.operations.get(name)
        return next(iter(self.operations.values())) if len(self.operations) == 1 else None


class Documents:
    """An LRU of documents by (query text, token limit, validation rules)."""

    def __init__(self, max_bytes: int = CACHE_BYTES, longest: int = LONGEST_CACHED) -> None:
        self.max_bytes = max_bytes
        self.longest = longest
        self.bytes = 0
        self._entries: OrderedDict[tuple, Document] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def parsed(self, query: str, max_tokens: int | None, rules: tuple) -> Document:
        """The document of `query`, from the cache or parsed now (GraphQLError when it
        does not parse; that is not kept)."""
        key = (query, max_tokens, rules)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        node = parse(query, max_tokens=max_tokens)
        document = Document(node, len(query) + TOKEN_BYTES * _tokens(node))
        if len(query) <= self.longest and document.size <= self.max_bytes // 16:
            self._entries[key] = document
            self.bytes += document.size
            while self.bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped.size
        return document

    def validated(self, schema: GraphQLSchema, document: Document, rules: tuple) -> list[GraphQLError]:
        if document.errors is None:
            document.errors = validate_document(schema, document.node, rules)
        return document.errors

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


def _tokens(node: DocumentNode) -> int:
    count, token = 0, node.loc.start_token if node.loc else None
    while token is not None:
        count += 1
        token = token.next
    return count


DOCUMENTS = Documents()


class PreparedDocuments(SchemaExtension):
    """strawberry's parse and validation steps through DOCUMENTS, then the operation's
    cost (refused over INBOX_MAX_QUERY_NODES: nothing runs). A document that does not
    parse is left to strawberry, which reports the error as it always does."""

    document: Document | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            try:
                self.document = DOCUMENTS.parsed(context.query, context.parse_options.get("max_tokens"),
                                                 tuple(context.validation_rules))
                context.graphql_document = self.document.node
            except GraphQLError:
                pass
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.document is not None and context.pre_execution_errors is None:
            # A fresh list: strawberry's error processing may extend it.
            errors = list(DOCUMENTS.validated(context.schema._schema, self.document, tuple(context.validation_rules)))
            if not errors:
                refusal = cost.check(context.schema._schema, self.document.node, context.operation_name,
                                     context.variables, context.context.settings.max_query_nodes,
                                     self.document.costs)
                errors = [refusal] if refusal is not None else errors
            context.pre_execution_errors = errors
        yield
