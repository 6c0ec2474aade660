"""Parsed and validated documents by query text: one cache for every path (the HTTP
direct path, strawberry's view, websockets), bounded in bytes.

strawberry's ParserCache and ValidationCache keep 512 documents of any size, and a
parsed document holds its whole text: 512 queries padded to a megabyte each would stay
in memory. Here a long text is made compact first (its padding collapsed), a text still
over LONGEST_CACHED characters is never kept, and the cache
holds at most CACHE_BYTES by an estimate of each entry's size (its text, and what its
parsed tokens and nodes take: about TOKEN_BYTES per token, measured)."""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Iterator

from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode, OperationType, parse
from strawberry.extensions import SchemaExtension

from borrowed.strawberry import graphql_core_schema, validate_document

from . import cost

LONGEST_CACHED = 16_384
CACHE_BYTES = 32 * 1024 * 1024
# Measured with tracemalloc on graphql-core 3.3: a parsed document with locations takes
# ~385 bytes per token (tokens, nodes and locations).
TOKEN_BYTES = 400


# What the lexer reads whole: block strings, strings, comments, and runs of insignificant
# characters.
_LEXED = re.compile(r'"""(?:[^"\\]+|\\"""|\\|"(?!""))*"""|"[^"\\\n\r]*(?:\\.[^"\\\n\r]*)*"|#[^\n\r]*'
                    r'|[ \t\n\r,\ufeff]{2,}')


def compact(query: str, max_tokens: int | None) -> str:
    """The same document, its padding gone, for a long text: graphql-core's lexer reads
    whitespace and comments one character at a time in Python (~0.2 s a megabyte, holding
    the event loop), the regular expression in C. A run of spaces, commas and line ends
    outside strings becomes one space (one line end when it held one: it may end a
    comment), and a comment an empty one (still a token for the token limit). Only what
    the parser can reach is rewritten: past the token limit (each match is a token or
    lies between two) it stops."""
    if len(query) <= LONGEST_CACHED:
        return query
    pieces, end, budget = [], 0, 4 * (max_tokens or 1000)
    for match in _LEXED.finditer(query):
        budget -= 1
        if budget < 0:
            break
        start, stop = match.span()
        first = query[start]
        if first == "#":
            pieces += [query[end:start], "#"]
            end = stop
        elif first != '"':
            line_end = query.find("\n", start, stop) != -1 or query.find("\r", start, stop) != -1
            pieces += [query[end:start], "\n" if line_end else " "]
            end = stop
    pieces.append(query[end:])
    return "".join(pieces)


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
        query = compact(query, max_tokens)
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
            max_tokens = context.parse_options.get("max_tokens")
            # What strawberry parses itself when this does not parse: the same, compact.
            context.query = compact(context.query, max_tokens)
            try:
                self.document = DOCUMENTS.parsed(context.query, max_tokens, tuple(context.validation_rules))
                context.graphql_document = self.document.node
            except GraphQLError:
                pass
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.document is not None and context.pre_execution_errors is None:
            # A fresh list: strawberry's error processing may extend it.
            errors = list(DOCUMENTS.validated(graphql_core_schema(context.schema), self.document, tuple(context.validation_rules)))
            if not errors:
                refusal = cost.check(graphql_core_schema(context.schema), self.document.node, context.operation_name,
                                     context.variables, context.context.settings.max_query_nodes,
                                     self.document.costs)
                errors = [refusal] if refusal is not None else errors
            context.pre_execution_errors = errors
        yield
