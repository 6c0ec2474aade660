"""Property-based fuzzing of the whole GraphQL surface (issue 11): documents generated
from the live schema by hypothesis-graphql, posted to the real server with an admin's,
a member's, a partner's (CUSTOM channel) and no token, and sent over websockets with the
users' tokens. Whatever a client sends, the answer is never a 5xx, never INTERNAL and
never a stack trace: refusals (BAD_USER_INPUT, FORBIDDEN, NOT_FOUND, UNAUTHENTICATED...)
are fine.

Hypothesis drives sync tests only, and the server runs on the test session's event
loop: each HTTP run happens in a thread (a sync httpx client) while the loop keeps
serving. Runs are derandomized and bounded so that CI is reproducible and quick; raise
EXAMPLES and turn `derandomize` off to explore."""
from __future__ import annotations

import asyncio
import json
import string
from datetime import timezone

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from conftest import DEADLINE, Company, Subscriber, staff_company, unique
from schema import schema
from schema.ids import (NODE_TYPES, conversation_cursor, global_id, message_cursor, notification_cursor,
                        person_cursor)

EXAMPLES = 200
SCHEMA = schema._schema

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck), print_blob=False)

LINK = """mutation($c: ID!) { linkConversation(conversationId: $c, target: {newPerson: {name: "Pat"}}) {
  id target { ... on Person { id notes { id } } } } }"""
REPLY = "mutation($c: ID!) { sendMessage(conversationId: $c, body: \"hi\") { id } }"


async def seeded_company(server, http, fakes) -> tuple[Company, list[str]]:
    """A company with a conversation, a reply, a link, a note and an event: the ids a
    client could know, for the generated documents to reach past ID parsing."""
    from inbox.accounts import bootstrap

    _, _, admin_token = await bootstrap(unique("Fuzz"), "Ada Admin", f"{unique('ada')}@example.com")
    company = await staff_company(server.url, http, admin_token, fakes.callback_url(unique("fuzz")))
    message = await company.inbound("hello")
    conversation = message["conversation"]["id"]
    reply = await company.admin.data(REPLY, {"c": conversation})
    link = (await company.admin.data(LINK, {"c": conversation}))["linkConversation"]
    events = await company.admin.data("query($c: ID!) { conversation(id: $c) { events { id } } }",
                                      {"c": conversation})
    known = [company.channel_id, conversation, message["id"], reply["sendMessage"]["id"], link["id"],
             link["target"]["id"], *[note["id"] for note in link["target"]["notes"]],
             *company.ids.values(), *[event["id"] for event in events["conversation"]["events"]]]
    return company, known


def id_values(known: list[str]) -> st.SearchStrategy[graphql.ValueNode]:
    """IDs a client could send: real ones (of this company and another), well-formed ones
    of missing rows or of any type, and junk."""
    forged = st.builds(global_id, st.sampled_from(sorted(NODE_TYPES | {"Nope"})),
                       st.integers(min_value=0, max_value=10**19))
    return st.one_of(st.sampled_from(known), forged, st.text(max_size=30)).map(nodes.String)


def string_values() -> st.SearchStrategy[graphql.ValueNode]:
    """Words, text (with a NUL now and then, which PostgreSQL cannot store), long text, and
    cursors of every kind, well-formed or not, for the `after`/`before` arguments."""
    keys = st.integers(min_value=0, max_value=10**19)
    cursors = st.one_of(keys.map(message_cursor), keys.map(person_cursor), keys.map(notification_cursor),
                        st.builds(conversation_cursor, st.datetimes(timezones=st.just(timezone.utc)), keys))
    # plain words pass the inputs' checks, so that the calls reach past them
    words = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)
    return st.one_of(words, words, st.text(), st.text().map(lambda text: text + "\x00"), cursors,
                     st.just(" " * 300), st.just("x" * 5000)).map(nodes.String)


def datetime_values() -> st.SearchStrategy[graphql.ValueNode]:
    return st.one_of(st.datetimes().map(lambda moment: moment.isoformat()), st.text(max_size=40)).map(nodes.String)


ROOT_FIELDS = sorted([*SCHEMA.query_type.fields, *SCHEMA.mutation_type.fields])
PARTNER_FIELDS = ["receiveChannelMessage", "updateChannelMessageStatus"]


def documents(known: list[str], fields: list[str]) -> st.SearchStrategy[str]:
    """Mostly valid documents of one root field each, so that every field gets its share
    (a failing non-null mutation field stops the ones after it); some of several fields,
    and some invalid ones (one schema violation each)."""
    scalars = {"ID": id_values(known), "String": string_values(), "DateTime": datetime_values()}
    one_field = st.one_of(*(from_schema(SCHEMA, fields=[name], custom_scalars=scalars) for name in fields))
    return st.one_of(one_field, one_field, one_field, from_schema(SCHEMA, custom_scalars=scalars),
                     from_schema(SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE))


def failure_of(response: httpx.Response) -> str | None:
    """What is wrong with an answer, or None when it is a fine one (data or refusals)."""
    text = response.text
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {text[:2000]}"
    if "Traceback" in text or 'File "' in text or "stacktrace" in text:
        return f"a stack trace: {text[:2000]}"
    try:
        body = response.json()
    except ValueError:
        return f"not JSON (HTTP {response.status_code}): {text[:2000]}"
    for error in body.get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        if code is None or code == "INTERNAL":
            return f"error {code}: {json.dumps(error)[:2000]}"
    return None


def fuzz(url: str, token: str | None, known: list[str], fields: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=DEADLINE) as client:
        @FUZZ_SETTINGS
        @given(document=documents(known, fields))
        def answers_without_failing(document: str) -> None:
            response = client.post(f"{url}/graphql", json={"query": document}, headers=headers)
            failure = failure_of(response)
            assert failure is None, f"{document}\n-> {failure}"

        answers_without_failing()


@pytest.fixture(scope="module")
async def foreign_ids(server, fakes):
    """The ids of another company, which every fuzzed company may be sent too."""
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        _, known = await seeded_company(server, http, fakes)
    return known


@pytest.mark.parametrize("who", ["admin", "member", "partner", "nobody"])
async def test_no_document_makes_the_server_fail(server, fakes, http, foreign_ids, who):
    # A company of its own: the admin's documents uninstall channels (revoking the
    # partner's token) and delete conversations.
    company, known = await seeded_company(server, http, fakes)
    token = {"admin": company.admin.token, "member": company.ann.token, "partner": company.partner.token,
             "nobody": None}[who]
    # A partner's token authenticates two mutations only: half of its documents aim there.
    fields = ROOT_FIELDS + PARTNER_FIELDS * (len(ROOT_FIELDS) // 2) if who == "partner" else ROOT_FIELDS
    await asyncio.to_thread(fuzz, server.url, token, known + foreign_ids, fields)


# --- over websockets ---------------------------------------------------------------------------------

# hypothesis-graphql writes queries and mutations: subscriptions are written as queries of
# a schema whose query type is the Subscription type, one root field each.
SUBSCRIPTION_ROOT = graphql.GraphQLSchema(query=SCHEMA.subscription_type, types=list(SCHEMA.type_map.values()))
WS_SUBSCRIPTIONS = 40
WS_QUERIES = 20


def as_subscription(document: graphql.DocumentNode) -> str:
    return "subscription " + graphql.print_ast(document)


def websocket_documents(known: list[str]) -> tuple[st.SearchStrategy[str], st.SearchStrategy[str]]:
    """Subscriptions, and queries (mutations over HTTP only: one that uninstalls the
    channel would stop the events the subscriptions wait for)."""
    scalars = {"ID": id_values(known), "String": string_values(), "DateTime": datetime_values()}
    subscriptions = st.one_of(*(from_schema(SUBSCRIPTION_ROOT, fields=[name], custom_scalars=scalars,
                                            print_ast=as_subscription) for name in SCHEMA.subscription_type.fields))
    queries = st.one_of(*(from_schema(SCHEMA, fields=[name], custom_scalars=scalars)
                          for name in SCHEMA.query_type.fields))
    return subscriptions, queries


def generated(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    """`count` examples of a strategy, the same ones on every run."""
    found: list[str] = []

    @settings(FUZZ_SETTINGS, max_examples=count, phases=[Phase.generate])
    @given(document=strategy)
    def collect(document: str) -> None:
        found.append(document)

    collect()
    return found


def frame_failure(raw: str) -> str | None:
    """What is wrong with a server's websocket message, or None."""
    if "Traceback" in raw or 'File "' in raw:
        return f"a stack trace: {raw[:2000]}"
    message = json.loads(raw)
    errors = message.get("payload") if message["type"] == "error" else (message.get("payload") or {}).get("errors")
    for error in errors or ():
        code = (error.get("extensions") or {}).get("code")
        if code is None or code == "INTERNAL":
            return f"error {code}: {json.dumps(error)[:2000]}"
    return None


async def answers(subscriber: Subscriber, until, quiet: float = 0.3) -> list[str]:
    """The messages received until `until(ids answered so far)` holds, then until the
    socket has been quiet for `quiet` seconds (events still on their way)."""
    received, answered = [], set()
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        waiting = max(0.0, deadline - asyncio.get_running_loop().time()) if not until(answered) else quiet
        try:
            raw = await asyncio.wait_for(subscriber.socket.recv(), waiting)
        except asyncio.TimeoutError:
            if until(answered):
                return received
            raise AssertionError(f"no answer within {DEADLINE:g} s; answered so far: {sorted(answered)}")
        received.append(raw)
        answered.add(json.loads(raw).get("id"))


@pytest.mark.parametrize("who", ["admin", "member"])
async def test_no_document_over_a_websocket_makes_the_server_fail(server, fakes, http, foreign_ids, subscribers,
                                                                 who):
    company, known = await seeded_company(server, http, fakes)
    viewer = company.admin if who == "admin" else company.ann
    subscriptions, queries = websocket_documents(known + foreign_ids)
    documents = [*await asyncio.to_thread(generated, subscriptions, WS_SUBSCRIPTIONS),
                 *await asyncio.to_thread(generated, queries, WS_QUERIES)]
    subscriber = await subscribers(viewer.token)
    sent = {await subscriber.subscribe(document): document for document in documents}
    sentinel = await subscriber.subscribe("subscription { messageAdded { id } }")
    # when every query has answered (the subscriptions sent before them are set up by then),
    # events for the live subscriptions: a message in, a reply out (its status follows), an
    # assignment to the viewer (a notification)
    query_ids = {op for op, document in sent.items() if not document.startswith("subscription")}
    received = await answers(subscriber, lambda answered: query_ids <= answered)
    conversation = (await company.inbound("fuzz"))["conversation"]["id"]
    await company.admin.data(REPLY, {"c": conversation})
    await company.admin.data("mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }",
                             {"c": conversation, "u": company.ids["ann" if who == "member" else "admin"]})
    received += await answers(subscriber, lambda answered: sentinel in answered)
    failures = [f"{sent.get(json.loads(raw).get('id'), '?')}\n-> {failure}" for raw in received
                if (failure := frame_failure(raw))]
    assert not failures, "\n\n".join(failures)


# --- what the fuzzing found ---------------------------------------------------------------------------

NODE = "query($id: ID!) { node(id: $id) { id } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id } }"
MESSAGES_AFTER = """query($c: ID!, $after: String) { conversation(id: $c) {
  messages(first: 5, after: $after) { edges { node { id } } } } }"""
CREATE_PERSON = "mutation($i: PersonInput!) { createPerson(input: $i) { id } }"
PERSONS = "{ persons(first: 100) { edges { node { id name } } } }"
STATUS = """mutation($e: String!) { updateChannelMessageStatus(externalMessageId: $e, status: DELIVERED) {
  id status } }"""


async def test_an_id_or_cursor_beyond_every_key_reads_as_missing_not_as_an_internal_error(company):
    # given a conversation with a message
    message = await company.inbound("hello")
    conversation = message["conversation"]["id"]
    # when an ID or cursor names a key no table can hold (PostgreSQL's integer ends at 2**31 - 1)
    beyond = global_id("Conversation", 2**31)
    # then the ID reads as a missing row, as any other well-formed ID of one does
    assert (await company.admin.data(NODE, {"id": beyond}))["node"] is None
    assert await company.admin.error_code(CLOSE, {"c": beyond}) == "NOT_FOUND"
    # and the cursor stands past every message
    page = await company.admin.data(MESSAGES_AFTER, {"c": conversation, "after": message_cursor(10**15)})
    assert page["conversation"]["messages"]["edges"] == []
    # while a number of more than 18 digits is no ID at all, and nothing changed
    assert await company.admin.error_code(CLOSE, {"c": global_id("Conversation", 10**18)}) == "BAD_USER_INPUT"
    details = await company.admin.data("query($c: ID!) { conversation(id: $c) { status } }", {"c": conversation})
    assert details["conversation"]["status"] == "OPEN"


@pytest.mark.parametrize("how", ["variable", "literal"])
async def test_text_with_a_nul_character_is_refused_before_anything_is_stored(company, how):
    # given a company's persons
    before = await company.admin.data(PERSONS)
    # when a client sends text with a NUL character (PostgreSQL's text cannot hold one)
    if how == "variable":
        body = await company.admin.execute(CREATE_PERSON, {"i": {"name": "Pat\x00"}})
    else:
        body = await company.admin.execute('mutation { createPerson(input: {name: "Pat\\u0000"}) { id } }')
    # then it is refused as bad input, not failed inside the database, and nothing is stored
    assert [error["extensions"]["code"] for error in body["errors"]] == ["BAD_USER_INPUT"]
    assert "NUL" in body["errors"][0]["message"]
    assert await company.admin.data(PERSONS) == before


async def test_a_partner_message_with_a_nul_character_is_refused_and_not_stored(company):
    body = await company.partner.execute(
        "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }",
        {"i": {"externalMessageId": unique("m"), "sender": {"externalId": "c1", "name": "Jo"}, "body": "hi\x00"}})
    assert [error["extensions"]["code"] for error in body["errors"]] == ["BAD_USER_INPUT"]
    counts = await company.admin.data("{ inboxCounts { unassigned } }")
    assert counts["inboxCounts"]["unassigned"] == 0


async def test_a_status_report_naming_an_overlong_external_id_is_refused_not_internal(company):
    # given a partner's channel; when it reports on an id longer than any stored one
    body = await company.partner.execute(STATUS, {"e": "x" * 300})
    # then it is refused as bad input before any lookup (it failed in the ORM before);
    # text inputs are bounded before they reach SQL (issue 11)
    assert [error["extensions"]["code"] for error in body["errors"]] == ["BAD_USER_INPUT"]


async def test_a_message_a_partner_pushes_answers_every_field_of_its_message(company):
    # given a partner pushing a message; when it asks for every field a partner may read
    body = await company.partner.execute(
        "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id cursor updateCursor } }",
        {"i": {"externalMessageId": unique("m"), "sender": {"externalId": "c1", "name": "Jo"}, "body": "hi"}})
    # then it gets them (the message built from the batch insert had no update_seq: INTERNAL)
    assert "errors" not in body, body
    assert body["data"]["receiveChannelMessage"]["updateCursor"]


def test_the_nul_refusal_is_written_for_graphql_core_3_3_2():
    # borrowed/graphql_string.py wraps the built-in String scalar's coercion functions of this version
    from borrowed import graphql_string as text_inputs

    assert graphql.version == "3.3.2"
    assert graphql.GraphQLString.coerce_input_value is text_inputs.coerce_value
    assert graphql.GraphQLString.coerce_input_literal is text_inputs.coerce_literal
