"""Inside strawberry-graphql 0.341 (borrowed/__init__.py names the version)."""
from __future__ import annotations

# Document validation with strawberry's own rules, for the direct HTTP path.
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document  # noqa: F401


def graphql_core_schema(schema):
    """The graphql-core schema strawberry built (private attribute), for the direct path."""
    return schema._schema
