"""Every String a client sends refuses the NUL character: PostgreSQL's text cannot hold
it, so a name, body or search term with one failed inside the database (INTERNAL)
instead of being refused up front (BAD_USER_INPUT).

One place for every String argument and input field, on every path (HTTP, websockets,
literals and variables): graphql-core 3.3.2's built-in String scalar coerces through
`coerce_input_value` (variables; `parse_value` is its deprecated alias) and
`coerce_input_literal` (literals), both wrapped here. GraphQL forbids redefining the
built-in scalar in a schema, so strawberry cannot replace it."""
from __future__ import annotations

from graphql import GraphQLError, GraphQLString

NUL_REFUSED = "String cannot hold the NUL character (\\u0000)"

_value = GraphQLString.coerce_input_value
_literal = GraphQLString.coerce_input_literal


def _refusing_nul(text: str, node=None) -> str:
    if "\x00" in text:
        raise GraphQLError(NUL_REFUSED, node)
    return text


def coerce_value(value) -> str:
    return _refusing_nul(_value(value))


def coerce_literal(node, variables=None) -> str:
    return _refusing_nul(_literal(node, variables), node)


def apply() -> None:
    GraphQLString.coerce_input_value = GraphQLString.parse_value = coerce_value
    GraphQLString.coerce_input_literal = coerce_literal
