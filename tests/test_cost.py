"""Issue 11, parts 1 and 4: what one operation may cost (SPEC §8). Its static cost is
refused before anything runs, on every path (HTTP straight to graphql-core or through
strawberry's view, websocket queries and subscriptions); a real inbox page stays under
the bound in a fixed number of statements; a query over its time budget is cancelled;
documents are cached within a bound in bytes; every text input is bounded before SQL."""
from __future__ import annotations

import asyncio
import gc
import json
import os
import uuid

import pytest
import websockets

from conftest import DEADLINE, staff_company, unique
from server.metrics import REFUSALS

BOUND = 10_000

# The attack of issue 11: 20 messages, each with 5 pages of 20, each of whose messages
# has 5 more pages of 20: about 200,000 message nodes.
_INNER = " ".join(f"b{i}: messages(first: 20) {{ edges {{ node {{ body }} }} }}" for i in range(5))
_MIDDLE = " ".join(f"a{i}: messages(first: 20) {{ edges {{ node {{ conversation {{ {_INNER} }} }} }} }}"
                   for i in range(5))
ATTACK = ("query($id: ID!) { conversation(id: $id) { messages(first: 20) { edges { node { conversation { "
          + _MIDDLE + " } } } } } }")
# The conversation, its page of 20 and their 20 conversations, 5 pages of 20 for each
# (2,000) and their 2,000 conversations, then 5 pages of 20 for each of those.
ATTACK_COST = 1 + 20 + 20 + 20 * 100 + 2_000 + 2_000 * 100

PAGE = """
query($first: Int) {
  inbox(section: UNASSIGNED, first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id status unreadCount lastMessageAt
      contact { id name avatarUrl }
      assignee { id name }
      links { id createdAt target { ... on Person { id name } ... on Lead { id title } ... on Deal { id title } } }
      messages(last: 20) { pageInfo { hasPreviousPage startCursor }
                           edges { cursor node { id body sentAt direction status senderName } } }
    } }
  }
}"""

LINK = """
mutation($c: ID!, $t: LinkTargetInput!) { linkConversation(conversationId: $c, target: $t) { id } }"""


def refused_as_too_costly(body: dict) -> int:
    """The cost named by a QUERY_TOO_COSTLY refusal (fails on any other answer)."""
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["reason"] == "QUERY_TOO_COSTLY", error
    return error["extensions"]["cost"]


def refusals(bound: str) -> float:
    return REFUSALS.labels(bound=bound)._value.get()


async def fewest_statements(count_queries, run, tries: int = 3) -> int:
    """The fewest SQL statements of a few runs: background workers (the send queue's
    poll) log theirs to the same counter."""
    counts = []
    for _ in range(tries):
        count_queries.count = 0
        await run()
        counts.append(count_queries.count)
    return min(counts)


async def a_conversation(company, messages: int = 3) -> str:
    contact = unique("contact")
    for number in range(messages):
        message = await company.inbound(f"message {number}", contact=contact)
    return message["conversation"]["id"]


# -- the cost, on every path ------------------------------------------------------------------


async def test_the_nested_messages_attack_is_refused_before_anything_runs(company, count_queries):
    # Given a conversation of 25 messages
    conversation = await a_conversation(company, 25)
    await company.ann.data("{ me { id } }")  # her token is known: a request of hers needs no SQL
    before = refusals("query_cost")

    # When the attack is posted (the HTTP path straight to graphql-core)
    bodies = []

    async def attack():
        bodies.append(await company.ann.execute(ATTACK, {"id": conversation}))

    statements = await fewest_statements(count_queries, attack)

    # Then it is refused with its cost, and not one statement ran
    assert {refused_as_too_costly(body) for body in bodies} == {ATTACK_COST}
    assert statements == 0
    assert refusals("query_cost") == before + 3


async def test_the_attack_is_refused_through_strawberrys_view_too(company, server, http):
    conversation = await a_conversation(company, 1)

    # When the attack comes as a GET (strawberry's view answers those)
    response = await http.get(f"{server.url}/graphql", params={"query": ATTACK,
                                                                "variables": json.dumps({"id": conversation})},
                              headers={"Authorization": f"Bearer {company.ann.token}"})

    # Then the view refuses it the same way
    assert refused_as_too_costly(response.json()) == ATTACK_COST


async def test_the_attack_is_refused_as_a_websocket_query(company, subscribers):
    conversation = await a_conversation(company, 1)
    sub = await subscribers(company.ann.token)

    op = await sub.subscribe(ATTACK, {"id": conversation})

    message = await sub.receive()
    assert (message["type"], message["id"]) == ("error", op), message
    [error] = message["payload"]
    assert (error["extensions"]["reason"], error["extensions"]["cost"]) == ("QUERY_TOO_COSTLY", ATTACK_COST)


COSTLY_SUBSCRIPTION = """
subscription($c: ID!) { messageAdded(conversationId: $c) { id conversation {
  a0: messages(first: 100) { edges { node { conversation { messages(first: 100) { edges { node { id } } } } } } }
} } }"""
CHEAP_SUBSCRIPTION = "subscription($c: ID!) { messageAdded(conversationId: $c) { id body } }"


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_subscription_costing_more_per_event_than_the_bound_is_refused(company, server, protocol):
    # Given a conversation, and a socket of ann's
    conversation = await a_conversation(company, 1)
    socket = await websockets.connect(server.ws_url, subprotocols=[protocol])
    try:
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"authorization": f"Bearer {company.ann.token}"}}))
        assert json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"

        async def receive() -> dict:
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
                if message["type"] not in ("ping", "pong", "ka"):
                    return message

        # When she subscribes with a selection that would return 10,000+ objects per event
        await socket.send(json.dumps({"id": "costly", "type": start, "payload": {
            "query": COSTLY_SUBSCRIPTION, "variables": {"c": conversation}}}))

        # Then that operation is refused with its cost (the socket stays open)
        refusal = await receive()
        assert (refusal["type"], refusal["id"]) == ("error", "costly"), refusal
        payload = refusal["payload"]
        error = payload[0] if isinstance(payload, list) else payload
        assert error["extensions"]["reason"] == "QUERY_TOO_COSTLY", refusal
        assert error["extensions"]["cost"] == 1 + 1 + 100 + 100 * (1 + 100)

        # And it never runs: a cheap subscription on the same socket gets the next
        # message, and nothing ever comes for the refused one
        await socket.send(json.dumps({"id": "cheap", "type": start, "payload": {
            "query": CHEAP_SUBSCRIPTION, "variables": {"c": conversation}}}))
        from conftest import subscriptions_live
        await subscriptions_live(company)
        message = await company.inbound("to the conversation", contact=(await _contact_of(company, conversation)))
        delivered = await receive()
        assert delivered["id"] == "cheap", delivered
        assert delivered["payload"]["data"]["messageAdded"]["id"] == message["id"]
    finally:
        await socket.close()


async def _contact_of(company, conversation: str) -> str:
    found = await company.ann.data("query($id: ID!) { conversation(id: $id) { contact { externalId } } }",
                                   {"id": conversation})
    return found["conversation"]["contact"]["externalId"]


async def test_the_cost_follows_the_variables_of_each_request(company):
    # Given one document whose page sizes are variables
    conversation = await a_conversation(company, 2)
    nested = """query($id: ID!, $n: Int) { conversation(id: $id) { messages(first: $n) { edges { node {
                  conversation { messages(first: $n) { edges { node { id } } } } } } } } }"""

    # When it asks for pages of 5, then of 100, then of 5 again
    small = await company.ann.data(nested, {"id": conversation, "n": 5})
    large = await company.ann.execute(nested, {"id": conversation, "n": 100})
    again = await company.ann.data(nested, {"id": conversation, "n": 5})

    # Then each is judged by its own variables (1 + 100 + 100 × (1 + 100) objects is over)
    assert len(small["conversation"]["messages"]["edges"]) == 2 and again == small
    assert refused_as_too_costly(large) == 1 + 100 + 100 * 101


async def test_lists_without_pages_count_at_their_cap_and_return_no_more(company):
    # Given a conversation with more events than the cap (one per message, and CREATED)
    conversation = await a_conversation(company, 105)

    # When its events are read, and when a page of 100 conversations asks for theirs
    events = (await company.ann.data("query($id: ID!) { conversation(id: $id) { events { id kind } } }",
                                     {"id": conversation}))["conversation"]["events"]
    costly = await company.ann.execute(
        "{ inbox(section: UNASSIGNED, first: 100) { edges { node { id events { id } } } } }")

    # Then it returns the latest 100, oldest first, and the page counts 100 events each
    assert len(events) == 100
    assert events[-1]["kind"] == "MESSAGE_ADDED"
    assert refused_as_too_costly(costly) == 100 + 100 * 100


def test_every_list_of_objects_declares_the_cap_its_resolver_enforces():
    from graphql import GraphQLList, GraphQLObjectType, get_named_type, get_nullable_type, is_composite_type

    from schema import schema
    from schema.cost import MAX_ITEMS

    uncapped = []
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            is_list = isinstance(get_nullable_type(field.type), GraphQLList)
            edges = name == "edges" and "pageInfo" in type_.fields
            if is_list and is_composite_type(get_named_type(field.type)) and not edges:
                definition = field.extensions.get("strawberry-definition")
                if MAX_ITEMS not in getattr(definition, "metadata", {}):
                    uncapped.append(f"{type_.name}.{name}")
    assert uncapped == []


async def test_a_conversation_links_to_at_most_ten_items(company):
    conversation = await a_conversation(company, 1)
    for number in range(10):
        await company.ann.data(LINK, {"c": conversation, "t": {"newPerson": {"name": f"Person {number}"}}})

    body = await company.ann.execute(LINK, {"c": conversation, "t": {"newPerson": {"name": "One too many"}}})

    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    persons = await company.ann.data('{ persons(search: "One too many") { edges { node { id } } } }')
    assert persons["persons"]["edges"] == []  # the item it would have made is not kept either


async def test_a_page_of_conversations_with_their_lists_runs_a_fixed_number_of_statements(company, count_queries):
    # Given thirty unassigned conversations, each with three messages and linked to a person
    for number in range(30):
        conversation = await a_conversation(company, 3)
        await company.ann.data(LINK, {"c": conversation, "t": {"newPerson": {"name": f"Linked {number}"}}})

    # When pages of 5 and of 30 are read, with their contacts, assignees, links and last 20 messages
    async def page(size: int) -> int:
        async def read():
            found = await company.ann.data(PAGE, {"first": size})
            assert len(found["inbox"]["edges"]) == size
            assert all(len(edge["node"]["messages"]["edges"]) == 3 and len(edge["node"]["links"]) == 1
                       for edge in found["inbox"]["edges"])
        return await fewest_statements(count_queries, read)

    small, large = await page(5), await page(30)

    # Then both ran the same statements, one per kind of row: the viewer's channels, the
    # page (contacts, assignees, last messages), the total, links, persons, messages, and
    # the conversations and contacts that name the messages' senders
    assert small == large, (small, large)
    assert large <= 8, large
    # And a page of a hundred is allowed, well under the bound
    assert (await company.ann.data(PAGE, {"first": 100}))["inbox"]["totalCount"] == 30


PERSONS_WITH_NOTES = """query($first: Int) { persons(first: $first) { edges { node { id
  notes { id content conversation { id contact { name } } target { ... on Person { id } } } } } } }"""


async def test_persons_with_their_notes_and_conversations_run_a_fixed_number_of_statements(company,
                                                                                          count_queries):
    # Given twelve persons, each linked to a conversation of their own (so with a note)
    for number in range(12):
        conversation = await a_conversation(company, 1)
        await company.ann.data(LINK, {"c": conversation, "t": {"newPerson": {"name": f"Noted {number}"}}})

    # When pages of 3 and of 12 persons are read with their notes and the notes' conversations
    async def page(size: int) -> int:
        async def read():
            found = await company.ann.data(PERSONS_WITH_NOTES, {"first": size})
            assert all(edge["node"]["notes"][0]["conversation"]["id"] for edge in found["persons"]["edges"])
        return await fewest_statements(count_queries, read)

    small, large = await page(3), await page(12)

    # Then both ran the same statements: persons, notes, their lines, the viewer's
    # channels, the visible conversations, their contacts, the notes' persons
    assert small == large, (small, large)
    assert large <= 7, large


# -- the execution budget -----------------------------------------------------------------------


@pytest.fixture
async def tight_budget_server(fakes, mailbox):
    """An `inbox serve` process of its own whose queries have a microsecond each: every
    query that waits once for the database overruns it."""
    from cluster import INBOX, ServerProcess, run, server_env

    directory = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"inbox-budget-{uuid.uuid4().hex[:8]}")
    os.makedirs(directory)
    env = {**server_env(f"sqlite://{directory}/inbox.sqlite3", "memory://", unique("budget"), fakes, mailbox),
           "INBOX_QUERY_TIMEOUT_SECONDS": "0.000001"}
    process = await ServerProcess(env, "budget").start()
    code, output = await run(INBOX, "bootstrap", "--company", "Budget", "--admin-name", "Ada",
                             "--admin-email", "ada@example.com", env=env)
    assert code == 0, output
    token = json.loads(output.strip().splitlines()[-1])["token"]
    yield process, token
    await process.stop()


BUDGETED = """query($id: ID!) { conversation(id: $id) { messages(first: 20) { edges { node {
               conversation { messages(first: 20) { edges { node { body } } } } } } } } }"""


async def test_a_query_over_its_budget_is_cancelled_on_every_path(tight_budget_server, http):
    process, token = tight_budget_server
    # Given a conversation (mutations run to their end whatever the budget)
    company = await staff_company(process.url, http, token)
    message = await company.inbound("hello")
    variables = {"id": message["conversation"]["id"]}

    def timed_out(body: dict) -> None:
        assert body.get("data") is None, body
        [error] = body["errors"]
        assert (error["extensions"]["code"], error["extensions"]["reason"]) == ("BAD_USER_INPUT", "QUERY_TIMEOUT")

    # When the query runs over HTTP (straight to graphql-core, and through the view)
    timed_out(await company.ann.execute(BUDGETED, variables))
    response = await http.get(f"{process.url}/graphql", params={"query": BUDGETED, "variables": json.dumps(variables)},
                              headers={"Authorization": f"Bearer {company.ann.token}"})
    timed_out(response.json())
    # and over a websocket
    socket = await websockets.connect(process.ws_url, subprotocols=["graphql-transport-ws"])
    try:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))["type"] == "connection_ack"
        await socket.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": BUDGETED, "variables": variables}}))
        answer = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
    finally:
        await socket.close()
    assert answer["type"] in ("error", "next"), answer
    payload = answer["payload"]
    timed_out({"data": None, "errors": payload} if isinstance(payload, list) else payload)

    # Then the server still serves: health, and a mutation with its result
    assert await process.healthz() == 200
    again = await company.inbound("still here", contact="c1")
    assert again["conversation"]["id"] == variables["id"]


# -- documents and their caches --------------------------------------------------------------------


async def test_long_documents_are_not_cached_on_any_path(company, server, subscribers):
    from graphql.language import Source

    from schema.documents import CACHE_BYTES, DOCUMENTS, LONGEST_CACHED

    # When distinct queries padded to 900 KB arrive over HTTP (straight to graphql-core,
    # and through the view, which a request's `extensions` sends it to), and padded to
    # 200 KB over a websocket
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    for number in range(10):
        padded = "{ me { id } }" + " " * (900_000 + number)
        assert (await company.ann.data(padded))["me"]["id"] == company.ids["ann"]
        response = await company.ann.http.post(f"{server.url}/graphql", headers=headers,
                                               json={"query": padded + " ", "extensions": {}})
        assert response.json()["data"]["me"]["id"] == company.ids["ann"], response.text
    sub = await subscribers(company.ann.token)
    for number in range(10):
        await sub.subscribe("{ me { id } }" + " " * (200_000 + number))
        assert (await sub.next_data())["me"]["id"] == company.ids["ann"]
        assert (await sub.receive())["type"] == "complete"

    # Then no parsed document of a long text is kept anywhere in the server (a parsed
    # document holds its whole text), and the cache stays within its bytes
    gc.collect()
    assert not [source for source in gc.get_objects()
                if isinstance(source, Source) and len(source.body) > LONGEST_CACHED]
    assert all(len(key[0]) <= LONGEST_CACHED for key in DOCUMENTS._entries)
    assert DOCUMENTS.bytes <= CACHE_BYTES


def test_the_document_cache_drops_the_oldest_beyond_its_bytes():
    from schema.documents import TOKEN_BYTES, Documents

    # Given a cache of 256 KB
    cache = Documents(max_bytes=256 * 1024)

    # When 200 distinct documents pass through it
    for number in range(200):
        cache.parsed(f"{{ a{number}: me {{ id name email }} }}", 1000, ())

    # Then it holds what fits in 256 KB, the latest ones
    assert cache.bytes <= 256 * 1024
    assert 0 < len(cache) < 200
    assert ("{ a199: me { id name email } }", 1000, ()) in cache._entries
    assert ("{ a0: me { id name email } }", 1000, ()) not in cache._entries
    assert min(document.size for document in cache._entries.values()) > 10 * TOKEN_BYTES


@pytest.mark.parametrize("document", [
    'query { a(s: "a  #  b\\"  c", t: """ x "" y  \\""" z #q  """) , b # c "x\n  d(x: "") }',
    "{ a # a comment\r\n  b }",
    "{ a\n\n\n# c\n\n b }",
    '{ a(s: "#") #"\n b }',
    '{ a(s: """\n\n  x  \n""") }',
])
def test_a_long_document_is_read_as_the_same_document_without_its_padding(document):
    from graphql import parse, print_ast

    from schema.documents import LONGEST_CACHED, compact

    padded = document + ",  \n" * LONGEST_CACHED

    compacted = compact(padded, 1000)

    assert len(compacted) < len(document) + 10
    assert print_ast(parse(compacted)) == print_ast(parse(padded))


def test_strawberrys_unbounded_document_caches_are_not_used():
    from strawberry.extensions import ParserCache, ValidationCache

    from schema import schema

    assert not [e for e in schema.get_extensions() if isinstance(e, (ParserCache, ValidationCache))]


# -- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["inbox(section: UNASSIGNED, search: $s) { edges { cursor } }",
                                   "persons(search: $s) { edges { cursor } }"])
async def test_a_search_over_200_characters_is_refused(company, field):
    query = f"query($s: String) {{ {field} }}"

    assert await company.ann.data(query, {"s": "x" * 200})
    assert await company.ann.error_code(query, {"s": "x" * 201}) == "BAD_USER_INPUT"


# Longer than any text limit (note content: 500,000), the tail marked: a value cut to its
# limit never shows the mark.
MARK = "END-OF-A-VERY-LONG-VALUE"
LONG = "x" * 600_000 + MARK

# Every text argument and input field of the schema, each in an operation whose other
# inputs are valid: (the schema's path to it, the operation, its variables with LONG in it).
TEXT_INPUTS = [
    ("Query.node.id", "query($v: ID!) { node(id: $v) { id } }", lambda c: {"v": LONG}),
    ("Query.assignableUsers.conversationId", "query($v: ID!) { assignableUsers(conversationId: $v) { id } }",
     lambda c: {"v": LONG}),
    ("Query.inbox.channelId", "query($v: ID) { inbox(section: CLOSED, channelId: $v) { totalCount } }",
     lambda c: {"v": LONG}),
    ("Query.inbox.search", "query($v: String) { inbox(section: CLOSED, search: $v) { totalCount } }",
     lambda c: {"v": LONG}),
    ("Query.inbox.after", "query($v: String) { inbox(section: CLOSED, after: $v) { totalCount } }",
     lambda c: {"v": LONG}),
    ("Query.inboxCounts.channelId", "query($v: ID) { inboxCounts(channelId: $v) { closed } }", lambda c: {"v": LONG}),
    ("Query.conversation.id", "query($v: ID!) { conversation(id: $v) { id } }", lambda c: {"v": LONG}),
    ("Query.persons.search", "query($v: String) { persons(search: $v) { edges { cursor } } }", lambda c: {"v": LONG}),
    ("Query.persons.after", "query($v: String) { persons(after: $v) { edges { cursor } } }", lambda c: {"v": LONG}),
    ("Query.notifications.after", "query($v: String) { notifications(after: $v) { edges { cursor } } }",
     lambda c: {"v": LONG}),
    *[(f"Mutation.{name}.conversationId", f"mutation($v: ID!) {{ {name}(conversationId: $v) {{ id }} }}",
       lambda c: {"v": LONG})
      for name in ("unassignConversation", "closeConversation", "reopenConversation", "markConversationRead")],
    ("Mutation.deleteConversation.conversationId", "mutation($v: ID!) { deleteConversation(conversationId: $v) }",
     lambda c: {"v": LONG}),
    ("Mutation.assignConversation.conversationId",
     "mutation($v: ID!, $u: ID!) { assignConversation(conversationId: $v, userId: $u) { id } }",
     lambda c: {"v": LONG, "u": c["ann"]}),
    ("Mutation.assignConversation.userId",
     "mutation($v: ID!, $c: ID!) { assignConversation(conversationId: $c, userId: $v) { id } }",
     lambda c: {"v": LONG, "c": c["conversation"]}),
    ("CreateUserInput.name", "mutation($i: CreateUserInput!) { createUser(input: $i) { apiToken } }",
     lambda c: {"i": {"name": LONG, "email": f"{unique('u')}@example.com"}}),
    ("CreateUserInput.email", "mutation($i: CreateUserInput!) { createUser(input: $i) { apiToken } }",
     lambda c: {"i": {"name": "Long", "email": LONG}}),
    *[(f"InstallChannelInput.{key}" if key == "name" else f"{form}.{key}",
       "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channelToken } }",
       (lambda form_key, kind, config, key: lambda c: {"i": {
           "kind": kind, "name": LONG if key == "name" else "Long",
           **({form_key: {**config, key: LONG}} if key != "name" else {})}})(form_key, kind, config, key))
      for form, form_key, kind, config in (
          ("MessengerConfigInput", "messenger", "MESSENGER",
           {"pageId": "p", "appSecret": "s", "verifyToken": "v", "pageAccessToken": "t"}),
          ("TwilioConfigInput", "whatsapp", "WHATSAPP", {"accountSid": "AC1", "authToken": "t", "fromNumber": "+1"}),
          ("CustomConfigInput", "custom", "CUSTOM", {"callbackUrl": "https://partner.example/cb"}),
          ("TelegramConfigInput", "telegram", "TELEGRAM", {"botToken": "123:AAH"}))
      for key in (*config, *(["name"] if form_key == "custom" else []))],
    *[(f"Mutation.{name}.channelId", f"mutation($v: ID!, $u: [ID!]!) {{ {name}(channelId: $v, userIds: $u) {{ id }} }}",
       lambda c: {"v": LONG, "u": [c["bob"]]}) for name in ("shareChannel", "unshareChannel")],
    *[(f"Mutation.{name}.userIds", f"mutation($c: ID!, $v: [ID!]!) {{ {name}(channelId: $c, userIds: $v) {{ id }} }}",
       lambda c: {"c": c["channel"], "v": [LONG]}) for name in ("shareChannel", "unshareChannel")],
    ("Mutation.uninstallChannel.channelId", "mutation($v: ID!) { uninstallChannel(channelId: $v) }",
     lambda c: {"v": LONG}),
    ("Mutation.sendMessage.conversationId", "mutation($v: ID!) { sendMessage(conversationId: $v, body: \"b\") { id } }",
     lambda c: {"v": LONG}),
    ("Mutation.sendMessage.body", "mutation($c: ID!, $v: String!) { sendMessage(conversationId: $c, body: $v) { id } }",
     lambda c: {"c": c["conversation"], "v": LONG}),
    ("Mutation.sendMessage.clientMessageId",
     "mutation($c: ID!, $v: String) { sendMessage(conversationId: $c, body: \"b\", clientMessageId: $v) { id } }",
     lambda c: {"c": c["conversation"], "v": LONG}),
    *[(f"AttachmentInput.{key}",
       "mutation($c: ID!, $a: [AttachmentInput!]) { sendMessage(conversationId: $c, attachments: $a) { id } }",
       (lambda key: lambda c: {"c": c["conversation"], "a": [
           {"kind": "FILE", "url": "https://files.example/a.pdf", "name": "a.pdf", key: LONG}]})(key))
      for key in ("url", "name")],
    *[(f"TemplateInput.{key}",
       "mutation($c: ID!, $t: TemplateInput) { sendMessage(conversationId: $c, template: $t) { id } }",
       (lambda template: lambda c: {"c": c["conversation"], "t": template})(template))
      for key, template in (("contentSid", {"contentSid": LONG}),
                            ("variables", {"contentSid": "HX1", "variables": [LONG]}))],
    ("Mutation.linkConversation.conversationId",
     "mutation($v: ID!, $t: LinkTargetInput!) { linkConversation(conversationId: $v, target: $t) { id } }",
     lambda c: {"v": LONG, "t": {"personId": c["person"]}}),
    *[(f"LinkTargetInput.{key}",
       "mutation($c: ID!, $t: LinkTargetInput!) { linkConversation(conversationId: $c, target: $t) { id } }",
       (lambda key: lambda c: {"c": c["conversation"], "t": {key: LONG}})(key))
      for key in ("personId", "leadId", "dealId")],
    *[(f"{form}.{key}", f"mutation($i: {form}!) {{ {name}(input: $i) {{ id }} }}",
       (lambda valid, key: lambda c: {"i": {**valid, key: LONG}})(valid, key))
      for form, name, valid in (("PersonInput", "createPerson", {"name": "P"}),
                                ("LeadInput", "createLead", {"title": "L"}),
                                ("DealInput", "createDeal", {"title": "D"}))
      for key in {"PersonInput": ("name", "email", "phone"), "LeadInput": ("title", "personId"),
                  "DealInput": ("title", "currency", "personId")}[form]],
    ("Mutation.unlinkConversation.linkId", "mutation($v: ID!) { unlinkConversation(linkId: $v) }",
     lambda c: {"v": LONG}),
    ("Mutation.updateNote.id", "mutation($v: ID!) { updateNote(id: $v, content: \"c\") { id } }",
     lambda c: {"v": LONG}),
    ("Mutation.updateNote.content", "mutation($n: ID!, $v: String!) { updateNote(id: $n, content: $v) { id } }",
     lambda c: {"n": c["note"], "v": LONG}),
    ("Mutation.deleteNote.id", "mutation($v: ID!) { deleteNote(id: $v) }", lambda c: {"v": LONG}),
    ("Mutation.markNotificationsRead.ids", "mutation($v: [ID!]) { markNotificationsRead(ids: $v) }",
     lambda c: {"v": [LONG]}),
]

# Partner operations, with the CUSTOM channel's token.
PARTNER_TEXT_INPUTS = [
    ("Mutation.updateChannelMessageStatus.externalMessageId",
     "mutation($v: String!) { updateChannelMessageStatus(externalMessageId: $v, status: SENT) { id } }",
     lambda c: {"v": LONG}),
    ("Mutation.updateChannelMessageStatus.failureReason",
     "mutation($v: String) { updateChannelMessageStatus(externalMessageId: \"x\", status: FAILED, "
     "failureReason: $v) { id } }", lambda c: {"v": LONG}),
    *[(name, "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }",
       (lambda build: lambda c: {"i": build({"externalMessageId": unique("m"), "body": "b",
                                              "sender": {"externalId": "s", "name": "S"}})})(build))
      for name, build in (
          ("ReceiveMessageInput.externalMessageId", lambda i: {**i, "externalMessageId": LONG}),
          ("ReceiveMessageInput.body", lambda i: {**i, "body": LONG}),
          ("ReceivedSenderInput.externalId", lambda i: {**i, "sender": {**i["sender"], "externalId": LONG}}),
          ("ReceivedSenderInput.name", lambda i: {**i, "sender": {**i["sender"], "name": LONG}}),
          ("ReceivedSenderInput.avatarUrl", lambda i: {**i, "sender": {**i["sender"], "avatarUrl": LONG}}))],
]

# Over a websocket: a shorter value (frames are bounded), still over any ID or cursor's 200.
SUBSCRIPTION_TEXT_INPUTS = [
    ("Subscription.messageAdded.conversationId", "subscription($v: ID) { messageAdded(conversationId: $v) { id } }"),
    ("Subscription.messageAdded.after", "subscription($v: String) { messageAdded(after: $v) { id } }"),
    ("Subscription.messageUpdated.conversationId",
     "subscription($v: ID) { messageUpdated(conversationId: $v) { id } }"),
    ("Subscription.conversationChanged.conversationId",
     "subscription($v: ID) { conversationChanged(conversationId: $v) { id } }"),
    ("Subscription.messageUpdated.after", "subscription($v: String) { messageUpdated(after: $v) { id } }"),
    ("Subscription.conversationChanged.after", "subscription($v: String) { conversationChanged(after: $v) { id } }"),
    ("Subscription.notificationReceived.after", "subscription($v: String) { notificationReceived(after: $v) { id } }"),
]


def test_every_text_input_of_the_schema_is_covered_below():
    from graphql import GraphQLInputObjectType, get_named_type

    from schema import schema

    graphql_schema = schema._schema
    texts = set()
    for root in (graphql_schema.query_type, graphql_schema.mutation_type, graphql_schema.subscription_type):
        for name, field in root.fields.items():
            texts |= {f"{root.name}.{name}.{arg}" for arg, argument in field.args.items()
                      if get_named_type(argument.type).name in ("String", "ID")}
    for type_ in graphql_schema.type_map.values():
        if isinstance(type_, GraphQLInputObjectType) and not type_.name.startswith("__"):
            texts |= {f"{type_.name}.{name}" for name, field in type_.fields.items()
                      if get_named_type(field.type).name in ("String", "ID")}
    covered = {path for path, *_ in (*TEXT_INPUTS, *PARTNER_TEXT_INPUTS, *SUBSCRIPTION_TEXT_INPUTS)}
    assert texts - covered == set()


async def test_every_text_input_is_bounded_before_it_reaches_sql(company, count_queries):
    # Given a company with a conversation, a linked person (so a note) and a lead and deal
    message = await company.inbound("hello")
    conversation = message["conversation"]["id"]
    link = await company.admin.data("""mutation($c: ID!) { linkConversation(conversationId: $c,
        target: { newPerson: { name: "Pat" } }) { id target { ... on Person { id notes { id } } } } }""",
                                    {"c": conversation})
    person = link["linkConversation"]["target"]
    ids = {"conversation": conversation, "ann": company.ids["ann"], "bob": company.ids["bob"],
           "channel": company.channel_id, "person": person["id"], "note": person["notes"][0]["id"]}

    # When each text input gets a value longer than any limit (the others valid)
    answers = {}
    for clients, inputs in ((company.admin, TEXT_INPUTS), (company.partner, PARTNER_TEXT_INPUTS)):
        for path, query, variables in inputs:
            count_queries.statements.clear()
            body = await clients.execute(query, variables(ids))
            answers[path] = body.get("errors", [{}])[0].get("extensions", {}).get("code")
            # Then its end never reaches an SQL statement
            assert not [m for m in count_queries.statements if MARK in m], path

    # And each was refused as bad input, except a failure reason, which is cut and kept
    # (here: no such message)
    assert {path: code for path, code in answers.items() if code != "BAD_USER_INPUT"} == {
        "Mutation.updateChannelMessageStatus.failureReason": "NOT_FOUND"}


async def test_every_text_input_of_a_subscription_is_bounded_before_it_reaches_sql(company, subscribers,
                                                                                   count_queries):
    sub = await subscribers(company.ann.token)
    long = "x" * 5_000 + MARK
    for path, query in SUBSCRIPTION_TEXT_INPUTS:
        count_queries.statements.clear()
        op = await sub.subscribe(query, {"v": long})
        message = await sub.receive()
        assert (message["type"], message["id"]) == ("error", op), (path, message)
        assert message["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT", (path, message)
        assert not [m for m in count_queries.statements if MARK in m], path
