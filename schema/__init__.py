"""The GraphQL schema: Query, Mutation and Subscription of the contract, with the
limits of SPEC §8 and contract error codes."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from borrowed import graphql_string
from borrowed.graphql_core import apply as _flat_subscription_memory
from inbox import validation
from resolvers import crm as crm_resolvers, mutations, notifications as notification_resolvers, queries
from resolvers import subscriptions as subscription_resolvers

from . import crm, notifications as notification_types, types
from .cost import ExecutionBudget, max_items
from .documents import PreparedDocuments
from .errors import ContractErrors, CountedOperations, InboxSchema
from .partner import InboxExecutionContext

_flat_subscription_memory()
graphql_string.apply()


@strawberry.type
class Query:
    node: Optional[types.Node] = strawberry.field(resolver=queries.node)
    me: types.User = strawberry.field(resolver=queries.me)
    users: list[types.User] = strawberry.field(
        resolver=queries.users, description=f"The company's users by name; at most {validation.MAX_USERS}.",
        metadata=max_items(validation.MAX_USERS))
    assignable_users: list[types.User] = strawberry.field(
        resolver=queries.assignable_users,
        description="Users to whom this conversation may be assigned now: available, with access to its channel "
                    f"(at most {validation.MAX_USERS}).",
        metadata=max_items(validation.MAX_USERS))
    channels: list[types.Channel] = strawberry.field(
        resolver=queries.channels,
        description="Channels the viewer has access to (admins: every channel of the company), by name; at most "
                    f"{validation.MAX_CHANNELS}.",
        metadata=max_items(validation.MAX_CHANNELS))
    inbox: types.ConversationConnection = strawberry.field(
        resolver=queries.inbox, description="One section of the inbox, most recent activity first.")
    inbox_counts: types.InboxCounts = strawberry.field(resolver=queries.inbox_counts)
    conversation: Optional[types.Conversation] = strawberry.field(resolver=queries.conversation)
    persons: crm.PersonConnection = strawberry.field(
        resolver=crm_resolvers.persons,
        description="The company's persons, newest first; `search` matches name, email or phone.")
    notification_settings: notification_types.NotificationSettings = strawberry.field(
        resolver=notification_resolvers.notification_settings)
    notifications: notification_types.NotificationConnection = strawberry.field(
        resolver=notification_resolvers.notifications_page,
        description="The viewer's notifications, newest first.")


@strawberry.type
class Mutation:
    assign_conversation: types.Conversation = strawberry.mutation(resolver=mutations.assign_conversation)
    unassign_conversation: types.Conversation = strawberry.mutation(resolver=mutations.unassign_conversation)
    close_conversation: types.Conversation = strawberry.mutation(resolver=mutations.close_conversation)
    reopen_conversation: types.Conversation = strawberry.mutation(resolver=mutations.reopen_conversation)
    delete_conversation: strawberry.ID = strawberry.mutation(
        resolver=mutations.delete_conversation,
        description="Only the channel's installer. Returns the deleted conversation's id.")
    mark_conversation_read: types.Conversation = strawberry.mutation(resolver=mutations.mark_conversation_read)
    set_availability: types.User = strawberry.mutation(resolver=mutations.set_availability)
    create_user: types.CreateUserPayload = strawberry.mutation(resolver=mutations.create_user,
                                                               description="Admins only.")
    install_channel: types.InstallChannelPayload = strawberry.mutation(
        resolver=mutations.install_channel, description="Messaging settings: admins only.")
    share_channel: types.Channel = strawberry.mutation(resolver=mutations.share_channel)
    unshare_channel: types.Channel = strawberry.mutation(resolver=mutations.unshare_channel)
    uninstall_channel: strawberry.ID = strawberry.mutation(resolver=mutations.uninstall_channel)
    send_message: types.Message = strawberry.mutation(
        resolver=mutations.send_message,
        description="Reply to the contact through the messaging app. A retry with the same clientMessageId (by "
                    "the same user) returns the first message and sends nothing again. Give a body, attachments, "
                    "or both; or, on WhatsApp, a template. A free-text reply while `replyWindow.state` is CLOSED "
                    "is FORBIDDEN (extensions.reason REPLY_WINDOW_CLOSED) and stores nothing.")
    link_conversation: crm.ConversationLink = strawberry.mutation(
        resolver=crm_resolvers.link_conversation,
        description="Links a conversation to a person, lead or deal (an existing one, or one made now) and "
                    "writes a note there at once; later messages go into notes there too.")
    unlink_conversation: strawberry.ID = strawberry.mutation(
        resolver=crm_resolvers.unlink_conversation,
        description="Stops further notes; the notes written so far stay. Returns the link's id.")
    create_person: crm.Person = strawberry.mutation(resolver=crm_resolvers.create_person)
    create_lead: crm.Lead = strawberry.mutation(resolver=crm_resolvers.create_lead)
    create_deal: crm.Deal = strawberry.mutation(resolver=crm_resolvers.create_deal)
    update_note: crm.Note = strawberry.mutation(
        resolver=crm_resolvers.update_note,
        description="A note the user edited is never written by the inbox again: the next message opens a new "
                    "one.")
    delete_note: strawberry.ID = strawberry.mutation(resolver=crm_resolvers.delete_note)
    update_notification_settings: notification_types.NotificationSettings = strawberry.mutation(
        resolver=notification_resolvers.update_notification_settings,
        description="Changes the toggles given; the others stay as they are.")
    mark_notifications_read: int = strawberry.mutation(
        resolver=notification_resolvers.mark_notifications_read,
        description="Marks the given notifications read (all of the viewer's when ids is null); returns how many "
                    "changed.")
    update_channel_message_status: types.Message = strawberry.mutation(
        resolver=mutations.update_channel_message_status,
        description="Partner integrations: the delivery status of an outbound message the partner was given.")
    receive_channel_message: types.Message = strawberry.mutation(
        resolver=mutations.receive_channel_message,
        description="Partner integrations: authenticated by a CUSTOM channel's token, not a user's. A repeated "
                    "externalMessageId returns the stored message unchanged.")


@strawberry.type
class Subscription:
    message_added: types.Message = strawberry.subscription(
        resolver=subscription_resolvers.message_added,
        description="New messages, inbound and outbound, in conversations the viewer can see (one conversation "
                    "when conversationId is given). With `after`, the server first replays every persisted "
                    "message after that cursor, in order, then streams live ones, with no gap and no duplicate.")
    message_updated: types.Message = strawberry.subscription(
        resolver=subscription_resolvers.message_updated,
        description="Changes to existing messages the viewer can see: delivery status (SENT, DELIVERED, READ, "
                    "FAILED). With `after` (an `updateCursor`), every message changed since then is replayed once "
                    "in its current state, in order of its latest change, then live ones: no change missed.")
    conversation_changed: types.ConversationEvent = strawberry.subscription(
        resolver=subscription_resolvers.conversation_changed,
        description="Every change to conversations the viewer can see (one conversation when conversationId "
                    "is given). With `after` (a ConversationEvent `cursor`), every event since then that the "
                    "viewer may see is replayed in order, then live ones: no gap, no duplicate, across server "
                    "processes.")
    notification_received: notification_types.Notification = strawberry.subscription(
        resolver=subscription_resolvers.notification_received,
        description="The viewer's notifications whose desktop toggle is on; with `after`, those since that "
                    "cursor first, in order.")


MAX_DEPTH = 12
MAX_TOKENS = 1000
MAX_ALIASES = 30

# The depth and alias rules of QueryDepthLimiter / MaxAliasesLimiter, built once:
# those extensions build new rule classes per request, which no validation cache
# can recognise, so every request was validated anew (two thirds of a small query).
LIMIT_RULES = [depth_rule(MAX_DEPTH, should_ignore=None), aliases_rule(MAX_ALIASES)]

schema = InboxSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[types.User, types.Channel, types.Contact, types.Conversation, types.Message, types.ConversationEvent,
           crm.Person, crm.Lead, crm.Deal, crm.Note, crm.ConversationLink, notification_types.Notification],
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(LIMIT_RULES),
        # Parse and validation caches bounded in bytes, then the cost (schema/cost.py).
        PreparedDocuments,
        ExecutionBudget,
        CountedOperations,
        ContractErrors,
    ],
    execution_context_class=InboxExecutionContext,
)
