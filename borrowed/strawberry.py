"""Inside strawberry-graphql 0.341 (borrowed/__init__.py names the version)."""
from __future__ import annotations

# Document validation with strawberry's own rules, for the direct HTTP path.
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document  # noqa: F401


def graphql_core_schema(schema):
    """The graphql-core schema strawberry built (private attribute), for the direct path."""
    return schema._schema


def field_metadata(definition) -> dict:
    """The metadata a strawberry field was declared with, from the graphql-core field
    strawberry built (its "strawberry-definition" extension is internal)."""
    strawberry_field = (definition.extensions or {}).get("strawberry-definition")
    return getattr(strawberry_field, "metadata", None) or {}


def starlette_websocket(websocket):
    """Starlette's socket behind strawberry's ASGI websocket adapter (its `ws`, not API), for
    the scope direct delivery reads; a socket that is no adapter is returned as it is."""
    return getattr(websocket, "ws", websocket)
