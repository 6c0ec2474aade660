"""The example operations in graphql/examples are valid against the live schema."""
from __future__ import annotations

import pathlib

import pytest
from graphql import parse, validate

from schema import schema

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parent.parent / "graphql" / "examples").glob("*.graphql"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_operation_is_valid(path):
    assert validate(schema._schema, parse(path.read_text())) == []
