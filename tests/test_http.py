"""GraphQL over HTTP (server/http.py): the direct path answers a JSON POST exactly as
strawberry's view does (same status, headers and bytes), hands everything else to the
view, and the signed-in user's token is known per process without serving stale data."""
from __future__ import annotations

import json

import httpx
import pytest

import models
from schema.ids import pk_of
from server.app import InboxGraphQL
from server.http import GraphQLHTTP

ME = "{ me { id name email isAdmin available } }"
NODE = "query($id: ID!) { node(id: $id) { id ... on User { name available } } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id status } }"
SET_AVAILABILITY = "mutation($a: Boolean!) { setAvailability(available: $a) { id available } }"
TWO_OPERATIONS = "query A { me { id } } query B { users { id name } }"
RECEIVE = """mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }"""


class CountingView(InboxGraphQL):
    """The view, counting the requests it answers."""

    runs = 0

    async def run(self, request, *args, **kwargs):
        self.runs += 1
        return await super().run(request, *args, **kwargs)


async def answers(server, token: str | None, content: bytes, headers: dict | None = None):
    """The same request to the endpoint with its direct path and to the endpoint without it
    (strawberry's view alone): both responses, and whether the direct path answered."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {}),
               **(headers or {})}
    responses = []
    for direct in (True, False):
        view = CountingView(server.settings)
        endpoint = GraphQLHTTP(view)
        assert endpoint.direct is not None, "the schema has something the direct path does not reproduce"
        if not direct:
            endpoint.direct = None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint), base_url="http://inbox.test") as http:
            responses.append(await http.post("/graphql", content=content, headers=headers))
        if direct:
            answered_directly = view.runs == 0
    return responses[0], responses[1], answered_directly


def same(direct: httpx.Response, view: httpx.Response) -> None:
    assert (direct.status_code, direct.content) == (view.status_code, view.content)
    assert direct.headers.multi_items() == view.headers.multi_items()


def body(query: str, variables: dict | None = None, **more) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}, **more}).encode()


async def conversation_of(company) -> str:
    return (await company.inbound("hello"))["conversation"]["id"]


# -- the direct path answers as the view ---------------------------------------------------------


@pytest.mark.parametrize("query, variables", [
    (ME, None),
    ("{ users { id name available } channels { id name } }", None),
    (TWO_OPERATIONS, {"operationName": "B"}),
])
async def test_a_query_is_answered_directly_with_the_views_bytes(server, company, query, variables):
    extra = variables or {}
    direct, view, directly = await answers(server, company.ann.token, body(query, **extra))
    same(direct, view)
    assert directly and direct.status_code == 200 and "errors" not in direct.json()


async def test_variables_are_used_directly(server, company):
    content = body(NODE, {"id": company.ids["bob"]})
    direct, view, directly = await answers(server, company.ann.token, content)
    same(direct, view)
    assert directly and direct.json()["data"]["node"] == {"id": company.ids["bob"], "name": "Bob Agent",
                                                          "available": True}


async def test_a_mutation_is_answered_directly(server, company):
    direct, view, directly = await answers(server, company.ann.token, body(SET_AVAILABILITY, {"a": False}))
    same(direct, view)
    assert directly and direct.json() == {"data": {"setAvailability": {"id": company.ids["ann"],
                                                                       "available": False}}}


@pytest.mark.parametrize("case", ["not found", "malformed id", "null for a non-null variable",
                                  "variable of the wrong type"])
async def test_a_refusal_has_the_views_code_and_status(server, company, case):
    conversation = await conversation_of(company)
    query, variables = {
        "not found": (CLOSE, {"c": "Q29udmVyc2F0aW9uOjA="}),
        "malformed id": (CLOSE, {"c": "!!"}),
        "null for a non-null variable": (CLOSE, {"c": None}),
        "variable of the wrong type": (SET_AVAILABILITY, {"a": "yes"}),
    }[case]
    direct, view, directly = await answers(server, company.bob.token, body(query, variables))
    same(direct, view)
    assert directly and direct.json()["errors"][0]["extensions"]["code"] in {"NOT_FOUND", "BAD_USER_INPUT"}
    # and nothing changed
    status = await company.admin.data("query($c: ID!) { conversation(id: $c) { status } }", {"c": conversation})
    assert status["conversation"]["status"] == "OPEN"


async def test_a_channel_token_asking_for_a_user_is_401_directly(server, company):
    direct, view, directly = await answers(server, company.partner.token, body("{ me { id } }"))
    same(direct, view)
    assert directly and direct.status_code == 401
    assert direct.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_unexpected_failure_is_masked_directly(server, company, monkeypatch):
    from inbox import sections

    async def broken(*args, **kwargs):
        raise RuntimeError("SELECT password_hash FROM secret_table")

    monkeypatch.setattr(sections, "counts", broken)
    direct, view, directly = await answers(server, company.ann.token,
                                           body("{ inboxCounts { unassigned } me { id } }"))
    same(direct, view)
    assert directly and direct.json()["errors"] == [{"message": "Internal server error", "locations": [
        {"line": 1, "column": 3}], "path": ["inboxCounts"], "extensions": {"code": "INTERNAL"}}]
    assert "secret_table" not in direct.text


# -- everything else is the view's --------------------------------------------------------------


def deep(depth: int) -> str:
    """A conversation query whose deepest field lies `depth` levels down (as test_limits)."""
    levels = ["lastMessage" if level % 2 else "conversation" for level in range(1, depth)]
    return ("query($id: ID!) { conversation(id: $id) { " + "".join(f"{field} {{ " for field in levels) + "id"
            + " }" * len(levels) + " } }")


@pytest.mark.parametrize("content, headers", [
    (body("{ me { id nope } }"), None),  # does not validate
    (body("{ me { id "), None),  # does not parse
    (body("{ me { id } }" + "\n#" * 1000), None),  # over 1,000 tokens (comments count)
    (body("{ " + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + " }"), None),  # 31 aliases
    (body(deep(13), {"id": "Q29udmVyc2F0aW9uOjA="}), None),  # 13 levels deep
    (body("subscription { messageAdded { id } }"), None),
    (body(TWO_OPERATIONS), None),  # two operations, no name (strawberry runs the first)
    (body(TWO_OPERATIONS, operationName="C"), None),  # no such operation
    (body("{ me { id } }", extensions={"tracing": {}}), None),  # (persisted queries: test_frontends.py)
    (b"{not json", None),
    (b'[{"query": "{ me { id } }"}]', None),  # a batch
    (json.dumps({"query": "{ me { id } }", "variables": "x"}).encode(), None),
    (json.dumps({"variables": {}}).encode(), None),  # no query
    (json.dumps({"query": 5}).encode(), None),
    (body("{ me { id } }"), {"content-type": "text/plain"}),
    (body("subscription { messageAdded { id } }"), {"accept": "multipart/mixed;subscriptionSpec=1.0"}),
    (body("subscription { messageAdded { id } }"), {"accept": "text/event-stream"}),
])
async def test_any_other_request_is_the_views_and_answered_as_before(server, company, content, headers):
    direct, view, directly = await answers(server, company.ann.token, content, headers)
    same(direct, view)
    assert not directly
    assert direct.status_code in (200, 400, 401)
    if direct.headers["content-type"] == "application/json":
        assert all(error["extensions"]["code"] == "BAD_USER_INPUT" for error in direct.json().get("errors", []))


async def test_a_query_twelve_levels_deep_is_answered_directly(server, company):
    conversation = await conversation_of(company)
    direct, view, directly = await answers(server, company.ann.token, body(deep(12), {"id": conversation}))
    same(direct, view)
    assert directly and direct.json()["data"]["conversation"]["lastMessage"]["conversation"]["lastMessage"]


async def test_a_missing_or_unknown_token_is_401_before_anything_runs(server):
    for token in (None, "usr_unknown", "chn_unknown"):
        direct, view, directly = await answers(server, token, body("{ me { id } }"))
        same(direct, view)
        assert direct.status_code == 401


# -- the signed-in user, known per process --------------------------------------------------------


async def test_a_known_users_request_runs_no_sql_for_who_they_are(company, count_queries):
    # Given ann, who has signed in before
    await company.ann.data("{ me { id } }")
    # When she asks who she is, the fewest statements of three tries (background workers
    # log to the same counter)
    tries = []
    for _ in range(3):
        count_queries.count = 0
        await company.ann.data("{ me { id name isAdmin } }")
        tries.append(count_queries.count)
    # Then the answer needs no statement
    assert min(tries) == 0


async def test_availability_changed_elsewhere_reads_fresh_for_a_known_user(company):
    # Given ann, who has signed in and reads as available
    assert (await company.ann.data("{ me { available } }"))["me"]["available"] is True
    # When another process makes her unavailable (here: straight in the database)
    await models.User.filter(id=pk_of(company.ids["ann"], "User")).update(available=False)
    # Then she reads as unavailable at once, in `me` and among the users
    assert (await company.ann.data("{ me { id available } }"))["me"]["available"] is False
    users = (await company.ann.data("{ users { id available } }"))["users"]
    assert {"id": company.ids["ann"], "available": False} in users


async def test_availability_set_by_a_user_reads_fresh_in_their_next_request(company):
    await company.ann.data(SET_AVAILABILITY, {"a": False})
    assert (await company.ann.data("{ me { available } }"))["me"]["available"] is False
    await company.ann.data(SET_AVAILABILITY, {"a": True})
    assert (await company.ann.data("{ me { available } }"))["me"]["available"] is True


async def test_an_uninstalled_channels_token_is_refused_at_once(company):
    # Given a partner that has pushed a message with the channel's token
    await company.inbound("before")
    # When the admin uninstalls the channel
    await company.admin.data("mutation($c: ID!) { uninstallChannel(channelId: $c) }", {"c": company.channel_id})
    # Then the very next push is refused
    response = await company.partner.post(RECEIVE, {"i": {
        "externalMessageId": "after", "sender": {"externalId": "c1", "name": "C"}, "body": "hi"}})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_known_user_is_a_copy_per_request_with_availability_unknown(company):
    # Given ann's token, known to the process: each request gets its own copy of her, with
    # availability to be read fresh, and setting it leaves the copy so (a websocket's
    # viewer lives as long as the socket)
    from inbox.accounts import authenticate, availability, set_availability

    first, second = await authenticate(company.ann.token), await authenticate(company.ann.token)
    assert first is not second and first.available is None
    assert (await set_availability(first, False)).available is False
    assert first.available is None and second.available is None
    assert await availability(first.id) is False


def test_the_access_log_is_off_unless_the_environment_turns_it_on(monkeypatch):
    from server.config import Settings
    from server.serving import uvicorn_options

    monkeypatch.delenv("INBOX_ACCESS_LOG", raising=False)
    assert uvicorn_options(Settings.from_env())["access_log"] is False
    monkeypatch.setenv("INBOX_ACCESS_LOG", "true")
    assert uvicorn_options(Settings.from_env())["access_log"] is True
