"""What a partner integration (a CUSTOM channel's token) may read: the one list of the
fields it needs of what its two mutations return. Every other field answers FORBIDDEN
(the field null), and introspection is refused, so no path from a returned Message
reaches a user's name, email or admin flag (SPEC §8)."""
from __future__ import annotations

from typing import Any, Callable

from graphql import GraphQLResolveInfo
from graphql.execution import MiddlewareManager

from borrowed.strawberry import StrawberryGraphQLCoreExecutionContext

import models
from inbox.errors import Forbidden
from server import metrics


def _inbound(message: Any) -> bool:
    # An outbound message's sender is the user who wrote it: a user's name.
    return message.row.direction is models.MessageDirection.INBOUND


def ALL(_: Any) -> bool:
    return True

# Type -> field -> whether this object's field may be read. A type or field missing here
# (a new one included) is refused until it is listed.
READABLE: dict[str, dict[str, Callable[[Any], bool]]] = {
    "Message": {name: ALL for name in ("id", "conversation", "direction", "body", "attachments", "sentAt",
                                       "status", "failureReason", "cursor", "updateCursor")}
    | {"senderName": _inbound},
    "Conversation": {name: ALL for name in ("id", "status", "createdAt", "channel", "contact", "lastMessage",
                                            "lastMessageAt", "messages", "replyWindow")},
    "Contact": {name: ALL for name in ("id", "name", "externalId", "avatarUrl", "channel")},
    "Channel": {name: ALL for name in ("id", "kind", "name", "createdAt")},
    "MessageConnection": {name: ALL for name in ("edges", "pageInfo")},
    "MessageEdge": {name: ALL for name in ("cursor", "node")},
    "PageInfo": {name: ALL for name in ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor")},
    "Attachment": {name: ALL for name in ("kind", "url", "name", "mimeType", "storage", "stored")},
    "ReplyWindow": {name: ALL for name in ("state", "closesAt")},
}
INTROSPECTION = frozenset({"__schema", "__type"})


class PartnerFields:
    """A graphql-core middleware, installed only on a partner's requests (users pay nothing)."""

    def resolve(self, next_, root, info: GraphQLResolveInfo, **args):
        if not readable(info, root):
            metrics.refused("partner_field")
            raise Forbidden(f"a partner integration may not read {info.parent_type.name}.{info.field_name}")
        return next_(root, info, **args)


def readable(info: GraphQLResolveInfo, root: Any) -> bool:
    name, parent = info.field_name, info.parent_type
    if name == "__typename":
        return True
    if parent is info.schema.query_type or parent is info.schema.mutation_type:
        # The root fields authenticate themselves (a partner's token authenticates only its
        # two mutations); the schema's introspection is not for partners.
        return name not in INTROSPECTION
    rule = READABLE.get(parent.name, {}).get(name)
    return rule is not None and rule(root)


PARTNER_MIDDLEWARE = MiddlewareManager(PartnerFields())


class InboxExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Every operation's executor, on the HTTP direct path and strawberry's alike: a
    partner's gets the middleware above. Written for graphql-core 3.3.2 and strawberry
    0.341 (the executor wraps each resolver with its `middleware_manager`); the tests
    of tests/test_partner_tokens.py run both paths."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.context_value, "is_partner", False):
            existing = self.middleware_manager.middlewares if self.middleware_manager else ()
            self.middleware_manager = (MiddlewareManager(*existing, PartnerFields()) if existing
                                       else PARTNER_MIDDLEWARE)
