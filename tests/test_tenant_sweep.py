"""The tenant sweep (issue 11): every query, mutation and subscription of the live schema
that takes an ID (as an argument, in a list or inside an input object) is called by a user
of company B with company A's ids of that type, and with ids B's viewer cannot reach (a
channel it is no member of, a conversation there, another user's notification, an
uninstalled channel, a deleted conversation). Each answer must be exactly the answer to a
well-formed id of a missing row, and no row of either company may change.

The operations come from the schema, so a field added later is swept by itself; one whose
arguments the sweep cannot build fails `test_the_sweep_can_build_every_field_s_arguments`,
naming it. Every other argument gets a valid value of the viewer's own company, so that
the call reaches the lookup of the id under test (checked: the missing id's answer must be
NOT_FOUND or null, not a refusal of something else, for at least one viewer)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import graphql
import pytest
from graphql import (GraphQLEnumType, GraphQLInputObjectType, GraphQLList, GraphQLNonNull, GraphQLScalarType,
                     get_named_type, is_leaf_type, is_required_argument, is_required_input_field)

from conftest import DEADLINE, Client, Company, Subscriber, eventually, staff_company, unique
from schema import schema
from schema.ids import MAX_KEY, NODE_TYPES, global_id

SCHEMA = schema._schema
ROOTS = {"query": SCHEMA.query_type, "mutation": SCHEMA.mutation_type, "subscription": SCHEMA.subscription_type}
ANY_TYPE = "*"

# The type of ID an argument or input field takes, where its name does not say it
# (`conversationId` takes a Conversation, `userIds` Users, and so on).
ID_TYPES = {("node", "id"): ANY_TYPE, ("conversation", "id"): "Conversation", ("updateNote", "id"): "Note",
            ("deleteNote", "id"): "Note", ("markNotificationsRead", "ids"): "Notification",
            ("unlinkConversation", "linkId"): "ConversationLink"}


class Unbuildable(Exception):
    """The sweep cannot build a valid value for this argument."""


def id_type(field_name: str, path: tuple[str, ...]) -> str:
    name = path[-1]
    if (field_name, name) in ID_TYPES:
        return ID_TYPES[(field_name, name)]
    stem = name[:-3] if name.endswith("Ids") else name[:-2] if name.endswith("Id") else ""
    type_name = stem[:1].upper() + stem[1:]
    if type_name not in NODE_TYPES:
        raise Unbuildable(f"{field_name}: which type of ID does {'.'.join(path)} take? (add it to ID_TYPES)")
    return type_name


def id_slots(type_, path: tuple[str, ...], seen: frozenset = frozenset()):
    """Paths (argument, input field...) to every ID inside an input type."""
    named = get_named_type(type_)
    if isinstance(named, GraphQLScalarType) and named.name == "ID":
        yield path
    elif isinstance(named, GraphQLInputObjectType) and named.name not in seen:
        for name, child in named.fields.items():
            yield from id_slots(child.type, path + (name,), seen | {named.name})


@dataclass(frozen=True)
class Slot:
    kind: str  # query, mutation or subscription
    field: str
    path: tuple[str, ...]

    @property
    def id_type(self) -> str:
        return id_type(self.field, self.path)

    def __str__(self) -> str:
        return f"{self.kind} {self.field}({'.'.join(self.path)})"


def slots() -> list[Slot]:
    found = []
    for kind, root in ROOTS.items():
        for field_name, definition in root.fields.items():
            for name, argument in definition.args.items():
                found += [Slot(kind, field_name, path) for path in id_slots(argument.type, (name,))]
    return found


def text_for(name: str) -> str:
    """A valid value of a required String, by the argument's name."""
    if "email" in name.lower():
        return f"{unique('sweep')}@example.com"
    if "url" in name.lower():
        return "https://partner.example.com/hook"
    return "sweep"


def build(type_, path: tuple[str, ...], slot: Slot, probe: str, context: dict[str, str]) -> Any:
    """A valid value of `type_`, with `probe` at the slot's ID and the viewer's own ids
    elsewhere. Optional input fields are left out, except the one leading to the slot; an
    input object none of whose fields is required (set exactly one) gets its first ID."""
    if isinstance(type_, GraphQLNonNull):
        return build(type_.of_type, path, slot, probe, context)
    if isinstance(type_, GraphQLList):
        return [build(type_.of_type, path, slot, probe, context)]
    if isinstance(type_, GraphQLInputObjectType):
        chosen = [name for name, child in type_.fields.items()
                  if is_required_input_field(child) or slot.path[:len(path) + 1] == path + (name,)]
        if not chosen:
            chosen = [name for name, child in type_.fields.items()
                      if get_named_type(child.type) is graphql.GraphQLID][:1] or list(type_.fields)[:1]
        return {name: build(type_.fields[name].type, path + (name,), slot, probe, context) for name in chosen}
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if type_ is graphql.GraphQLID:
        if path == slot.path:
            return probe
        wanted = id_type(slot.field, path)
        if wanted not in context:
            raise Unbuildable(f"{slot.field}: no {wanted} of the viewer's own for {'.'.join(path)}")
        return context[wanted]
    plain = {"String": text_for(path[-1]), "Int": 1, "Float": 1.0, "Boolean": True,
             "DateTime": datetime.now(timezone.utc).isoformat()}
    if type_.name not in plain:
        raise Unbuildable(f"{slot.field}: no value for the scalar {type_.name} of {'.'.join(path)}")
    return plain[type_.name]


def operation(slot: Slot, probe: str, context: dict[str, str]) -> tuple[str, dict]:
    """The document and variables calling the slot's field with `probe` at the slot."""
    definition = ROOTS[slot.kind].fields[slot.field]
    arguments = {name: argument for name, argument in definition.args.items()
                 if is_required_argument(argument) or name == slot.path[0]}
    variables = {name: build(argument.type, (name,), slot, probe, context) for name, argument in arguments.items()}
    declared = ", ".join(f"${name}: {argument.type}" for name, argument in arguments.items())
    passed = ", ".join(f"{name}: ${name}" for name in arguments)
    selection = "" if is_leaf_type(get_named_type(definition.type)) else " { __typename }"
    return (f"{slot.kind}{f'({declared})' if declared else ''} {{ {slot.field}"
            f"{f'({passed})' if passed else ''}{selection} }}"), variables


def missing(type_name: str) -> str:
    """A well-formed id of a row that does not exist."""
    return global_id(type_name, MAX_KEY)


def probe_types(slot: Slot) -> list[str]:
    return sorted(NODE_TYPES) if slot.id_type == ANY_TYPE else [slot.id_type]


# --- the companies --------------------------------------------------------------------------------

REPLY = "mutation($c: ID!) { sendMessage(conversationId: $c, body: \"hi\") { id } }"
LINK = """mutation($c: ID!) { linkConversation(conversationId: $c, target: {newPerson: {name: "Pat"}}) {
  id target { ... on Person { id notes { id } } } } }"""
ITEMS = """mutation($p: ID!) { createLead(input: {title: "Lead", personId: $p}) { id }
  createDeal(input: {title: "Deal", personId: $p}) { id } }"""
DETAILS = """query($c: ID!) { conversation(id: $c) { contact { id } events { id } channel { id } } }"""
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
NOTIFICATIONS = "{ notifications(first: 100) { edges { node { id } } } }"
INSTALL = """mutation($n: String!) { installChannel(input: {kind: CUSTOM, name: $n}) { channel { id } channelToken } }"""
SHARE = "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }"


def ids_by_type(**found: list[str]) -> dict[str, list[str]]:
    empty = [type_name for type_name, ids in found.items() if not ids]
    assert not empty, f"the sweep needs at least one of each: none of {empty}"
    return found


async def conversation_ids(company: Company, message: dict) -> dict[str, list[str]]:
    """The ids of everything a conversation brings: its channel, contact, messages (a
    reply too), events, a link with its person, note, lead and deal, and the
    notification its assignment gives `ann`."""
    conversation = message["conversation"]["id"]
    admin = company.admin
    reply = (await admin.data(REPLY, {"c": conversation}))["sendMessage"]["id"]
    link = (await admin.data(LINK, {"c": conversation}))["linkConversation"]
    person = link["target"]["id"]
    items = await admin.data(ITEMS, {"p": person})
    await admin.data(ASSIGN, {"c": conversation, "u": company.ids["ann"]})
    details = (await admin.data(DETAILS, {"c": conversation}))["conversation"]
    notifications = await company.ann.data(NOTIFICATIONS)
    return ids_by_type(
        Channel=[details["channel"]["id"]], Contact=[details["contact"]["id"]], Conversation=[conversation],
        Message=[message["id"], reply], ConversationEvent=[e["id"] for e in details["events"]],
        ConversationLink=[link["id"]], Person=[person], Note=[n["id"] for n in link["target"]["notes"]],
        Lead=[items["createLead"]["id"]], Deal=[items["createDeal"]["id"]],
        Notification=[edge["node"]["id"] for edge in notifications["notifications"]["edges"]])


async def new_staffed_company(server, http, fakes) -> Company:
    from inbox.accounts import bootstrap

    _, _, admin_token = await bootstrap(unique("Sweep"), "Ada Admin", f"{unique('ada')}@example.com")
    return await staff_company(server.url, http, admin_token, fakes.callback_url(unique("sweep")))


@dataclass
class Viewer:
    name: str
    client: Client
    context: dict[str, str]
    unreachable: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Tenants:
    foreign: dict[str, list[str]]
    viewers: list[Viewer]
    company_pks: list[int]
    partner: Client  # B's partner integration (its first channel)


async def own_channel(company: Company, http, member: str) -> tuple[str, Client]:
    """Another CUSTOM channel of the company, shared with `member`; its id and partner."""
    data = (await company.admin.data(INSTALL, {"n": unique("Channel")}))["installChannel"]
    channel = data["channel"]["id"]
    await company.admin.data(SHARE, {"c": channel, "u": [company.ids[member]]})
    return channel, Client(company.admin.base_url, data["channelToken"], http)


@pytest.fixture(scope="module")
async def tenants(server, fakes):
    """Company A, the victim, with one of everything; company B, whose admin and member
    `bob` sweep: `bob` is no member of B's first channel (ann's) and sees a second one."""
    import httpx

    from conftest import company_pk

    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        a = await new_staffed_company(server, http, fakes)
        foreign = await conversation_ids(a, await a.inbound("hello from A"))
        foreign["User"] = list(a.ids.values())

        b = await new_staffed_company(server, http, fakes)
        anns = await conversation_ids(b, await b.inbound("hello from B"))
        bobs_channel, bobs_partner = await own_channel(b, http, "bob")
        bobs_message = await b.inbound("for bob", partner=bobs_partner)
        bobs_conversation = bobs_message["conversation"]["id"]
        # bob's own things, for the other arguments of a call
        bob_data = (await b.admin.data(LINK, {"c": bobs_conversation}))["linkConversation"]
        own = {"Conversation": bobs_conversation, "Channel": bobs_channel, "User": b.ids["bob"],
               "Person": bob_data["target"]["id"], "Note": bob_data["target"]["notes"][0]["id"],
               "ConversationLink": bob_data["id"], "Lead": anns["Lead"][0], "Deal": anns["Deal"][0]}
        # gone for everyone: a deleted conversation and an uninstalled channel with its conversation
        deleted = (await b.inbound("to be deleted", contact="gone", partner=bobs_partner))["conversation"]["id"]
        await b.admin.data("mutation($c: ID!) { deleteConversation(conversationId: $c) }", {"c": deleted})
        gone_channel, gone_partner = await own_channel(b, http, "bob")
        gone_conversation = (await b.inbound("soon gone", partner=gone_partner))["conversation"]["id"]
        await b.admin.data("mutation($c: ID!) { uninstallChannel(channelId: $c) }", {"c": gone_channel})
        gone = {"Conversation": [deleted, gone_conversation], "Channel": [gone_channel]}
        # ann's notifications are hers alone; what her channel holds is out of bob's reach
        # (CRM items are the whole company's)
        anns_own = {"Notification": anns["Notification"]}
        out_of_reach = {type_name: ids for type_name, ids in anns.items()
                        if type_name not in ("Person", "Lead", "Deal", "Note")}

        viewers = [Viewer("B's admin", b.admin, own, merged(gone, anns_own)),
                   Viewer("B's bob", b.bob, own, merged(gone, out_of_reach))]
        pks = [await company_pk(a), await company_pk(b)]
        await settled(pks)
        yield Tenants(foreign, viewers, pks, b.partner)


def merged(*groups: dict[str, list[str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for group in groups:
        for type_name, ids in group.items():
            result.setdefault(type_name, []).extend(ids)
    return result


# --- what changed ---------------------------------------------------------------------------------

SCOPES = ("company_id", "channel__company_id", "user__company_id", "message__company_id", "note__company_id")


def tenant_models() -> list[tuple[type, str]]:
    """Every table with the filter that keeps one company's rows."""
    import models
    from tortoise.models import Model

    found = []
    for name in dir(models):
        model = getattr(models, name)
        if not (isinstance(model, type) and issubclass(model, Model) and model is not Model):
            continue
        if model is models.Company:
            found.append((model, "id"))
            continue
        fields = model._meta.fields_map
        scope = next((s for s in SCOPES if s.split("__")[0].removesuffix("_id") in fields), None)
        assert scope is not None, f"the sweep cannot tell which company a {name} row belongs to"
        found.append((model, scope))
    return found


async def rows_of(company_pks: list[int]) -> dict[str, list[dict]]:
    return {model.__name__: await model.filter(**{f"{scope}__in": company_pks}).order_by("id").values()
            for model, scope in tenant_models()}


async def settled(company_pks: list[int]) -> None:
    """Waits until the companies' replies are sent and their emails gone, so that the
    rows change only if the sweep changes them."""
    import models

    async def queued():
        return (await models.Delivery.filter(message__company_id__in=company_pks).count()
                + await models.NotificationEmail.filter(company_id__in=company_pks).count())

    await eventually(queued, lambda count: count == 0)


def changes(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> list[str]:
    return [f"{table}: {before[table]} -> {after[table]}" for table in before if before[table] != after[table]]


# --- the sweep ------------------------------------------------------------------------------------

def reached(answer: dict) -> bool:
    """Whether a missing id's answer shows the id was looked up: NOT_FOUND, or no error."""
    codes = {error.get("extensions", {}).get("code") for error in answer.get("errors") or ()}
    return codes <= {"NOT_FOUND"}


def probes(slot: Slot, viewer: Viewer, tenants: Tenants) -> list[tuple[str, str, str]]:
    """(what, id, type) of each id to compare with a missing one: company A's, those out
    of the viewer's reach, and one whose number no key reaches."""
    beyond = {type_name: [global_id(type_name, 2**40)] for type_name in NODE_TYPES}
    return [(what, probe, type_name) for type_name in probe_types(slot)
            for what, group in (("company A's", tenants.foreign), ("unreachable", viewer.unreachable),
                                ("beyond every key", beyond))
            for probe in group.get(type_name, ())]


def test_the_sweep_can_build_every_field_s_arguments():
    unbuildable = []
    for slot in slots():
        for type_name in probe_types(slot) if _typed(slot, unbuildable) else ():
            context = {name: missing(name) for name in NODE_TYPES}
            try:
                operation(slot, missing(type_name), context)
            except Unbuildable as error:
                unbuildable.append(str(error))
    assert not unbuildable, "the tenant sweep cannot build arguments for:\n" + "\n".join(unbuildable)
    assert {slot.kind for slot in slots()} == set(ROOTS), "every root type has fields taking IDs"


def _typed(slot: Slot, unbuildable: list[str]) -> bool:
    try:
        slot.id_type
        return True
    except Unbuildable as error:
        unbuildable.append(str(error))
        return False


async def test_another_company_s_ids_read_exactly_like_missing_ones_in_queries_and_mutations(tenants):
    mismatches, not_reached = [], []
    for slot in [slot for slot in slots() if slot.kind != "subscription"]:
        reached_by = []
        for viewer in tenants.viewers:
            before = await rows_of(tenants.company_pks)
            for type_name in probe_types(slot):
                document, variables = operation(slot, missing(type_name), viewer.context)
                expected = await viewer.client.execute(document, variables)
                if reached(expected):
                    reached_by.append(viewer.name)
                for what, probe, probe_type in probes(slot, viewer, tenants):
                    if probe_type != type_name:
                        continue
                    document, variables = operation(slot, probe, viewer.context)
                    answer = await viewer.client.execute(document, variables)
                    if answer != expected:
                        mismatches.append(f"{slot} as {viewer.name} with {what} {probe_type} {probe}:\n"
                                          f"  {json.dumps(answer)}\n  missing: {json.dumps(expected)}")
            changed = changes(before, await rows_of(tenants.company_pks))
            assert not changed, f"{slot} as {viewer.name} changed rows:\n" + "\n".join(changed)
        if not reached_by:
            not_reached.append(f"{slot}: {json.dumps(expected)}")
    assert not mismatches, "answers that differ from a missing id's:\n" + "\n".join(mismatches)
    assert not not_reached, "calls that never reached the id's lookup:\n" + "\n".join(not_reached)


async def first_frame(subscriber: Subscriber, document: str, variables: dict) -> dict:
    """The first answer to a subscription (its id left out), which is then stopped."""
    op_id = await subscriber.subscribe(document, variables)
    message = await subscriber.receive(DEADLINE)
    assert message.get("id") == op_id, message
    if message["type"] == "next":
        await subscriber.socket.send(json.dumps({"id": op_id, "type": "complete"}))
    return {key: value for key, value in message.items() if key != "id"}


async def test_another_company_s_ids_read_exactly_like_missing_ones_in_subscriptions(tenants, subscribers):
    mismatches, not_reached = [], []
    for slot in [slot for slot in slots() if slot.kind == "subscription"]:
        reached_by = []
        for viewer in tenants.viewers:
            subscriber = await subscribers(viewer.client.token)
            for type_name in probe_types(slot):
                expected = await first_frame(subscriber, *operation(slot, missing(type_name), viewer.context))
                if expected["type"] == "error" and {e["extensions"]["code"] for e in expected["payload"]} \
                        == {"NOT_FOUND"}:
                    reached_by.append(viewer.name)
                for what, probe, probe_type in probes(slot, viewer, tenants):
                    if probe_type == type_name:
                        answer = await first_frame(subscriber, *operation(slot, probe, viewer.context))
                        if answer != expected:
                            mismatches.append(f"{slot} as {viewer.name} with {what} {probe_type} {probe}:\n"
                                              f"  {json.dumps(answer)}\n  missing: {json.dumps(expected)}")
        if not reached_by:
            not_reached.append(f"{slot}: {json.dumps(expected)}")
    assert not mismatches, "answers that differ from a missing id's:\n" + "\n".join(mismatches)
    assert not not_reached, "subscriptions that never reached the id's lookup:\n" + "\n".join(not_reached)


STATUS = """mutation($e: String!) { updateChannelMessageStatus(externalMessageId: $e, status: READ) {
  id status } }"""


async def test_a_partner_reports_on_another_company_s_message_exactly_like_on_a_missing_one(tenants):
    import models
    from schema.ids import pk_of

    # given company A's reply, which A's partner app was given under its own id
    reply_pk = pk_of(tenants.foreign["Message"][1], "Message")
    reply = await models.Message.get(id=reply_pk)
    assert reply.external_id
    before = await rows_of(tenants.company_pks)
    # when company B's partner reports a status under that id
    answer = await tenants.partner.execute(STATUS, {"e": reply.external_id})
    # then it reads as an id no message of its channel has, and nothing changed
    assert answer == await tenants.partner.execute(STATUS, {"e": unique("no-such-message")})
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert changes(before, await rows_of(tenants.company_pks)) == []


# --- what the sweep found -------------------------------------------------------------------------

UNLINK = "mutation($l: ID!) { unlinkConversation(linkId: $l) }"


async def test_unlinking_a_link_of_a_conversation_out_of_reach_reads_like_a_missing_link(company):
    # given a link of a conversation in ann's channel, which bob is no member of
    message = await company.inbound("hello")
    link = (await company.admin.data(LINK, {"c": message["conversation"]["id"]}))["linkConversation"]["id"]
    # when bob unlinks it
    answer = await company.bob.execute(UNLINK, {"l": link})
    # then he hears what a missing link gives ("conversation not found" told him it exists)
    assert answer == await company.bob.execute(UNLINK, {"l": missing("ConversationLink")})
    assert answer["errors"][0]["message"] == "link not found"
    # and the link stays
    details = await company.admin.data("query($c: ID!) { conversation(id: $c) { links { id } } }",
                                       {"c": message["conversation"]["id"]})
    assert details["conversation"]["links"] == [{"id": link}]
