"""SPEC §8, bad input and limits: document limits (depth, tokens, aliases), the HTTP
body limit, page sizes, text limits, enums, cursors and dates; every refusal is
BAD_USER_INPUT and changes nothing, and an unexpected failure is masked as INTERNAL."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from graphql.language import Lexer, Source, TokenKind

from conftest import RECEIVE, Company, unique

CONTRACT_CODES = {"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "USER_UNAVAILABLE", "CONFLICT",
                  "RATE_LIMITED", "INTERNAL"}
MIB = 1024 * 1024

CONVERSATION = "query($id: ID!) { conversation(id: $id) { id status } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id status } }"
COUNTS = "{ inboxCounts { unassigned assignedToMe assignedToOthers closed unread } }"
INBOX = """query($first: Int, $after: String) { inbox(section: UNASSIGNED, first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }"""
MESSAGES = """query($id: ID!, $first: Int, $last: Int, $after: String, $before: String) { conversation(id: $id) {
  messages(first: $first, last: $last, after: $after, before: $before) {
    pageInfo { hasNextPage hasPreviousPage } edges { node { id body } } } } }"""
USERS = "{ users { id name } }"
CHANNELS = "{ channels { id name } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id name } } }"
INSTALL = "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id name } } }"


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def inbound(body: str = "hi", contact: str = "c1", name: str = "Carla", external_id: str | None = None,
            **extra) -> dict:
    return {"input": {"externalMessageId": external_id or unique("m"),
                      "sender": {"externalId": contact, "name": name}, "body": body, **extra}}


def tokens(document: str) -> int:
    """Tokens as graphql-core's `max_tokens` counts them (every token but the end of the document)."""
    lexer, count = Lexer(Source(document)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def padded(document: str, total: int) -> str:
    """`document` (ending with its closing brace) with __typename fields added to reach `total` tokens.
    Directives make each field 8 tokens so that few identical fields are needed."""
    missing = total - tokens(document)
    assert missing >= 0
    fields = "__typename @skip(if: false) " * (missing // 8) + "__typename " * (missing % 8)
    result = document[:-1] + fields + "}"
    assert tokens(result) == total
    return result


def deep_selection(depth: int) -> str:
    """The selection under a root Conversation field whose deepest field lies `depth` levels down
    (root fields are level 0, as strawberry's QueryDepthLimiter counts)."""
    levels = ["lastMessage" if level % 2 else "conversation" for level in range(1, depth)]
    return "".join(f"{field} {{ " for field in levels) + "id" + " }" * len(levels)


async def conversation_status(company: Company, conversation_id: str) -> str:
    return (await company.admin.data(CONVERSATION, {"id": conversation_id}))["conversation"]["status"]


async def open_conversation(company: Company) -> str:
    return (await company.inbound("hello"))["conversation"]["id"]


async def snapshot(company: Company) -> tuple:
    """What a refused request must leave as it was."""
    counts = (await company.admin.data(COUNTS))["inboxCounts"]
    users = (await company.admin.data(USERS))["users"]
    channels = (await company.admin.data(CHANNELS))["channels"]
    inbox = (await company.admin.data(INBOX, {"first": 100}))["inbox"]
    return counts, users, channels, inbox


def error_code(response) -> str:
    body = response.json()
    return body["errors"][0]["extensions"]["code"]


# --- document limits -------------------------------------------------------------------------------

async def test_a_query_twelve_levels_deep_runs(company):
    conversation_id = await open_conversation(company)
    query = f"query($id: ID!) {{ conversation(id: $id) {{ {deep_selection(12)} }} }}"
    data = await company.admin.data(query, {"id": conversation_id})
    assert data["conversation"]["lastMessage"]["conversation"]["lastMessage"]


async def test_a_query_deeper_than_twelve_levels_is_refused(company):
    conversation_id = await open_conversation(company)
    query = f"query($id: ID!) {{ conversation(id: $id) {{ {deep_selection(13)} }} }}"
    body = await company.admin.execute(query, {"id": conversation_id})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body.get("data") is None


async def test_a_mutation_deeper_than_twelve_levels_is_refused_before_it_runs(company):
    conversation_id = await open_conversation(company)
    mutation = f"mutation($c: ID!) {{ closeConversation(conversationId: $c) {{ {deep_selection(13)} }} }}"
    assert await company.admin.error_code(mutation, {"c": conversation_id}) == "BAD_USER_INPUT"
    assert await conversation_status(company, conversation_id) == "OPEN"


async def test_depth_counts_through_fragments(company):
    conversation_id = await open_conversation(company)
    query = (f"query($id: ID!) {{ conversation(id: $id) {{ ...Deep }} }} "
             f"fragment Deep on Conversation {{ {deep_selection(13)} }}")
    assert await company.admin.error_code(query, {"id": conversation_id}) == "BAD_USER_INPUT"


async def test_a_document_of_a_thousand_tokens_runs(company):
    query = padded("{ me { id } }", 1000)
    assert (await company.admin.data(query))["me"]["id"] == company.ids["admin"]


async def test_a_document_of_more_than_a_thousand_tokens_is_refused_before_it_runs(company):
    conversation_id = await open_conversation(company)
    mutation = padded("mutation($c: ID!) { closeConversation(conversationId: $c) { id } }", 1001)
    assert await company.admin.error_code(mutation, {"c": conversation_id}) == "BAD_USER_INPUT"
    assert await conversation_status(company, conversation_id) == "OPEN"


async def test_comments_count_as_tokens(company):
    query = "{ me { id } }\n" + "#\n" * 1000
    assert await company.admin.error_code(query) == "BAD_USER_INPUT"


async def test_thirty_aliases_run(company):
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(30)) + " }"
    data = await company.admin.data(query)
    assert len(data) == 30


async def test_more_than_thirty_aliases_are_refused_before_anything_runs(company):
    conversation_id = await open_conversation(company)
    mutation = ("mutation($c: ID!) { close: closeConversation(conversationId: $c) { id } "
                + " ".join(f"a{i}: __typename" for i in range(30)) + " }")
    assert await company.admin.error_code(mutation, {"c": conversation_id}) == "BAD_USER_INPUT"
    assert await conversation_status(company, conversation_id) == "OPEN"


# --- the HTTP body limit ---------------------------------------------------------------------------

def body_of_size(size: int, query: str, variables: dict | None = None) -> bytes:
    """A GraphQL JSON body of exactly `size` bytes, padded with an unused variable."""
    payload = {"query": query, "variables": {**(variables or {}), "padding": ""}}
    overhead = len(json.dumps(payload).encode())
    payload["variables"]["padding"] = "x" * (size - overhead)
    encoded_body = json.dumps(payload).encode()
    assert len(encoded_body) == size
    return encoded_body


async def test_a_body_of_one_mib_is_accepted(company, server, http):
    response = await http.post(f"{server.url}/graphql", content=body_of_size(MIB, "{ me { id } }"),
                               headers={"Authorization": f"Bearer {company.admin.token}",
                                        "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["data"]["me"]["id"] == company.ids["admin"]


async def test_a_body_over_one_mib_is_413_and_changes_nothing(company, server, http):
    conversation_id = await open_conversation(company)
    response = await http.post(f"{server.url}/graphql",
                               content=body_of_size(MIB + 1, CLOSE, {"c": conversation_id}),
                               headers={"Authorization": f"Bearer {company.admin.token}",
                                        "Content-Type": "application/json"})
    assert response.status_code == 413
    assert error_code(response) == "BAD_USER_INPUT"
    assert await conversation_status(company, conversation_id) == "OPEN"


async def test_a_streamed_body_over_one_mib_without_a_length_is_413(company, server, http):
    conversation_id = await open_conversation(company)
    body = body_of_size(MIB + 100, CLOSE, {"c": conversation_id})

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    response = await http.post(f"{server.url}/graphql", content=chunks(),
                               headers={"Authorization": f"Bearer {company.admin.token}",
                                        "Content-Type": "application/json"})
    assert response.status_code == 413
    assert await conversation_status(company, conversation_id) == "OPEN"


@pytest.mark.parametrize("path", ["/graphql", "/webhooks/messenger/{channel}", "/webhooks/twilio/{channel}",
                                  "/healthz"])
async def test_a_body_over_one_mib_is_413_on_every_path_even_without_a_token(server, http, path):
    response = await http.post(server.url + path.format(channel=encoded("Channel:1")), content=b"x" * (MIB + 1),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# --- page sizes ------------------------------------------------------------------------------------

async def push_all(company: Company, variables: list[dict]) -> None:
    """Many inbound messages: the set-up of the page-size tests, done in the server's process through the
    domain function that receiveChannelMessage calls (a hundred HTTP round trips cost seconds)."""
    import models
    from inbox import messages
    from schema.ids import parse_global_id

    channel = await models.Channel.get(id=parse_global_id(company.channel_id)[1])
    for item in variables:
        pushed = item["input"]
        await messages.receive(channel, messages.Inbound(
            external_message_id=pushed["externalMessageId"], sender_external_id=pushed["sender"]["externalId"],
            sender_name=pushed["sender"]["name"], body=pushed["body"]))


async def test_first_is_capped_at_a_hundred_conversations(company):
    # given 101 conversations
    await push_all(company, [inbound(contact=f"contact-{i}") for i in range(101)])
    # when a client asks for a thousand
    page = (await company.admin.data(INBOX, {"first": 1000}))["inbox"]
    # then it gets a hundred, and the rest on the next page
    assert page["totalCount"] == 101
    assert len(page["edges"]) == 100
    assert page["pageInfo"]["hasNextPage"] is True
    rest = (await company.admin.data(INBOX, {"first": 1000, "after": page["pageInfo"]["endCursor"]}))["inbox"]
    assert len(rest["edges"]) == 1 and rest["pageInfo"]["hasNextPage"] is False
    seen = {edge["node"]["id"] for edge in page["edges"] + rest["edges"]}
    assert len(seen) == 101


async def test_first_and_last_are_capped_at_a_hundred_messages(company):
    # given a conversation of 101 messages
    await push_all(company, [inbound(body=f"message {i}", contact="chatty") for i in range(101)])
    conversation_id = (await company.admin.data(INBOX, {"first": 1}))["inbox"]["edges"][0]["node"]["id"]
    for arguments, more in (({"first": 1000}, "hasNextPage"), ({"last": 1000}, "hasPreviousPage"), ({}, "hasNextPage")):
        # when a client asks for more than a hundred (or for no particular number)
        page = (await company.admin.data(MESSAGES, {"id": conversation_id, **arguments}))
        messages = page["conversation"]["messages"]
        # then it gets a hundred, and is told there are more
        assert len(messages["edges"]) == 100, arguments
        assert messages["pageInfo"][more] is True, arguments


async def test_a_negative_page_size_of_messages_is_bad_user_input(company):
    conversation_id = await open_conversation(company)
    for arguments in ({"first": -1}, {"last": -1}, {"first": -100, "last": 5}):
        code = await company.admin.error_code(MESSAGES, {"id": conversation_id, **arguments})
        assert code == "BAD_USER_INPUT", arguments


async def test_a_negative_first_in_the_inbox_is_bad_user_input(company):
    await open_conversation(company)
    assert await company.admin.error_code(INBOX, {"first": -1}) == "BAD_USER_INPUT"


# --- text limits -----------------------------------------------------------------------------------

async def test_an_empty_or_oversized_message_body_is_refused_and_nothing_is_stored(company):
    # given a conversation with one message
    message = await company.inbound("first", contact="known")
    before = await snapshot(company)
    # when a partner pushes an empty or oversized body, from the known contact and from a new one
    for body in ("", "   ", " \n\t ", "x" * 4097, "é" * 4097):
        for contact in ("known", "new-contact"):
            code = await company.partner.error_code(RECEIVE, inbound(body=body, contact=contact))
            assert code == "BAD_USER_INPUT", (body[:10], len(body))
    # then nothing changed: no new conversation, no new message
    assert await snapshot(company) == before
    page = await company.admin.data(MESSAGES, {"id": message["conversation"]["id"]})
    assert [edge["node"]["body"] for edge in page["conversation"]["messages"]["edges"]] == ["first"]


async def test_a_body_of_up_to_4096_characters_is_stored_as_typed(company):
    for body in ("x" * 4096, "é" * 4096, "  indented\n\nlines  "):
        message = (await company.partner.data(RECEIVE, inbound(body=body)))["receiveChannelMessage"]
        assert message["body"] == body
        stored = await company.admin.data(MESSAGES, {"id": message["conversation"]["id"], "last": 1})
        assert stored["conversation"]["messages"]["edges"][0]["node"]["body"] == body


def inbound_with(field: str, value: str) -> dict:
    variables = inbound()
    if field == "externalMessageId":
        variables["input"]["externalMessageId"] = value
    else:
        variables["input"]["sender"][field] = value
    return variables


async def test_an_inbound_name_or_id_over_255_characters_is_refused(company):
    before = await snapshot(company)
    for field in ("name", "externalId", "externalMessageId"):
        assert await company.partner.error_code(RECEIVE, inbound_with(field, "n" * 256)) == "BAD_USER_INPUT", field
    assert await snapshot(company) == before


async def test_an_inbound_name_or_id_may_not_be_blank(company):
    before = await snapshot(company)
    for field in ("name", "externalId", "externalMessageId"):
        for blank in ("", "  "):
            assert await company.partner.error_code(RECEIVE, inbound_with(field, blank)) == "BAD_USER_INPUT", field
    assert await snapshot(company) == before


async def test_an_inbound_name_of_255_characters_is_accepted(company):
    name = "é" * 255
    message = (await company.partner.data(RECEIVE, inbound(name=name, external_id="m" * 255)))
    assert message["receiveChannelMessage"]["senderName"] == name


async def test_an_oversized_avatar_url_is_refused(company):
    variables = inbound()
    variables["input"]["sender"]["avatarUrl"] = "https://cdn.test/" + "a" * 2048
    before = await snapshot(company)
    assert await company.partner.error_code(RECEIVE, variables) == "BAD_USER_INPUT"
    assert await snapshot(company) == before


async def test_a_user_name_empty_or_over_255_characters_is_refused(company):
    before = await snapshot(company)
    for name in ("", "   ", "n" * 256):
        variables = {"i": {"name": name, "email": f"{unique('u')}@example.com"}}
        assert await company.admin.error_code(CREATE_USER, variables) == "BAD_USER_INPUT", name
    assert await snapshot(company) == before


async def test_a_user_name_of_255_characters_is_accepted(company):
    name = "n" * 255
    created = await company.admin.data(CREATE_USER, {"i": {"name": name, "email": f"{unique('u')}@example.com"}})
    assert created["createUser"]["user"]["name"] == name


async def test_an_email_over_320_characters_is_refused(company):
    before = await snapshot(company)
    email = "e" * 310 + "@example.com"
    assert await company.admin.error_code(CREATE_USER, {"i": {"name": "E", "email": email}}) == "BAD_USER_INPUT"
    assert await snapshot(company) == before


async def test_a_channel_name_empty_or_over_255_characters_is_refused(company):
    before = await snapshot(company)
    for name in ("", "  ", "c" * 256):
        code = await company.admin.error_code(INSTALL, {"i": {"kind": "CUSTOM", "name": name}})
        assert code == "BAD_USER_INPUT", name
    assert await snapshot(company) == before


async def test_oversized_channel_settings_are_refused(company):
    before = await snapshot(company)
    for config in ({"kind": "MESSENGER", "messenger": {"pageId": "p" * 1025, "appSecret": "s", "verifyToken": "v",
                                                       "pageAccessToken": "t"}},
                   {"kind": "CUSTOM", "custom": {"callbackUrl": "https://partner.test/" + "c" * 2048}}):
        assert await company.admin.error_code(INSTALL, {"i": {"name": "Big", **config}}) == "BAD_USER_INPUT", config
    assert await snapshot(company) == before


# --- enums, cursors, dates -------------------------------------------------------------------------

async def test_an_unknown_enum_value_in_a_literal_is_bad_user_input(company):
    for literal in ("NOPE", "unassigned", '"UNASSIGNED"'):
        query = f"{{ inbox(section: {literal}) {{ totalCount }} }}"
        assert await company.admin.error_code(query) == "BAD_USER_INPUT", literal


async def test_an_unknown_enum_value_in_variables_is_bad_user_input(company):
    query = "query($s: InboxSection!) { inbox(section: $s) { totalCount } }"
    for value in ("NOPE", "unassigned", "", 1, None):
        assert await company.admin.error_code(query, {"s": value}) == "BAD_USER_INPUT", value


async def test_an_unknown_channel_kind_installs_nothing(company):
    before = await snapshot(company)
    assert await company.admin.error_code(INSTALL, {"i": {"kind": "SMS", "name": "Texts"}}) == "BAD_USER_INPUT"
    assert await snapshot(company) == before


async def test_a_malformed_inbox_cursor_is_bad_user_input(company):
    await open_conversation(company)
    for cursor in ("garbage!", "", encoded("c:not-a-date|1"), encoded("c:2024-01-01T00:00:00|1"),
                   encoded("c:2024-01-01T00:00:00+00:00|x"), encoded("m:1"), "x" * 300):
        assert await company.admin.error_code(INBOX, {"first": 10, "after": cursor}) == "BAD_USER_INPUT", cursor


async def test_a_malformed_message_cursor_is_bad_user_input(company):
    conversation_id = await open_conversation(company)
    inbox_cursor = (await company.admin.data(INBOX, {"first": 1}))["inbox"]["edges"][0]["cursor"]
    for argument in ("after", "before"):
        for cursor in ("garbage!", encoded("m:abc"), inbox_cursor):
            code = await company.admin.error_code(MESSAGES, {"id": conversation_id, argument: cursor})
            assert code == "BAD_USER_INPUT", (argument, cursor)


async def test_a_sent_at_without_an_offset_or_malformed_is_refused_and_nothing_is_stored(company):
    before = await snapshot(company)
    for sent_at in ("2024-05-01T10:00:00", "yesterday", "2024-13-01T10:00:00+00:00", "", 1714557600):
        assert await company.partner.error_code(RECEIVE, inbound(sentAt=sent_at)) == "BAD_USER_INPUT", sent_at
    assert await snapshot(company) == before


async def test_a_sent_at_without_an_offset_in_a_literal_is_refused(company):
    before = await snapshot(company)
    mutation = """mutation { receiveChannelMessage(input: {externalMessageId: "lit-1",
      sender: {externalId: "c", name: "C"}, body: "hi", sentAt: "2024-05-01T10:00:00"}) { id } }"""
    assert await company.partner.error_code(mutation) == "BAD_USER_INPUT"
    assert await snapshot(company) == before


async def test_a_sent_at_with_an_offset_is_the_same_instant(company):
    message = (await company.partner.data(RECEIVE, inbound(sentAt="2024-05-01T10:00:00+02:00")))
    sent_at = datetime.fromisoformat(message["receiveChannelMessage"]["sentAt"])
    assert sent_at == datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


# --- error codes -----------------------------------------------------------------------------------

BAD_REQUESTS = {
    "syntax error": {"json": {"query": "{ me { id "}},
    "unknown field": {"json": {"query": "{ me { password } }"}},
    "unknown argument": {"json": {"query": "{ me(id: 1) { id } }"}},
    "missing argument": {"json": {"query": "{ conversation { id } }"}},
    "wrong literal type": {"json": {"query": "{ inbox(section: UNASSIGNED, first: \"ten\") { totalCount } }"}},
    "integer out of range": {"json": {"query": "{ inbox(section: UNASSIGNED, first: 99999999999) { totalCount } }"}},
    "undefined variable": {"json": {"query": "{ conversation(id: $id) { id } }"}},
    "unused variable": {"json": {"query": "query($x: ID) { me { id } }"}},
    "missing variable": {"json": {"query": "query($id: ID!) { conversation(id: $id) { id } }"}},
    "null variable": {"json": {"query": "query($id: ID!) { conversation(id: $id) { id } }", "variables": {"id": None}}},
    "wrong variable type": {"json": {"query": "query($n: Int) { inbox(section: UNASSIGNED, first: $n) { totalCount } }",
                                     "variables": {"n": "ten"}}},
    "unknown input field": {"json": {"query": CREATE_USER, "variables": {"i": {"name": "A", "email": "a@b.co",
                                                                               "role": "x"}}}},
    "unknown operation name": {"json": {"query": "query A { me { id } }", "operationName": "B"}},
    "no query": {"json": {"variables": {}}},
    "query not a string": {"json": {"query": ["{ me { id } }"]}},
    "variables not an object": {"json": {"query": "{ me { id } }", "variables": [1]}},
    "a batch": {"json": [{"query": "{ me { id } }"}]},
    "invalid JSON": {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    "empty body": {"content": b"", "headers": {"Content-Type": "application/json"}},
    "unsupported content type": {"content": b"{ me { id } }", "headers": {"Content-Type": "text/plain"}},
}


async def test_a_bad_request_is_a_json_graphql_error_with_bad_user_input(company, server, http):
    for name, request in BAD_REQUESTS.items():
        request = dict(request)
        headers = {"Authorization": f"Bearer {company.admin.token}", **request.pop("headers", {})}
        response = await http.post(f"{server.url}/graphql", headers=headers, **request)
        assert response.headers["content-type"].startswith("application/json"), name
        errors = response.json().get("errors")
        assert errors and {error["extensions"]["code"] for error in errors} == {"BAD_USER_INPUT"}, name


async def test_a_mutation_over_get_is_a_json_graphql_error(company, server, http):
    response = await http.get(f"{server.url}/graphql",
                              params={"query": "mutation { setAvailability(available: false) { available } }"},
                              headers={"Authorization": f"Bearer {company.admin.token}",
                                       "Accept": "application/json"})
    assert response.status_code == 400
    assert error_code(response) == "BAD_USER_INPUT"
    assert (await company.admin.data("{ me { available } }"))["me"]["available"] is True


async def test_every_refusal_carries_a_contract_code(company, other_company, server, http):
    conversation_id = await open_conversation(company)
    foreign_id = await open_conversation(other_company)
    refusals = [
        (company.bob, CLOSE, {"c": conversation_id}),
        (company.ann, "mutation($c: ID!) { deleteConversation(conversationId: $c) }", {"c": conversation_id}),
        (company.admin, CLOSE, {"c": foreign_id}),
        (company.ann, CREATE_USER, {"i": {"name": "X", "email": "x@example.com"}}),
        (company.partner, "{ me { id } }", None),
        (company.admin, RECEIVE, inbound()),
        (company.admin, "{ node(id: \"!!\") { id } }", None),
    ]
    for client, query, variables in refusals:
        body = await client.execute(query, variables)
        assert body["errors"], query
        for error in body["errors"]:
            assert error["extensions"]["code"] in CONTRACT_CODES - {"INTERNAL"}, error


async def test_an_unexpected_failure_is_masked_as_internal_without_details(company, monkeypatch):
    from inbox import sections

    async def broken(*args, **kwargs):
        raise RuntimeError('relation "secret_table" does not exist: SELECT password_hash FROM secret_table')

    # given a server whose database fails in an unexpected way
    monkeypatch.setattr(sections, "counts", broken)
    # when a client asks for the counts
    response = await company.admin.post(COUNTS)
    # then it gets INTERNAL, and nothing about the cause
    body = response.json()
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL"}
    assert body["errors"][0]["message"] == "Internal server error"
    for leak in ("secret_table", "password_hash", "RuntimeError", "Traceback", "sections.py", 'File "'):
        assert leak not in response.text


async def test_an_unexpected_failure_in_a_mutation_is_masked_as_internal(company, monkeypatch):
    from inbox import conversations

    async def broken(*args, **kwargs):
        raise KeyError("internal-detail-42")

    conversation_id = await open_conversation(company)
    monkeypatch.setattr(conversations, "close", broken)
    body = await company.admin.execute(CLOSE, {"c": conversation_id})
    assert [error["extensions"]["code"] for error in body["errors"]] == ["INTERNAL"]
    assert "internal-detail-42" not in json.dumps(body)


@pytest.mark.parametrize("accept", ["application/json", "multipart/mixed;subscriptionSpec=1.0, application/json"])
async def test_a_subscription_over_plain_http_is_refused_with_bad_user_input(company, accept):
    admin = company.admin
    response = await admin.http.post(f"{admin.base_url}/graphql",
                                     json={"query": "subscription { conversationChanged { id } }"},
                                     headers={"Authorization": f"Bearer {admin.token}", "Accept": accept})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
