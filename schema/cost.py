"""The bounds of one GraphQL operation (SPEC §8): its static cost, checked before it
runs on every path, and the execution budget of a query.

The cost is the number of objects the operation can return: every object a field may
return counts once per parent object, lists at their bound. A connection counts the
items of its page (`first`/`last`, their default when absent, at most 100): its edges,
their nodes and its page info are the items' envelope and count nothing more. Other
lists count at the cap their field declares (`max_items`), which its resolver enforces.
Scalars and introspection are free. A subscription's cost is what each event returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import AsyncIterator

from graphql import (BooleanValueNode, DocumentNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode,
                     GraphQLError, GraphQLField, GraphQLList, GraphQLNamedType, GraphQLObjectType, GraphQLSchema,
                     InlineFragmentNode, IntValueNode, NullValueNode, OperationDefinitionNode, SelectionSetNode,
                     VariableNode, Visitor, get_named_type, get_nullable_type, is_abstract_type,
                     is_composite_type, visit)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from borrowed.strawberry import field_metadata
from inbox.sections import MAX_PAGE
from server.metrics import refused

# The field metadata that declares how many items an unpaginated list returns at most.
MAX_ITEMS = "max_items"

TOO_COSTLY = "QUERY_TOO_COSTLY"
TIMED_OUT = "QUERY_TIMEOUT"


def max_items(count: int) -> dict:
    """Metadata for `strawberry.field` of a list its resolver cuts at `count` items."""
    return {MAX_ITEMS: count}


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict
    defaults: dict
    memo: dict = field(default_factory=dict)

    def value(self, node) -> object:
        """An argument's value: a literal, or a variable's (its default when not given)."""
        if isinstance(node, VariableNode):
            name = node.name.value
            return self.variables[name] if name in self.variables else self.value(self.defaults.get(name))
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, BooleanValueNode):
            return node.value
        return None  # null, absent, or a value of another type (refused when the operation runs)

    def included(self, node) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name in ("skip", "include"):
                condition = next((self.value(a.value) for a in directive.arguments if a.name.value == "if"), None)
                if condition is (name == "skip"):
                    return False
        return True

    def collect(self, runtime: GraphQLObjectType, selection_sets, into: dict[str, list[FieldNode]],
                seen: set[str]) -> None:
        """The fields of these selection sets for an object of type `runtime`, grouped by
        response key (fields under one key merge into one, as execution merges them)."""
        for selection_set in selection_sets:
            for selection in selection_set.selections:
                if not self.included(selection):
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    into.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if self.applies(selection.type_condition, runtime):
                        self.collect(runtime, [selection.selection_set], into, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is not None and name not in seen and self.applies(fragment.type_condition, runtime):
                        seen.add(name)
                        self.collect(runtime, [fragment.selection_set], into, seen)

    def applies(self, condition, runtime: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        conditional = self.schema.get_type(condition.name.value)
        if conditional is runtime:
            return True
        return is_abstract_type(conditional) and self.schema.is_sub_type(conditional, runtime)

    def cost(self, parent: GraphQLNamedType, selection_sets: tuple[SelectionSetNode, ...], page: int = 0) -> int:
        """What one object of type `parent` costs with these selections; `page` is the page
        size when `parent` is a connection."""
        key = (parent.name, tuple(map(id, selection_sets)), page)
        if key not in self.memo:
            runtimes = self.schema.get_possible_types(parent) if is_abstract_type(parent) else [parent]
            self.memo[key] = max((self._object_cost(runtime, selection_sets, page) for runtime in runtimes),
                                 default=0)
        return self.memo[key]

    def _object_cost(self, runtime: GraphQLObjectType, selection_sets, page: int) -> int:
        fields: dict[str, list[FieldNode]] = {}
        self.collect(runtime, selection_sets, fields, set())
        total = 0
        for nodes in fields.values():
            name = nodes[0].name.value
            definition = runtime.fields.get(name)
            if definition is None or name.startswith("__") or not is_composite_type(get_named_type(definition.type)):
                continue
            counted, each, inner_page = self._items(runtime, name, definition, nodes[0], page)
            if each:
                inner = tuple(node.selection_set for node in nodes if node.selection_set)
                total += counted + each * self.cost(get_named_type(definition.type), inner, inner_page)
        return total

    def _items(self, parent: GraphQLObjectType, name: str, definition: GraphQLField, node: FieldNode,
               page: int) -> tuple[int, int, int]:
        """(objects counted, objects the selection below applies to, their page size)."""
        named = get_named_type(definition.type)
        if _is_connection(named):
            size = self.page_size(definition, node)
            return size, 1, size
        if _is_connection(parent) and name == "edges":
            return 0, page, 0  # the page's items, counted by the connection
        if _is_edge(parent) and name == "node" or named.name == "PageInfo":
            return 0, 1, 0
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            cap = field_metadata(definition).get(MAX_ITEMS, MAX_PAGE)
            return cap, cap, 0
        return 1, 1, 0

    def page_size(self, definition: GraphQLField, node: FieldNode) -> int:
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        sizes = []
        for name in ("first", "last"):
            if name not in definition.args:
                continue
            value = self.value(given[name]) if name in given else definition.args[name].default_value
            if isinstance(value, int) and not isinstance(value, bool) and value is not Undefined:
                sizes.append(min(max(value, 0), MAX_PAGE))
        return min(sizes) if sizes else MAX_PAGE  # absent or null with no default: the server's cap


def _is_connection(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and "edges" in named.fields and "pageInfo" in named.fields


def _is_edge(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and "node" in named.fields and "cursor" in named.fields


def operation_of(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


def cost(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict | None) -> int:
    """The cost of the operation (0 when the document names no such operation: execution
    refuses it)."""
    operation = operation_of(document, operation_name)
    root = schema.get_root_type(operation.operation) if operation is not None else None
    if root is None:
        return 0
    walk = _Walk(schema, {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)},
                 variables if isinstance(variables, dict) else {},
                 {d.variable.name.value: d.default_value or NullValueNode()
                  for d in operation.variable_definitions or ()})
    return walk.cost(root, (operation.selection_set,))


class Known:
    """The costs found for one document, by operation name and the values of the variables
    that can decide them (page sizes, @skip and @include), so that a document asked
    again with the same pages is not walked again."""

    KEPT = 64
    __slots__ = ("names", "costs")

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.costs: dict[tuple, int] = {}

    def key(self, document: DocumentNode, operation_name: str | None, variables: dict | None) -> tuple | None:
        if self.names is None:
            self.names = _deciding_variables(document)
        given = variables if isinstance(variables, dict) else {}
        key = (operation_name, tuple(_decisive(given.get(name, _ABSENT)) for name in self.names))
        try:
            hash(key)
        except TypeError:
            return None  # a list or object where a page size goes: refused when it runs
        return key


_ABSENT = object()


def _decisive(value):
    """A variable's value as the cost sees it: page sizes beyond the cap are the cap."""
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), MAX_PAGE)
    return value


def _deciding_variables(document: DocumentNode) -> tuple[str, ...]:
    """The variables given as `first`, `last` or a directive's `if` anywhere in it."""
    names: set[str] = set()

    class Finder(Visitor):
        def enter_argument(self, node, *_):
            if node.name.value in ("first", "last", "if") and isinstance(node.value, VariableNode):
                names.add(node.value.name.value)

    visit(document, Finder())
    return tuple(sorted(names))


def too_costly(found: int, limit: int) -> GraphQLError:
    return GraphQLError(f"this operation can return {found} objects, more than the {limit} allowed: "
                        "ask for smaller pages or fewer nested lists",
                        extensions={"code": "BAD_USER_INPUT", "reason": TOO_COSTLY, "cost": found,
                                    "maxCost": limit})


def check(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict | None,
          limit: int, known: Known | None = None) -> GraphQLError | None:
    """The refusal when the operation costs more than `limit`, else None. `known`: the
    costs found earlier for this document."""
    key = known.key(document, operation_name, variables) if known is not None else None
    found = known.costs.get(key) if key is not None else None
    if found is None:
        found = cost(schema, document, operation_name, variables)
        if key is not None:
            if len(known.costs) >= Known.KEPT:
                known.costs.clear()
            known.costs[key] = found
    if found <= limit:
        return None
    refused("query_cost")
    return too_costly(found, limit)


class QueryTimeout(GraphQLError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the query ran out of its {seconds:g} s budget: ask for less",
                         extensions={"code": "BAD_USER_INPUT", "reason": TIMED_OUT})


@contextlib.asynccontextmanager
async def budget(seconds: float):
    """Cancels what runs inside after `seconds` and raises QueryTimeout instead.

    Not asyncio.timeout: on Python 3.11 a timer that fires while the block is finishing
    leaves its cancellation pending on the task, to strike at its next await (the
    response's send); here a late cancellation is taken back before leaving."""
    task = asyncio.current_task()
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    # An empty context: a cancelled timer stays in the loop's heap until it is due, and
    # with the request's context it would keep the request's objects (its document) alive.
    timer = asyncio.get_running_loop().call_later(seconds, expire, context=contextvars.Context())
    try:
        yield
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            refused("query_timeout")
            raise QueryTimeout(seconds) from None
        raise
    finally:
        timer.cancel()
    if fired:  # it fired as the block finished: its cancellation waits for the next await
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if task.uncancel() > 0:
                raise


class ExecutionBudget(SchemaExtension):
    """INBOX_QUERY_TIMEOUT_SECONDS for queries on strawberry's paths. Mutations run to
    their end: cancelled between their commit and their publish, they would lose a live
    event; their work is one domain action, and what they return is bounded by the cost."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        if context.operation_type is OperationType.QUERY:
            async with budget(context.context.settings.query_timeout_seconds):
                yield
        else:
            yield
