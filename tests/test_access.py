"""SPEC §1, people and access: authentication, tenant isolation, channel access,
malformed IDs and the admins' messaging settings (users and channels)."""
from __future__ import annotations

import asyncio
import base64
import json

import pytest
import websockets

from conftest import DEADLINE, RECEIVE, Client, Company, unique

# --- documents -------------------------------------------------------------------------------------

ME = "{ me { id name email isAdmin } }"
NODE = "query($id: ID!) { node(id: $id) { id __typename } }"
CONVERSATION = "query($id: ID!) { conversation(id: $id) { id status assignee { id } } }"
INBOX_IDS = "query($s: InboxSection!) { inbox(section: $s, first: 100) { totalCount edges { node { id } } } }"
COUNTS = "{ inboxCounts { unassigned assignedToMe assignedToOthers closed unread } }"
CHANNELS = "{ channels { id kind name installedBy { id } members { id } } }"
USERS = "{ users { id email isAdmin } }"
DETAILS = """query($id: ID!) { conversation(id: $id) { id contact { id } lastMessage { id }
  events { id } channel { id } } }"""

CREATE_USER = """mutation($i: CreateUserInput!) { createUser(input: $i) { user { id name email isAdmin } apiToken } }"""
INSTALL = """mutation($i: InstallChannelInput!) { installChannel(input: $i) {
  channel { id kind name installedBy { id } members { id } } webhookPath channelToken } }"""
SHARE = "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id members { id } } }"
UNSHARE = "mutation($c: ID!, $u: [ID!]!) { unshareChannel(channelId: $c, userIds: $u) { id members { id } } }"
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"

ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id assignee { id } } }"
UNASSIGN = "mutation($c: ID!) { unassignConversation(conversationId: $c) { id } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id status } }"
REOPEN = "mutation($c: ID!) { reopenConversation(conversationId: $c) { id status } }"
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
MARK_READ = "mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount } }"
ASSIGNABLE = "query($c: ID!) { assignableUsers(conversationId: $c) { id } }"

CONVERSATION_MUTATIONS = {"assign": ASSIGN, "unassign": UNASSIGN, "close": CLOSE, "reopen": REOPEN,
                          "delete": DELETE, "markRead": MARK_READ}

MESSENGER = {"pageId": "1234", "appSecret": "app-secret", "verifyToken": "verify-me", "pageAccessToken": "EAAB"}
WHATSAPP = {"accountSid": "AC123", "authToken": "twilio-secret", "fromNumber": "+14155238886"}


def encoded(text: str) -> str:
    """An ID as the server would encode `text`: used to forge well-formed IDs of things that do not exist."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def ids(items: list[dict]) -> set[str]:
    return {item["id"] for item in items}


async def inbox_ids(client: Client, section: str = "UNASSIGNED") -> set[str]:
    data = await client.data(INBOX_IDS, {"s": section})
    return {edge["node"]["id"] for edge in data["inbox"]["edges"]}


def conversation_variables(mutation: str, conversation_id: str, user_id: str) -> dict:
    return {"c": conversation_id, **({"u": user_id} if mutation == "assign" else {})}


async def new_admin(company: Company, server, http) -> tuple[Client, str]:
    data = await company.admin.data(CREATE_USER, {"i": {"name": "Second Admin", "email": f"{unique('adm')}@example.com",
                                                        "isAdmin": True}})
    return Client(server.url, data["createUser"]["apiToken"], http), data["createUser"]["user"]["id"]


# --- authentication --------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer  x y", "Basic dXNlcjpwdw==", "usr_abc",
                                           "Bearer usr_not-a-real-token", "Bearer chn_not-a-real-token",
                                           "Bearer something-else"])
async def test_missing_malformed_or_unknown_token_is_401_unauthenticated_on_post(server, http, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await http.post(f"{server.url}/graphql", json={"query": ME}, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("authorization", [None, "Bearer usr_not-a-real-token"])
async def test_missing_or_unknown_token_is_401_unauthenticated_on_get(server, http, authorization):
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = await http.get(f"{server.url}/graphql", params={"query": ME}, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_unauthenticated_request_changes_nothing(company, server, http):
    # given a conversation
    message = await company.inbound("hi")
    conversation_id = message["conversation"]["id"]
    # when someone without a valid token tries to close it
    response = await http.post(f"{server.url}/graphql", json={"query": CLOSE, "variables": {"c": conversation_id}},
                               headers={"Authorization": "Bearer usr_forged"})
    # then it is refused and the conversation stays open
    assert response.status_code == 401
    assert (await company.admin.data(CONVERSATION, {"id": conversation_id}))["conversation"]["status"] == "OPEN"


async def test_a_get_query_with_a_user_token_answers(company, server, http):
    response = await http.get(f"{server.url}/graphql", params={"query": "{ me { name } }"},
                              headers={"Authorization": f"Bearer {company.admin.token}",
                                       "Accept": "application/json"})
    assert response.status_code == 200
    assert response.json()["data"]["me"]["name"] == "Ada Admin"


async def test_a_mutation_over_get_is_refused_and_changes_nothing(company, server, http):
    # given a conversation
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    # when a client tries to close it with a GET
    response = await http.get(f"{server.url}/graphql",
                              params={"query": CLOSE, "variables": json.dumps({"c": conversation_id})},
                              headers={"Authorization": f"Bearer {company.admin.token}",
                                       "Accept": "application/json"})
    # then GET only runs queries
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await company.admin.data(CONVERSATION, {"id": conversation_id}))["conversation"]["status"] == "OPEN"


async def test_a_browser_get_shows_graphiql_without_a_token(server, http):
    response = await http.get(f"{server.url}/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_a_browser_get_with_a_query_still_needs_a_token(server, http):
    response = await http.get(f"{server.url}/graphql", params={"query": ME}, headers={"Accept": "text/html"})
    assert response.status_code == 401


async def test_a_channel_token_can_push_inbound_messages(company):
    message = await company.inbound("from the partner", contact="zoe", name="Zoe")
    assert message["body"] == "from the partner"
    assert message["senderName"] == "Zoe"


async def test_a_channel_token_authenticates_nothing_but_the_partner_operations(company):
    for query in (ME, USERS, CHANNELS, COUNTS, "{ inbox(section: UNASSIGNED) { totalCount } }",
                  "mutation { setAvailability(available: false) { id } }",
                  'mutation { installChannel(input: {kind: CUSTOM, name: "x"}) { channelToken } }'):
        response = await company.partner.post(query)
        assert response.status_code == 401, query
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", query
    assert len((await company.admin.data(CHANNELS))["channels"]) == 1


async def test_a_channel_token_cannot_read_a_node(company):
    message = await company.inbound("hi")
    code = await company.partner.error_code(NODE, {"id": message["conversation"]["id"]})
    assert code == "UNAUTHENTICATED"


async def test_a_user_token_cannot_push_channel_messages(company):
    # given the channel's admin and member, with user tokens
    variables = {"input": {"externalMessageId": "x-1", "sender": {"externalId": "c9", "name": "C"}, "body": "hi"}}
    for client in (company.admin, company.ann):
        # when they call the partner mutation, then it is refused
        assert await client.error_code(RECEIVE, variables) == "UNAUTHENTICATED"
    # and nothing was stored
    assert (await company.admin.data(COUNTS))["inboxCounts"]["unassigned"] == 0


async def test_a_websocket_with_a_channel_token_is_closed_with_4403(company, server):
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"authorization": f"Bearer {company.partner.token}"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(socket.recv(), DEADLINE)
        assert closed.value.rcvd.code == 4403


# --- tenant isolation ------------------------------------------------------------------------------

@pytest.fixture
async def foreign(other_company) -> dict:
    """IDs of every kind of object of another company."""
    message = await other_company.inbound("secret", contact="foreign", name="Foreign Contact")
    conversation_id = message["conversation"]["id"]
    details = (await other_company.admin.data(DETAILS, {"id": conversation_id}))["conversation"]
    return {"Conversation": conversation_id, "Message": message["id"], "Contact": details["contact"]["id"],
            "ConversationEvent": details["events"][0]["id"], "Channel": other_company.channel_id,
            "User": other_company.ids["ann"], "company": other_company}


async def test_another_companys_ids_read_as_null_through_node(company, foreign):
    for kind in ("Conversation", "Message", "Contact", "ConversationEvent", "Channel", "User"):
        # the other company sees its own object
        assert (await foreign["company"].admin.data(NODE, {"id": foreign[kind]}))["node"]["id"] == foreign[kind]
        # this company's admin does not
        assert (await company.admin.data(NODE, {"id": foreign[kind]}))["node"] is None, kind


async def test_another_companys_conversation_reads_as_null(company, foreign):
    assert (await company.admin.data(CONVERSATION, {"id": foreign["Conversation"]}))["conversation"] is None


async def test_another_companys_conversation_is_not_found_in_mutations_and_unchanged(company, foreign):
    for mutation, query in CONVERSATION_MUTATIONS.items():
        # when an admin of this company acts on the other company's conversation
        variables = conversation_variables(mutation, foreign["Conversation"], company.ids["admin"])
        # then it is NOT_FOUND, exactly like a missing one
        assert await company.admin.error_code(query, variables) == "NOT_FOUND", mutation
    # and nothing changed
    seen = (await foreign["company"].admin.data(CONVERSATION, {"id": foreign["Conversation"]}))["conversation"]
    assert seen["status"] == "OPEN" and seen["assignee"] is None


async def test_assigning_to_a_user_that_does_not_exist_is_not_found(company):
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    assert await company.admin.error_code(ASSIGN, {"c": conversation_id, "u": encoded("User:999999999")}) == \
        "NOT_FOUND"


async def test_assigning_to_a_user_of_another_company_is_not_found(company, foreign):
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    assert await company.admin.error_code(ASSIGN, {"c": conversation_id, "u": foreign["User"]}) == "NOT_FOUND"
    assert (await company.admin.data(CONVERSATION, {"id": conversation_id}))["conversation"]["assignee"] is None


async def test_another_companys_channel_is_not_found_in_channel_settings(company, foreign):
    for query in (SHARE, UNSHARE, UNINSTALL):
        variables = {"c": foreign["Channel"], **({"u": [company.ids["bob"]]} if query != UNINSTALL else {})}
        assert await company.admin.error_code(query, variables) == "NOT_FOUND", query
    # the other company's channel still works, shared as before
    await foreign["company"].inbound("still here", contact="foreign")
    members = (await foreign["company"].admin.data(CHANNELS))["channels"][0]["members"]
    assert len(members) == 2


async def test_sharing_with_another_companys_user_is_not_found_and_changes_nothing(company, foreign):
    code = await company.admin.error_code(SHARE, {"c": company.channel_id, "u": [company.ids["bob"], foreign["User"]]})
    assert code == "NOT_FOUND"
    channel = (await company.admin.data(NODE.replace("__typename", "... on Channel { members { id } }"),
                                        {"id": company.channel_id}))["node"]
    assert company.ids["bob"] not in ids(channel["members"])


async def test_filtering_by_another_companys_channel_is_not_found(company, foreign):
    for query in ("query($c: ID) { inbox(section: UNASSIGNED, channelId: $c) { totalCount } }",
                  "query($c: ID) { inboxCounts(channelId: $c) { unassigned } }"):
        assert await company.admin.error_code(query, {"c": foreign["Channel"]}) == "NOT_FOUND", query


async def test_assignable_users_of_another_companys_conversation_is_not_found(company, foreign):
    assert await company.admin.error_code(ASSIGNABLE, {"c": foreign["Conversation"]}) == "NOT_FOUND"


async def test_another_companys_objects_are_absent_from_lists_and_counts(company, foreign):
    other = foreign["company"]
    # the other company has a conversation; this one has none
    assert foreign["Conversation"] in await inbox_ids(other.admin)
    for client in (company.admin, company.ann, company.bob):
        assert await inbox_ids(client) == set()
        counts = (await client.data(COUNTS))["inboxCounts"]
        assert counts == {"unassigned": 0, "assignedToMe": 0, "assignedToOthers": 0, "closed": 0, "unread": 0}
        assert foreign["Channel"] not in ids((await client.data(CHANNELS))["channels"])
        users = ids((await client.data(USERS))["users"])
        assert users == {company.ids["admin"], company.ids["ann"], company.ids["bob"]}


async def test_search_does_not_reach_another_companys_messages(company, foreign):
    data = await company.admin.data('{ inbox(section: UNASSIGNED, search: "secret") { totalCount } }')
    assert data["inbox"]["totalCount"] == 0


async def test_a_well_formed_id_of_nothing_reads_as_null(company):
    for kind in ("Conversation", "Message", "ConversationEvent", "Contact", "Channel", "User"):
        assert (await company.admin.data(NODE, {"id": encoded(f"{kind}:987654321")}))["node"] is None, kind
    assert (await company.admin.data(CONVERSATION, {"id": encoded("Conversation:987654321")}))["conversation"] is None


async def test_a_well_formed_id_of_nothing_is_not_found_in_mutations(company):
    assert await company.admin.error_code(CLOSE, {"c": encoded("Conversation:987654321")}) == "NOT_FOUND"
    assert await company.admin.error_code(UNINSTALL, {"c": encoded("Channel:987654321")}) == "NOT_FOUND"


async def test_an_id_of_another_type_is_not_found_in_mutations_and_null_in_conversation(company):
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    # a user's ID where a conversation is expected, and a conversation's where a user is
    assert await company.admin.error_code(CLOSE, {"c": company.ids["ann"]}) == "NOT_FOUND"
    assert await company.admin.error_code(ASSIGN, {"c": conversation_id, "u": conversation_id}) == "NOT_FOUND"
    assert (await company.admin.data(CONVERSATION, {"id": company.ids["ann"]}))["conversation"] is None


# --- channel access --------------------------------------------------------------------------------

@pytest.fixture
async def unshared(company) -> dict:
    """A conversation of the channel, which bob (a member of the company, not of the channel) may not see."""
    message = await company.inbound("for members only", contact="private", name="Private Contact")
    conversation_id = message["conversation"]["id"]
    details = (await company.admin.data(DETAILS, {"id": conversation_id}))["conversation"]
    return {"Conversation": conversation_id, "Message": message["id"], "Contact": details["contact"]["id"],
            "ConversationEvent": details["events"][0]["id"], "Channel": company.channel_id}


async def test_objects_of_a_channel_without_access_read_as_null(company, unshared):
    for kind in ("Conversation", "Message", "Contact", "ConversationEvent", "Channel"):
        assert (await company.ann.data(NODE, {"id": unshared[kind]}))["node"]["id"] == unshared[kind]
        assert (await company.bob.data(NODE, {"id": unshared[kind]}))["node"] is None, kind


async def test_a_conversation_of_a_channel_without_access_reads_as_null(company, unshared):
    assert (await company.bob.data(CONVERSATION, {"id": unshared["Conversation"]}))["conversation"] is None


async def test_a_conversation_of_a_channel_without_access_is_not_found_in_mutations(company, unshared):
    for mutation, query in CONVERSATION_MUTATIONS.items():
        variables = conversation_variables(mutation, unshared["Conversation"], company.ids["ann"])
        assert await company.bob.error_code(query, variables) == "NOT_FOUND", mutation
    seen = (await company.admin.data(CONVERSATION, {"id": unshared["Conversation"]}))["conversation"]
    assert seen["status"] == "OPEN" and seen["assignee"] is None


async def test_a_channel_without_access_is_absent_from_the_viewers_lists(company, unshared):
    assert await inbox_ids(company.bob) == set()
    assert (await company.bob.data(COUNTS))["inboxCounts"]["unassigned"] == 0
    assert (await company.bob.data(CHANNELS))["channels"] == []
    assert await company.bob.error_code("query($c: ID) { inbox(section: UNASSIGNED, channelId: $c) { totalCount } }",
                                        {"c": company.channel_id}) == "NOT_FOUND"
    assert await company.bob.error_code(ASSIGNABLE, {"c": unshared["Conversation"]}) == "NOT_FOUND"


async def test_a_member_sees_the_channels_conversations(company, unshared):
    assert await inbox_ids(company.ann) == {unshared["Conversation"]}
    assert ids((await company.ann.data(CHANNELS))["channels"]) == {company.channel_id}


async def test_only_users_with_access_can_be_assignees(company, unshared):
    # bob has no access to the channel: he cannot be assigned, by an admin nor by a member
    for client in (company.admin, company.ann):
        code = await client.error_code(ASSIGN, {"c": unshared["Conversation"], "u": company.ids["bob"]})
        assert code == "FORBIDDEN"
    assignable = ids((await company.ann.data(ASSIGNABLE, {"c": unshared["Conversation"]}))["assignableUsers"])
    assert assignable == {company.ids["admin"], company.ids["ann"]}
    seen = (await company.admin.data(CONVERSATION, {"id": unshared["Conversation"]}))["conversation"]
    assert seen["assignee"] is None


async def test_a_member_who_is_not_the_installer_cannot_delete_a_visible_conversation(company, unshared):
    assert await company.ann.error_code(DELETE, {"c": unshared["Conversation"]}) == "FORBIDDEN"
    assert unshared["Conversation"] in await inbox_ids(company.admin)


async def test_admins_have_access_to_every_channel_of_their_company(company, server, http):
    # given a channel installed by another admin, of which the first admin is not a member
    second, _ = await new_admin(company, server, http)
    installed = (await second.data(INSTALL, {"i": {"kind": "CUSTOM", "name": "Second app"}}))["installChannel"]
    assert company.ids["admin"] not in ids(installed["channel"]["members"])
    partner = Client(server.url, installed["channelToken"], http)
    conversation_id = (await company.inbound("hi", contact="x", partner=partner))["conversation"]["id"]
    # then the first admin sees the channel and its conversation
    assert installed["channel"]["id"] in ids((await company.admin.data(CHANNELS))["channels"])
    assert conversation_id in await inbox_ids(company.admin)
    assert (await company.admin.data(NODE, {"id": installed["channel"]["id"]}))["node"] is not None
    # and acts on it as a member does: assigns (to themselves), closes
    assigned = await company.admin.data(ASSIGN, {"c": conversation_id, "u": company.ids["admin"]})
    assert assigned["assignConversation"]["assignee"]["id"] == company.ids["admin"]
    assert (await company.admin.data(CLOSE, {"c": conversation_id}))["closeConversation"]["status"] == "CLOSED"
    # but deleting stays the installer's
    assert await company.admin.error_code(DELETE, {"c": conversation_id}) == "FORBIDDEN"
    assert (await second.data(DELETE, {"c": conversation_id}))["deleteConversation"] == conversation_id


async def test_channels_lists_the_channels_the_viewer_has_access_to(company):
    # given a second channel shared with bob only
    second = (await company.admin.data(INSTALL, {"i": {"kind": "CUSTOM", "name": "Second app"}}))["installChannel"]
    second_id = second["channel"]["id"]
    await company.admin.data(SHARE, {"c": second_id, "u": [company.ids["bob"]]})
    # then each sees what they have access to; the admin sees every channel
    assert ids((await company.ann.data(CHANNELS))["channels"]) == {company.channel_id}
    assert ids((await company.bob.data(CHANNELS))["channels"]) == {second_id}
    assert ids((await company.admin.data(CHANNELS))["channels"]) == {company.channel_id, second_id}


async def test_users_lists_the_companys_users_to_every_user(company):
    expected = {company.ids["admin"], company.ids["ann"], company.ids["bob"]}
    for client in (company.admin, company.ann, company.bob):
        assert ids((await client.data(USERS))["users"]) == expected


# --- malformed IDs ---------------------------------------------------------------------------------

MALFORMED = ["garbage!", "", "   ", encoded("Conversation:abc"), encoded("Nope:1"), encoded("Conversation:"),
             encoded("Conversation:-1"), "x" * 500, "\u00e9\u00e9\u00e9"]


async def test_a_malformed_id_is_bad_user_input_in_node_and_conversation(company):
    for bad in MALFORMED:
        assert await company.admin.error_code(NODE, {"id": bad}) == "BAD_USER_INPUT", bad
        assert await company.admin.error_code(CONVERSATION, {"id": bad}) == "BAD_USER_INPUT", bad


MALFORMED_ID_ARGUMENTS = [
    ("assign-conversation", ASSIGN, lambda c, conversation, bad: {"c": bad, "u": c.ids["ann"]}),
    ("assign-user", ASSIGN, lambda c, conversation, bad: {"c": conversation, "u": bad}),
    ("unassign", UNASSIGN, lambda c, conversation, bad: {"c": bad}),
    ("close", CLOSE, lambda c, conversation, bad: {"c": bad}),
    ("reopen", REOPEN, lambda c, conversation, bad: {"c": bad}),
    ("delete", DELETE, lambda c, conversation, bad: {"c": bad}),
    ("markRead", MARK_READ, lambda c, conversation, bad: {"c": bad}),
    ("assignableUsers", ASSIGNABLE, lambda c, conversation, bad: {"c": bad}),
    ("inbox", "query($c: ID) { inbox(section: UNASSIGNED, channelId: $c) { totalCount } }",
     lambda c, conversation, bad: {"c": bad}),
    ("inboxCounts", "query($c: ID) { inboxCounts(channelId: $c) { unassigned } }",
     lambda c, conversation, bad: {"c": bad}),
    ("share-channel", SHARE, lambda c, conversation, bad: {"c": bad, "u": [c.ids["bob"]]}),
    ("share-user", SHARE, lambda c, conversation, bad: {"c": c.channel_id, "u": [c.ids["bob"], bad]}),
    ("unshare-channel", UNSHARE, lambda c, conversation, bad: {"c": bad, "u": [c.ids["ann"]]}),
    ("unshare-user", UNSHARE, lambda c, conversation, bad: {"c": c.channel_id, "u": [bad]}),
    ("uninstall", UNINSTALL, lambda c, conversation, bad: {"c": bad}),
]


async def test_a_malformed_id_in_any_argument_is_bad_user_input_and_changes_nothing(company):
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    for name, query, variables in MALFORMED_ID_ARGUMENTS:
        for bad in ("garbage!", encoded("Conversation:abc")):
            code = await company.admin.error_code(query, variables(company, conversation_id, bad))
            assert code == "BAD_USER_INPUT", name
    # nothing changed: the conversation is open and unassigned, the channel shared with ann only
    seen = (await company.admin.data(CONVERSATION, {"id": conversation_id}))["conversation"]
    assert seen["status"] == "OPEN" and seen["assignee"] is None
    channels = (await company.admin.data(CHANNELS))["channels"]
    assert [set(ids(c["members"])) for c in channels] == [{company.ids["admin"], company.ids["ann"]}]


async def test_a_malformed_id_as_an_inline_literal_is_bad_user_input(company):
    assert await company.admin.error_code('{ node(id: "garbage!") { id } }') == "BAD_USER_INPUT"
    assert await company.admin.error_code('mutation { closeConversation(conversationId: "%%") { id } }') == \
        "BAD_USER_INPUT"


# --- messaging settings: admins only ---------------------------------------------------------------

async def test_only_admins_create_users(company):
    variables = {"i": {"name": "Eve", "email": f"{unique('eve')}@example.com", "isAdmin": True}}
    for client in (company.ann, company.bob):
        assert await client.error_code(CREATE_USER, variables) == "FORBIDDEN"
    assert len((await company.admin.data(USERS))["users"]) == 3


async def test_only_admins_install_channels(company):
    for client in (company.ann, company.bob):
        for config in ({"kind": "CUSTOM", "name": "Mine"},
                       {"kind": "MESSENGER", "name": "Page", "messenger": MESSENGER},
                       {"kind": "WHATSAPP", "name": "Number", "whatsapp": WHATSAPP}):
            assert await client.error_code(INSTALL, {"i": config}) == "FORBIDDEN"
    assert len((await company.admin.data(CHANNELS))["channels"]) == 1


async def test_only_admins_share_and_unshare_channels(company):
    for client in (company.ann, company.bob):
        assert await client.error_code(SHARE, {"c": company.channel_id, "u": [company.ids["bob"]]}) == "FORBIDDEN"
        assert await client.error_code(UNSHARE, {"c": company.channel_id, "u": [company.ids["ann"]]}) == "FORBIDDEN"
    members = (await company.admin.data(CHANNELS))["channels"][0]["members"]
    assert ids(members) == {company.ids["admin"], company.ids["ann"]}


async def test_only_admins_uninstall_channels(company):
    for client in (company.ann, company.bob):
        assert await client.error_code(UNINSTALL, {"c": company.channel_id}) == "FORBIDDEN"
    await company.inbound("channel still works")
    assert len((await company.admin.data(CHANNELS))["channels"]) == 1


# --- users -----------------------------------------------------------------------------------------

async def test_created_users_token_authenticates_them(company, server, http):
    email = f"{unique('dan')}@example.com"
    created = (await company.admin.data(CREATE_USER, {"i": {"name": "Dan", "email": email}}))["createUser"]
    assert created["user"]["isAdmin"] is False
    me = (await Client(server.url, created["apiToken"], http).data(ME))["me"]
    assert me == {"id": created["user"]["id"], "name": "Dan", "email": email, "isAdmin": False}


async def test_an_admin_may_create_another_admin(company, server, http):
    client, _ = await new_admin(company, server, http)
    assert (await client.data(ME))["me"]["isAdmin"] is True
    await client.data(CREATE_USER, {"i": {"name": "Fay", "email": f"{unique('fay')}@example.com"}})


async def test_only_a_hash_of_a_users_token_is_stored(company):
    from tortoise import connections

    # given a user created through the API
    created = (await company.admin.data(CREATE_USER, {"i": {"name": "Gus", "email": f"{unique('gus')}@example.com"}}))
    token = created["createUser"]["apiToken"]
    # then no column of any user row holds the token, nor its secret part
    rows = await connections.get("default").execute_query_dict('SELECT * FROM "user"')
    assert rows
    secret = token.split("_", 1)[-1]
    for row in rows:
        for value in row.values():
            assert secret not in str(value)


async def test_a_duplicate_email_in_one_company_is_a_conflict(company):
    email = f"{unique('dup')}@example.com"
    await company.admin.data(CREATE_USER, {"i": {"name": "First", "email": email}})
    assert await company.admin.error_code(CREATE_USER, {"i": {"name": "Second", "email": email}}) == "CONFLICT"
    # emails compare case-insensitively
    assert await company.admin.error_code(CREATE_USER, {"i": {"name": "Third", "email": email.upper()}}) == \
        "CONFLICT"
    emails = [user["email"] for user in (await company.admin.data(USERS))["users"]]
    assert emails.count(email) == 1 and len(emails) == 4


async def test_the_same_email_may_belong_to_two_companies(company, other_company):
    email = f"{unique('both')}@example.com"
    first = (await company.admin.data(CREATE_USER, {"i": {"name": "Both", "email": email}}))["createUser"]
    second = (await other_company.admin.data(CREATE_USER, {"i": {"name": "Both", "email": email}}))["createUser"]
    assert first["user"]["id"] != second["user"]["id"]
    assert first["apiToken"] != second["apiToken"]


async def test_an_invalid_email_is_bad_user_input(company):
    for email in ("not-an-email", "a@b", "", "  ", "a b@example.com"):
        code = await company.admin.error_code(CREATE_USER, {"i": {"name": "X", "email": email}})
        assert code == "BAD_USER_INPUT", email
    assert len((await company.admin.data(USERS))["users"]) == 3


# --- channels --------------------------------------------------------------------------------------

async def test_installing_a_messenger_channel_gives_its_webhook_path_and_no_token(company):
    installed = (await company.admin.data(INSTALL, {"i": {"kind": "MESSENGER", "name": "Our page",
                                                          "messenger": MESSENGER}}))["installChannel"]
    channel = installed["channel"]
    assert channel["kind"] == "MESSENGER" and channel["name"] == "Our page"
    assert installed["webhookPath"] == f"/webhooks/messenger/{channel['id']}"
    assert installed["channelToken"] is None


async def test_installing_a_whatsapp_channel_gives_its_webhook_path_and_no_token(company):
    installed = (await company.admin.data(INSTALL, {"i": {"kind": "WHATSAPP", "name": "Our number",
                                                          "whatsapp": WHATSAPP}}))["installChannel"]
    channel = installed["channel"]
    assert channel["kind"] == "WHATSAPP"
    assert installed["webhookPath"] == f"/webhooks/twilio/{channel['id']}"
    assert installed["channelToken"] is None


async def test_installing_a_custom_channel_gives_a_token_and_no_webhook_path(company, server, http):
    installed = (await company.admin.data(INSTALL, {"i": {"kind": "CUSTOM", "name": "Partner two",
                                                          "custom": {"callbackUrl": "https://partner.test/cb"}}}))
    installed = installed["installChannel"]
    assert installed["channel"]["kind"] == "CUSTOM"
    assert installed["webhookPath"] is None
    assert installed["channelToken"]
    # the token is the channel's: messages pushed with it land in that channel
    partner = Client(server.url, installed["channelToken"], http)
    message = await company.inbound("hello", partner=partner)
    details = (await company.admin.data(DETAILS, {"id": message["conversation"]["id"]}))["conversation"]
    assert details["channel"]["id"] == installed["channel"]["id"]


async def test_the_installer_is_the_first_member_of_a_new_channel(company):
    for kind, config in (("MESSENGER", {"messenger": MESSENGER}), ("WHATSAPP", {"whatsapp": WHATSAPP}),
                         ("CUSTOM", {})):
        channel = (await company.admin.data(INSTALL, {"i": {"kind": kind, "name": "New", **config}}))
        channel = channel["installChannel"]["channel"]
        assert channel["installedBy"]["id"] == company.ids["admin"]
        assert ids(channel["members"]) == {company.ids["admin"]}


MISMATCHED_CONFIGS = [
    {"kind": "MESSENGER"},
    {"kind": "WHATSAPP"},
    {"kind": "MESSENGER", "whatsapp": WHATSAPP},
    {"kind": "WHATSAPP", "messenger": MESSENGER},
    {"kind": "MESSENGER", "messenger": MESSENGER, "whatsapp": WHATSAPP},
    {"kind": "CUSTOM", "messenger": MESSENGER},
    {"kind": "CUSTOM", "whatsapp": WHATSAPP},
    {"kind": "WHATSAPP", "whatsapp": WHATSAPP, "custom": {"callbackUrl": "https://partner.test/cb"}},
    {"kind": "MESSENGER", "messenger": {**MESSENGER, "appSecret": "  "}},
    {"kind": "WHATSAPP", "whatsapp": {**WHATSAPP, "accountSid": ""}},
    {"kind": "CUSTOM", "custom": {"callbackUrl": "not a url"}},
    {"kind": "CUSTOM", "custom": {"callbackUrl": "ftp://partner.test/cb"}},
]


async def test_a_config_that_does_not_match_the_kind_is_bad_user_input(company):
    for config in MISMATCHED_CONFIGS:
        code = await company.admin.error_code(INSTALL, {"i": {"name": "Mismatch", **config}})
        assert code == "BAD_USER_INPUT", config
    assert len((await company.admin.data(CHANNELS))["channels"]) == 1


async def test_the_installer_always_stays_a_member(company):
    code = await company.admin.error_code(UNSHARE, {"c": company.channel_id, "u": [company.ids["admin"]]})
    assert code == "BAD_USER_INPUT"
    members = (await company.admin.data(CHANNELS))["channels"][0]["members"]
    assert company.ids["admin"] in ids(members)


async def test_sharing_a_channel_gives_access_to_its_conversations(company):
    # given a conversation bob cannot see
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    assert (await company.bob.data(CONVERSATION, {"id": conversation_id}))["conversation"] is None
    # when the admin shares the channel with bob
    shared = (await company.admin.data(SHARE, {"c": company.channel_id, "u": [company.ids["bob"]]}))["shareChannel"]
    # then bob is a member, sees the channel and its conversations, and may act on them
    assert ids(shared["members"]) == {company.ids["admin"], company.ids["ann"], company.ids["bob"]}
    assert (await company.bob.data(CONVERSATION, {"id": conversation_id}))["conversation"]["id"] == conversation_id
    assert await inbox_ids(company.bob) == {conversation_id}
    assert ids((await company.bob.data(CHANNELS))["channels"]) == {company.channel_id}
    assigned = await company.bob.data(ASSIGN, {"c": conversation_id, "u": company.ids["bob"]})
    assert assigned["assignConversation"]["assignee"]["id"] == company.ids["bob"]


async def test_sharing_twice_is_harmless(company):
    for _ in range(2):
        shared = await company.admin.data(SHARE, {"c": company.channel_id,
                                                  "u": [company.ids["bob"], company.ids["bob"], company.ids["ann"]]})
    members = shared["shareChannel"]["members"]
    assert sorted(m["id"] for m in members) == sorted({company.ids["admin"], company.ids["ann"], company.ids["bob"]})


async def test_unsharing_a_channel_removes_access(company):
    # given ann, a member, sees a conversation
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    assert await inbox_ids(company.ann) == {conversation_id}
    # when the admin unshares the channel from her
    unshared = (await company.admin.data(UNSHARE, {"c": company.channel_id, "u": [company.ids["ann"]]}))
    # then she is no longer a member, and the channel's conversations are gone for her
    assert ids(unshared["unshareChannel"]["members"]) == {company.ids["admin"]}
    assert await inbox_ids(company.ann) == set()
    assert (await company.ann.data(CONVERSATION, {"id": conversation_id}))["conversation"] is None
    assert (await company.ann.data(CHANNELS))["channels"] == []
    assert await company.ann.error_code(CLOSE, {"c": conversation_id}) == "NOT_FOUND"


async def test_uninstalling_a_channel_removes_its_conversations_from_the_inbox(company):
    # given a conversation on the channel
    conversation_id = (await company.inbound("hi"))["conversation"]["id"]
    # when the admin uninstalls the channel
    removed = (await company.admin.data(UNINSTALL, {"c": company.channel_id}))["uninstallChannel"]
    assert removed == company.channel_id
    # then nobody sees its conversations, nor the channel
    for client in (company.admin, company.ann):
        assert await inbox_ids(client) == set()
        assert (await client.data(COUNTS))["inboxCounts"]["unassigned"] == 0
        assert (await client.data(CONVERSATION, {"id": conversation_id}))["conversation"] is None
        assert (await client.data(CHANNELS))["channels"] == []
        assert (await client.data(NODE, {"id": company.channel_id}))["node"] is None
    assert await company.admin.error_code(CLOSE, {"c": conversation_id}) == "NOT_FOUND"
    assert await company.admin.error_code(UNINSTALL, {"c": company.channel_id}) == "NOT_FOUND"


async def test_an_uninstalled_channels_token_stops_working(company):
    await company.admin.data(UNINSTALL, {"c": company.channel_id})
    response = await company.partner.post(RECEIVE, {"input": {
        "externalMessageId": "after-uninstall", "sender": {"externalId": "c1", "name": "C"}, "body": "hi"}})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- WhatsApp closed to new customers ----------------------------------------------------------------

@pytest.fixture
async def whatsapp_closed(app_with):
    """A second app on the running server's database and hub, with INBOX_WHATSAPP_NEW_INSTALLS=false."""
    return (await app_with(whatsapp_new_installs=False)).url


async def test_whatsapp_closed_to_new_customers_refuses_a_companys_first_whatsapp(company, whatsapp_closed, http):
    admin = Client(whatsapp_closed, company.admin.token, http)
    code = await admin.error_code(INSTALL, {"i": {"kind": "WHATSAPP", "name": "Number", "whatsapp": WHATSAPP}})
    assert code == "FORBIDDEN"
    assert len((await admin.data(CHANNELS))["channels"]) == 1
    # other kinds still install
    await admin.data(INSTALL, {"i": {"kind": "MESSENGER", "name": "Page", "messenger": MESSENGER}})


async def test_whatsapp_closed_to_new_customers_lets_a_whatsapp_customer_install_another(company,
                                                                                       whatsapp_closed, http):
    # given a company that installed WhatsApp before it closed
    await company.admin.data(INSTALL, {"i": {"kind": "WHATSAPP", "name": "First number", "whatsapp": WHATSAPP}})
    # when it installs a second number after the close
    admin = Client(whatsapp_closed, company.admin.token, http)
    second = await admin.data(INSTALL, {"i": {"kind": "WHATSAPP", "name": "Second number",
                                              "whatsapp": {**WHATSAPP, "fromNumber": "+14155230000"}}})
    # then it is installed
    assert second["installChannel"]["channel"]["kind"] == "WHATSAPP"
    kinds = sorted(c["kind"] for c in (await admin.data(CHANNELS))["channels"])
    assert kinds == ["CUSTOM", "WHATSAPP", "WHATSAPP"]


async def test_whatsapp_is_open_by_default(company):
    installed = await company.admin.data(INSTALL, {"i": {"kind": "WHATSAPP", "name": "Number", "whatsapp": WHATSAPP}})
    assert installed["installChannel"]["channel"]["kind"] == "WHATSAPP"

