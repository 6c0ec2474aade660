"""GraphQL over HTTP: the signed-in user's token is known per process without serving
stale data."""
from __future__ import annotations

import models
from schema.ids import pk_of

SET_AVAILABILITY = "mutation($a: Boolean!) { setAvailability(available: $a) { id available } }"
RECEIVE = """mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }"""


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


async def test_a_known_users_request_changes_no_other_request_of_theirs(server, company):
    # Given ann's token known to the process, when one request of hers makes her
    # unavailable, then a request of hers running at the same time is not touched:
    # each request has its own copy of her
    from inbox.accounts import authenticate

    first, second = await authenticate(company.ann.token), await authenticate(company.ann.token)
    assert first is not second
    first.available = False
    assert second.available is None
