"""A partner token reads what a partner needs and no user data (SPEC §8, issue 11): the
Message its mutations return, its conversation's id and status, the contact and its own
channel; every path from there to a user (members, installer, assignee, event actors,
authors, an outbound message's sender) answers FORBIDDEN with the field null, and
introspection is refused. Users read all of it as before."""
from __future__ import annotations

import json

import pytest

from conftest import Company, unique
from test_sending import install_partner, report, send, settled

ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
RECEIVE = "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { %s } }"
REPORT = "mutation($e: String!) { updateChannelMessageStatus(externalMessageId: $e, status: DELIVERED) { %s } }"

# Each path a partner might take from a returned Message to a user's data, and the path of
# the field that answers FORBIDDEN.
USER = "id name email isAdmin available"
USER_PATHS = {
    "channel members": (f"conversation {{ channel {{ members {{ {USER} }} }} }}", ["conversation", "channel",
                                                                                  "members"]),
    "channel installer": (f"conversation {{ channel {{ installedBy {{ {USER} }} }} }}",
                          ["conversation", "channel", "installedBy"]),
    "contact's channel members": (f"conversation {{ contact {{ channel {{ members {{ {USER} }} }} }} }}",
                                  ["conversation", "contact", "channel", "members"]),
    "assignee": (f"conversation {{ assignee {{ {USER} }} }}", ["conversation", "assignee"]),
    "event actors": (f"conversation {{ events {{ kind actor {{ {USER} }} assignee {{ {USER} }} }} }}",
                     ["conversation", "events"]),
    "author": (f"author {{ {USER} }}", ["author"]),
    "last message's author": (f"conversation {{ lastMessage {{ author {{ {USER} }} }} }}",
                              ["conversation", "lastMessage", "author"]),
    "messages' authors": (f"conversation {{ messages(last: 10) {{ edges {{ node {{ author {{ {USER} }} }} }} }} }}",
                          ["conversation", "messages", "edges", 0, "node", "author"]),
}
ALLOWED = """id body direction status sentAt senderName cursor failureReason __typename
  conversation { id status createdAt lastMessageAt
    contact { id name externalId avatarUrl channel { id kind name } }
    channel { id kind name createdAt }
    lastMessage { id body }
    messages(last: 10) { edges { cursor node { id body direction } } pageInfo { hasPreviousPage } } }"""


def inbound(contact: str, body: str = "hello") -> dict:
    return {"i": {"externalMessageId": unique("m"), "sender": {"externalId": contact, "name": "Zoe Contact"},
                  "body": body}}


@pytest.fixture
async def staffed(company: Company) -> tuple[str, str]:
    """A conversation of the partner's channel, assigned to ann by the admin (an ASSIGNED
    event with an actor), and its contact."""
    contact = unique("contact")
    message = await company.inbound("first", contact=contact)
    conversation_id = message["conversation"]["id"]
    await company.admin.data(ASSIGN, {"c": conversation_id, "u": company.ids["ann"]})
    return conversation_id, contact


def no_user_data(body: dict) -> None:
    text = json.dumps(body)
    for secret in ("Ada Admin", "Ann Agent", "@example", "isAdmin", "email"):
        assert secret not in text, (secret, body)


def forbidden_at(body: dict, path: list) -> None:
    """Every error is FORBIDDEN (one per object on the path), the first one at `path`."""
    assert {error["extensions"]["code"] for error in body["errors"]} == {"FORBIDDEN"}, body["errors"]
    assert body["errors"][0]["path"][1:] == path, body["errors"]


@pytest.mark.parametrize("name", list(USER_PATHS))
async def test_a_partner_token_reaches_no_user_from_the_message_it_pushes(company, staffed, name):
    _, contact = staffed
    selection, path = USER_PATHS[name]
    # when the partner pushes a message and traverses its answer towards a user
    body = await company.partner.execute(RECEIVE % f"id {selection}", inbound(contact))
    # then that field is FORBIDDEN, and no user's name, email or admin flag comes back
    forbidden_at(body, path)
    no_user_data(body)


async def test_a_partner_token_reaches_no_user_from_the_message_whose_status_it_reports(company, fakes):
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, (200, {"externalMessageId": "ext-staff-reply"}))
    sent = await send(company.ann, partner.conversation_id, "Ann here")
    await settled(company.ann, sent["id"], "SENT")
    # when the partner reports a status and reads the reply's author and sender
    for selection, path in (("author { id name email isAdmin }", ["author"]), ("senderName", ["senderName"]),
                            ("conversation { messages(last: 5) { edges { node { senderName } } } }",
                             ["conversation", "messages", "edges", 1, "node", "senderName"])):
        body = await partner.client.execute(REPORT % f"id {selection}", {"e": "ext-staff-reply"})
        # then each is FORBIDDEN, and Ann's name is nowhere
        forbidden_at(body, path)
        no_user_data(body)
    # and the report itself was taken
    assert (await report(partner, "ext-staff-reply", "READ"))["status"] == "READ"


async def test_a_partner_token_reads_the_message_its_conversation_contact_and_channel(company, staffed):
    conversation_id, contact = staffed
    # when the partner reads every field it is given
    data = await company.partner.data(RECEIVE % ALLOWED, inbound(contact, "second"))
    # then they answer
    message = data["receiveChannelMessage"]
    assert (message["body"], message["direction"], message["senderName"]) == ("second", "INBOUND", "Zoe Contact")
    assert message["conversation"]["id"] == conversation_id and message["conversation"]["status"] == "OPEN"
    assert message["conversation"]["contact"]["externalId"] == contact
    assert message["conversation"]["channel"]["id"] == company.channel_id
    assert message["conversation"]["contact"]["channel"]["kind"] == "CUSTOM"
    assert [edge["node"]["body"] for edge in message["conversation"]["messages"]["edges"]] == ["first", "second"]
    assert message["conversation"]["lastMessage"]["id"] == message["id"]


@pytest.mark.parametrize("query", [
    "{ __schema { types { name fields { name } } } }",
    '{ __type(name: "User") { name fields { name } } }',
    "query { __typename __schema { queryType { name } } }",
])
async def test_introspection_with_a_partner_token_is_forbidden(company, query):
    response = await company.partner.post(query)
    body = response.json()
    assert [error["extensions"]["code"] for error in body["errors"]] == ["FORBIDDEN"], body
    assert "User" not in json.dumps(body.get("data")) and "fields" not in json.dumps(body.get("data"))


async def test_users_still_read_members_assignees_actors_and_introspection(company, staffed):
    conversation_id, _ = staffed
    query = """query($c: ID!) { conversation(id: $c) { assignee { name email } channel { members { name isAdmin }
      installedBy { name } } events { actor { name } } } __type(name: "User") { name } }"""
    data = await company.ann.data(query, {"c": conversation_id})
    assert data["conversation"]["assignee"] == {"name": "Ann Agent", "email": data["conversation"]["assignee"]["email"]}
    assert "Ada Admin" in [member["name"] for member in data["conversation"]["channel"]["members"]]
    assert data["conversation"]["channel"]["installedBy"]["name"] == "Ada Admin"
    assert {"name": "Ada Admin"} in [event["actor"] for event in data["conversation"]["events"]]
    assert data["__type"] == {"name": "User"}


async def test_a_refused_partner_field_is_counted(company, staffed):
    from prometheus_client import REGISTRY

    _, contact = staffed

    def refused() -> float:
        return REGISTRY.get_sample_value("inbox_refusals_total", {"bound": "partner_field"}) or 0.0

    before = refused()
    await company.partner.execute(RECEIVE % "id author { name }", inbound(contact))
    assert refused() == before + 1


async def test_strawberrys_view_refuses_partner_introspection_and_fields_too(company, staffed):
    # a GET (served by strawberry's view, not the direct path) with a partner token
    response = await company.partner.http.get(
        f"{company.partner.base_url}/graphql", params={"query": "{ __schema { types { name } } }"},
        headers={"Authorization": f"Bearer {company.partner.token}"})
    assert [error["extensions"]["code"] for error in response.json()["errors"]] == ["FORBIDDEN"]
    # a POST that accepts a streamed answer goes through the view too
    _, contact = staffed
    response = await company.partner.http.post(
        f"{company.partner.base_url}/graphql",
        json={"query": RECEIVE % "id conversation { assignee { name } }", "variables": inbound(contact)},
        headers={"Authorization": f"Bearer {company.partner.token}", "Accept": "application/json, multipart/mixed"})
    forbidden_at(response.json(), ["conversation", "assignee"])
