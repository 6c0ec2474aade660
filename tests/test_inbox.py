"""SPEC §2, the inbox: sections per viewer, ordering and stable pagination, search,
counts, new conversations, idempotent inbound, availability, assignment, close and
reopen, delete and restore, read state, events and the fields of a conversation."""
from __future__ import annotations

import asyncio

from conftest import Client, Company, unique

SECTIONS = ("UNASSIGNED", "ASSIGNED_TO_ME", "ASSIGNED_TO_OTHERS", "CLOSED")

INBOX = """
query($section: InboxSection!, $channelId: ID, $search: String, $first: Int, $after: String) {
  inbox(section: $section, channelId: $channelId, search: $search, first: $first, after: $after) {
    totalCount
    edges { cursor node { id section } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""

CONVERSATION = """
query($id: ID!) {
  conversation(id: $id) {
    id status section unreadCount assignee { id }
    contact { name externalId channel { id } }
    events { kind actor { id } assignee { id } message { id } }
  }
}"""

COUNTS = """
query($channelId: ID) {
  inboxCounts(channelId: $channelId) { unassigned assignedToMe assignedToOthers closed unread }
}"""

ASSIGN = """
mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id status section assignee { id } } }"""
UNASSIGN = "mutation($c: ID!) { unassignConversation(conversationId: $c) { id status section assignee { id } } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id status section assignee { id } } }"
REOPEN = "mutation($c: ID!) { reopenConversation(conversationId: $c) { id status section assignee { id } } }"
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
MARK_READ = "mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount } }"
SET_AVAILABILITY = "mutation($a: Boolean!) { setAvailability(available: $a) { id available } }"


# -- helpers ---------------------------------------------------------------------------------

async def page(client: Client, section: str, **arguments) -> dict:
    return (await client.data(INBOX, {"section": section, **arguments}))["inbox"]


async def section_ids(client: Client, section: str, **arguments) -> list[str]:
    found = await page(client, section, first=100, **arguments)
    return [edge["node"]["id"] for edge in found["edges"]]


async def sections_of(client: Client, conversation_id: str) -> list[str]:
    """Every section of the viewer's inbox that lists the conversation."""
    return [section for section in SECTIONS if conversation_id in await section_ids(client, section)]


async def conversation(client: Client, conversation_id: str) -> dict | None:
    return (await client.data(CONVERSATION, {"id": conversation_id}))["conversation"]


async def new_conversation(company: Company, contact: str | None = None, body: str = "hello") -> str:
    message = await company.inbound(body, contact=contact or unique("contact"))
    return message["conversation"]["id"]


async def assign(client: Client, conversation_id: str, user_id: str) -> dict:
    return (await client.data(ASSIGN, {"c": conversation_id, "u": user_id}))["assignConversation"]


async def counts(client: Client, channel_id: str | None = None) -> dict:
    return (await client.data(COUNTS, {"channelId": channel_id}))["inboxCounts"]


async def new_user(company: Company, name: str, *, is_admin: bool = False) -> tuple[Client, str]:
    data = await company.admin.data(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } apiToken } }",
        {"i": {"name": name, "email": f"{unique('user')}@example.com", "isAdmin": is_admin}})
    payload = data["createUser"]
    return Client(company.admin.base_url, payload["apiToken"], company.admin.http), payload["user"]["id"]


async def second_channel(company: Company) -> tuple[str, Client]:
    """Another CUSTOM channel, installed by the admin and shared with nobody."""
    data = await company.admin.data(
        "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }",
        {"i": {"kind": "CUSTOM", "name": "Second app"}})
    payload = data["installChannel"]
    return payload["channel"]["id"], Client(company.admin.base_url, payload["channelToken"], company.admin.http)


def kinds(found: dict) -> list[str]:
    return [event["kind"] for event in found["events"]]


# -- sections --------------------------------------------------------------------------------

async def test_sections_are_as_each_viewer_sees_them(company):
    # Given an unassigned, a conversation of ann's, one of the admin's and a closed one
    unassigned = await new_conversation(company)
    anns = await new_conversation(company)
    await assign(company.admin, anns, company.ids["ann"])
    admins = await new_conversation(company)
    await assign(company.ann, admins, company.ids["admin"])
    closed = await new_conversation(company)
    await assign(company.ann, closed, company.ids["ann"])
    await company.ann.data(CLOSE, {"c": closed})

    # Then each viewer sees them in its own sections
    expected = {
        "ann": {"UNASSIGNED": [unassigned], "ASSIGNED_TO_ME": [anns], "ASSIGNED_TO_OTHERS": [admins],
                "CLOSED": [closed]},
        "admin": {"UNASSIGNED": [unassigned], "ASSIGNED_TO_ME": [admins], "ASSIGNED_TO_OTHERS": [anns],
                  "CLOSED": [closed]},
    }
    for viewer, by_section in expected.items():
        client = getattr(company, viewer)
        for section, ids in by_section.items():
            assert await section_ids(client, section) == ids, (viewer, section)
            for conversation_id in ids:
                assert (await conversation(client, conversation_id))["section"] == section, (viewer, section)


async def test_users_without_access_see_no_section(company):
    # Given a conversation on a channel bob is not a member of
    conversation_id = await new_conversation(company)

    # Then bob sees it nowhere, and counts nothing
    for section in SECTIONS:
        assert await section_ids(company.bob, section) == []
    assert await conversation(company.bob, conversation_id) is None
    assert await counts(company.bob) == {"unassigned": 0, "assignedToMe": 0, "assignedToOthers": 0,
                                         "closed": 0, "unread": 0}


async def test_deleted_conversations_appear_nowhere(company):
    # Given a closed, deleted conversation and an open one
    kept = await new_conversation(company)
    deleted = await new_conversation(company)
    await company.admin.data(CLOSE, {"c": deleted})
    await company.admin.data(DELETE, {"c": deleted})

    # Then the deleted one is in no section, no search, no count, and not found
    for client in (company.admin, company.ann):
        assert await sections_of(client, deleted) == []
        assert await section_ids(client, "UNASSIGNED", search="hello") == [kept]
        assert await conversation(client, deleted) is None
        assert await counts(client) == {"unassigned": 1, "assignedToMe": 0, "assignedToOthers": 0,
                                        "closed": 0, "unread": 1}
    assert (await company.admin.data("query($id: ID!) { node(id: $id) { id } }", {"id": deleted}))["node"] is None


async def test_sections_are_ordered_by_latest_activity_newest_first(company):
    # Given three conversations, the oldest of which then gets a new message
    first = await new_conversation(company, contact="first")
    second = await new_conversation(company, contact="second")
    third = await new_conversation(company, contact="third")
    assert await section_ids(company.ann, "UNASSIGNED") == [third, second, first]

    # When the contact of the oldest writes again
    await company.inbound("news", contact="first")

    # Then it leads the section
    assert await section_ids(company.ann, "UNASSIGNED") == [first, third, second]


async def test_pagination_skips_and_repeats_nothing_while_messages_arrive(company):
    # Given six conversations, newest first: f e d c b a
    ids = {name: await new_conversation(company, contact=name) for name in "abcdef"}
    first_page = await page(company.ann, "UNASSIGNED", first=2)
    assert [edge["node"]["id"] for edge in first_page["edges"]] == [ids["f"], ids["e"]]
    assert first_page["pageInfo"]["hasNextPage"] is True
    assert first_page["pageInfo"]["hasPreviousPage"] is False

    # When a conversation of a later page gets a message and a new conversation appears
    await company.inbound("moving up", contact="c")
    ids["g"] = await new_conversation(company, contact="g")

    # Then the next pages hold exactly the rows that did not move, in order
    seen = [edge["node"]["id"] for edge in first_page["edges"]]
    cursor = first_page["pageInfo"]["endCursor"]
    while True:
        next_page = await page(company.ann, "UNASSIGNED", first=2, after=cursor)
        assert next_page["pageInfo"]["hasPreviousPage"] is True
        seen += [edge["node"]["id"] for edge in next_page["edges"]]
        if not next_page["pageInfo"]["hasNextPage"]:
            break
        cursor = next_page["pageInfo"]["endCursor"]
    assert seen == [ids["f"], ids["e"], ids["d"], ids["b"], ids["a"]]
    # And a fresh first page shows the moved and new ones on top
    assert (await section_ids(company.ann, "UNASSIGNED"))[:2] == [ids["g"], ids["c"]]


async def test_edge_cursors_resume_right_after_their_row(company):
    # Given four conversations
    for name in "wxyz":
        await new_conversation(company, contact=name)
    everything = await page(company.ann, "UNASSIGNED", first=10)
    edges = everything["edges"]

    # Then `after` any edge's cursor lists the rows after it
    for index, edge in enumerate(edges):
        rest = await page(company.ann, "UNASSIGNED", first=10, after=edge["cursor"])
        assert [e["node"]["id"] for e in rest["edges"]] == [e["node"]["id"] for e in edges[index + 1:]]


async def test_total_count_counts_the_whole_section_not_the_page(company):
    # Given five unassigned and one closed conversation
    for _ in range(5):
        await new_conversation(company)
    closed = await new_conversation(company)
    await company.ann.data(CLOSE, {"c": closed})

    # Then every page tells the size of its section
    first_page = await page(company.ann, "UNASSIGNED", first=2)
    second_page = await page(company.ann, "UNASSIGNED", first=2, after=first_page["pageInfo"]["endCursor"])
    assert first_page["totalCount"] == second_page["totalCount"] == 5
    assert (await page(company.ann, "CLOSED", first=2))["totalCount"] == 1
    assert (await page(company.ann, "ASSIGNED_TO_ME", first=2))["totalCount"] == 0


async def test_search_matches_contact_name_and_message_text_case_insensitively(company):
    # Given conversations with distinct contacts and texts
    zelda = (await company.inbound("About the invoice", contact="z", name="Zelda Quinn"))["conversation"]["id"]
    pricing = (await company.inbound("What is your PRICING?", contact="p", name="Paul"))["conversation"]["id"]
    await company.inbound("Just saying hi", contact="o", name="Olga")

    # Then search finds by name and by text, whatever the case
    assert await section_ids(company.ann, "UNASSIGNED", search="zELDA") == [zelda]
    assert await section_ids(company.ann, "UNASSIGNED", search="quinn") == [zelda]
    assert await section_ids(company.ann, "UNASSIGNED", search="pricing") == [pricing]
    assert await section_ids(company.ann, "UNASSIGNED", search="INVOICE") == [zelda]
    assert await section_ids(company.ann, "UNASSIGNED", search="nothing like this") == []
    assert (await page(company.ann, "UNASSIGNED", search="pricing"))["totalCount"] == 1


async def test_search_is_case_insensitive_beyond_ascii(company):
    # Given contacts and texts with accented capitals
    elodie = (await company.inbound("Bonjour", contact="e", name="Élodie Ørsted"))["conversation"]["id"]
    uber = (await company.inbound("ÜBER schnell", contact="u", name="Uwe"))["conversation"]["id"]

    # Then the other case finds them
    assert await section_ids(company.ann, "UNASSIGNED", search="élodie") == [elodie]
    assert await section_ids(company.ann, "UNASSIGNED", search="ØRSTED") == [elodie]
    assert await section_ids(company.ann, "UNASSIGNED", search="über") == [uber]


async def test_search_takes_wildcards_literally(company):
    sure = (await company.inbound("100% sure", contact="s"))["conversation"]["id"]
    await company.inbound("1000 items", contact="i")

    assert await section_ids(company.ann, "UNASSIGNED", search="100%") == [sure]
    assert await section_ids(company.ann, "UNASSIGNED", search="1_00") == []


async def test_search_matches_older_messages_too(company):
    # Given a conversation whose matching message is not its latest
    found = (await company.inbound("the tracking number please", contact="t"))["conversation"]["id"]
    await company.inbound("thanks", contact="t")

    # Then it is found once
    assert await section_ids(company.ann, "UNASSIGNED", search="Tracking") == [found]


async def test_inbox_counts_per_viewer(company):
    # Given one conversation per section, and one more on a channel only the admin sees
    await new_conversation(company)
    anns = await new_conversation(company)
    await assign(company.admin, anns, company.ids["ann"])
    admins = await new_conversation(company)
    await assign(company.admin, admins, company.ids["admin"])
    closed = await new_conversation(company)
    await company.admin.data(CLOSE, {"c": closed})
    _, other_partner = await second_channel(company)
    await company.inbound("elsewhere", contact="e", partner=other_partner)

    # Then each viewer counts its own sections; unread counts open conversations only
    assert await counts(company.ann) == {"unassigned": 1, "assignedToMe": 1, "assignedToOthers": 1,
                                         "closed": 1, "unread": 3}
    assert await counts(company.admin) == {"unassigned": 2, "assignedToMe": 1, "assignedToOthers": 1,
                                           "closed": 1, "unread": 4}

    # When ann reads her conversation, only her unread count drops
    await company.ann.data(MARK_READ, {"c": anns})
    assert (await counts(company.ann))["unread"] == 2
    assert (await counts(company.admin))["unread"] == 4


async def test_inbox_counts_per_channel(company):
    # Given conversations on two channels
    await new_conversation(company)
    await new_conversation(company)
    second_id, other_partner = await second_channel(company)
    await company.inbound("elsewhere", contact="e", partner=other_partner)

    # Then channelId narrows the counts to that channel
    assert await counts(company.admin, company.channel_id) == {
        "unassigned": 2, "assignedToMe": 0, "assignedToOthers": 0, "closed": 0, "unread": 2}
    assert await counts(company.admin, second_id) == {
        "unassigned": 1, "assignedToMe": 0, "assignedToOthers": 0, "closed": 0, "unread": 1}
    # And the sections narrow the same way
    assert len(await section_ids(company.admin, "UNASSIGNED", channelId=second_id)) == 1
    assert len(await section_ids(company.admin, "UNASSIGNED", channelId=company.channel_id)) == 2
    # And a channel the viewer has no access to is not found
    assert await company.ann.error_code(COUNTS, {"channelId": second_id}) == "NOT_FOUND"


# -- new conversations and inbound messages --------------------------------------------------

async def test_first_inbound_message_creates_contact_and_open_unassigned_conversation(company):
    # When a contact writes for the first time
    message = await company.inbound("Hi!", contact="+15550001", name="Nora New")

    # Then a contact and an open, unassigned conversation exist, with CREATED and MESSAGE_ADDED
    found = await conversation(company.ann, message["conversation"]["id"])
    assert found["status"] == "OPEN"
    assert found["section"] == "UNASSIGNED"
    assert found["assignee"] is None
    assert found["contact"] == {"name": "Nora New", "externalId": "+15550001",
                                "channel": {"id": company.channel_id}}
    assert found["events"] == [
        {"kind": "CREATED", "actor": None, "assignee": None, "message": None},
        {"kind": "MESSAGE_ADDED", "actor": None, "assignee": None, "message": {"id": message["id"]}},
    ]


async def test_second_message_from_a_contact_goes_into_the_same_conversation(company):
    # Given a contact's first message
    first = await company.inbound("one", contact="same")

    # When the same contact writes again, and another contact writes
    second = await company.inbound("two", contact="same")
    other = await company.inbound("three", contact="someone else")

    # Then the same contact's messages share one conversation
    assert second["conversation"]["id"] == first["conversation"]["id"]
    assert other["conversation"]["id"] != first["conversation"]["id"]
    assert kinds(await conversation(company.ann, first["conversation"]["id"])) == [
        "CREATED", "MESSAGE_ADDED", "MESSAGE_ADDED"]
    assert len(await section_ids(company.ann, "UNASSIGNED")) == 2


async def test_receiving_a_message_is_idempotent_on_its_external_id(company):
    # When the partner delivers the same message five times
    deliveries = [await company.inbound("only once", contact="dup", external_id="ext-1") for _ in range(5)]

    # Then one message exists, and every delivery returned it
    assert len({delivery["id"] for delivery in deliveries}) == 1
    found = await company.ann.data(
        "query($id: ID!) { conversation(id: $id) { unreadCount messages { edges { node { id } } } } }",
        {"id": deliveries[0]["conversation"]["id"]})
    assert [edge["node"]["id"] for edge in found["conversation"]["messages"]["edges"]] == [deliveries[0]["id"]]
    assert found["conversation"]["unreadCount"] == 1


async def test_concurrent_deliveries_of_one_message_store_it_once(company):
    # When five deliveries of one new contact's message arrive at once
    deliveries = await asyncio.gather(*(company.inbound("at once", contact="race", external_id="ext-race")
                                        for _ in range(5)))

    # Then they all name one message in one conversation
    assert len({delivery["id"] for delivery in deliveries}) == 1
    assert len({delivery["conversation"]["id"] for delivery in deliveries}) == 1
    assert kinds(await conversation(company.ann, deliveries[0]["conversation"]["id"])) == [
        "CREATED", "MESSAGE_ADDED"]


# -- availability ----------------------------------------------------------------------------

async def test_users_set_their_own_availability(company):
    # When ann becomes unavailable
    user = (await company.ann.data(SET_AVAILABILITY, {"a": False}))["setAvailability"]

    # Then she reads as unavailable, to herself and to others
    assert user == {"id": company.ids["ann"], "available": False}
    assert (await company.ann.data("{ me { available } }"))["me"]["available"] is False
    users = (await company.admin.data("{ users { id available } }"))["users"]
    assert {"id": company.ids["ann"], "available": False} in users

    # And back
    assert (await company.ann.data(SET_AVAILABILITY, {"a": True}))["setAvailability"]["available"] is True


async def test_unavailable_user_cannot_be_assigned_even_by_themselves(company):
    # Given an unavailable ann and a conversation
    conversation_id = await new_conversation(company)
    await company.ann.data(SET_AVAILABILITY, {"a": False})

    # Then nobody can assign it to her, not even herself
    variables = {"c": conversation_id, "u": company.ids["ann"]}
    assert await company.admin.error_code(ASSIGN, variables) == "USER_UNAVAILABLE"
    assert await company.ann.error_code(ASSIGN, variables) == "USER_UNAVAILABLE"
    found = await conversation(company.ann, conversation_id)
    assert found["assignee"] is None
    assert "ASSIGNED" not in kinds(found)


async def test_unavailability_keeps_existing_assignments(company):
    # Given a conversation assigned to ann
    conversation_id = await new_conversation(company)
    await assign(company.admin, conversation_id, company.ids["ann"])

    # When she becomes unavailable
    await company.ann.data(SET_AVAILABILITY, {"a": False})

    # Then it stays hers, and she still works on it
    assert (await conversation(company.ann, conversation_id))["assignee"] == {"id": company.ids["ann"]}
    assert await section_ids(company.ann, "ASSIGNED_TO_ME") == [conversation_id]
    await company.ann.data(CLOSE, {"c": conversation_id})
    await company.ann.data(REOPEN, {"c": conversation_id})
    assert (await conversation(company.ann, conversation_id))["section"] == "ASSIGNED_TO_ME"


async def test_available_again_user_can_be_assigned(company):
    conversation_id = await new_conversation(company)
    await company.ann.data(SET_AVAILABILITY, {"a": False})
    await company.ann.data(SET_AVAILABILITY, {"a": True})

    assigned = await assign(company.admin, conversation_id, company.ids["ann"])

    assert assigned["assignee"] == {"id": company.ids["ann"]}


# -- assignment ------------------------------------------------------------------------------

async def test_member_may_assign_to_any_available_user_with_access(company):
    # Given a conversation
    conversation_id = await new_conversation(company)

    # When ann (a member, not an admin) assigns it to the admin
    assigned = await assign(company.ann, conversation_id, company.ids["admin"])

    # Then the admin is its assignee, with an ASSIGNED event by ann
    assert assigned["assignee"] == {"id": company.ids["admin"]}
    assert assigned["section"] == "ASSIGNED_TO_OTHERS"
    found = await conversation(company.admin, conversation_id)
    assert found["section"] == "ASSIGNED_TO_ME"
    assert found["events"][-1] == {"kind": "ASSIGNED", "actor": {"id": company.ids["ann"]},
                                   "assignee": {"id": company.ids["admin"]}, "message": None}


async def test_assigning_to_a_user_without_access_is_forbidden(company):
    # Given a conversation on a channel bob has no access to
    conversation_id = await new_conversation(company)

    # Then it cannot be assigned to him
    code = await company.admin.error_code(ASSIGN, {"c": conversation_id, "u": company.ids["bob"]})
    assert code == "FORBIDDEN"
    found = await conversation(company.admin, conversation_id)
    assert found["assignee"] is None
    assert "ASSIGNED" not in kinds(found)


async def test_user_without_access_cannot_assign(company):
    conversation_id = await new_conversation(company)

    code = await company.bob.error_code(ASSIGN, {"c": conversation_id, "u": company.ids["bob"]})

    assert code == "NOT_FOUND"
    assert (await conversation(company.admin, conversation_id))["assignee"] is None


async def test_admins_have_access_and_can_be_assignees_without_membership(company):
    # Given a second admin who is no member of the channel
    other_admin, other_admin_id = await new_user(company, "Otto Admin", is_admin=True)
    conversation_id = await new_conversation(company)

    # When ann assigns it to him
    assigned = await assign(company.ann, conversation_id, other_admin_id)

    # Then he sees it as his
    assert assigned["assignee"] == {"id": other_admin_id}
    assert await section_ids(other_admin, "ASSIGNED_TO_ME") == [conversation_id]


async def test_assigned_conversation_can_be_reassigned(company):
    # Given a conversation assigned to ann
    conversation_id = await new_conversation(company)
    await assign(company.admin, conversation_id, company.ids["ann"])

    # When ann hands it over to the admin
    reassigned = await assign(company.ann, conversation_id, company.ids["admin"])

    # Then it moves from her section to the admin's
    assert reassigned["assignee"] == {"id": company.ids["admin"]}
    assert await section_ids(company.ann, "ASSIGNED_TO_ME") == []
    assert await section_ids(company.ann, "ASSIGNED_TO_OTHERS") == [conversation_id]
    assert await section_ids(company.admin, "ASSIGNED_TO_ME") == [conversation_id]
    events = [e for e in (await conversation(company.admin, conversation_id))["events"] if e["kind"] == "ASSIGNED"]
    assert [(e["actor"]["id"], e["assignee"]["id"]) for e in events] == [
        (company.ids["admin"], company.ids["ann"]), (company.ids["ann"], company.ids["admin"])]


async def test_assigned_conversation_can_be_unassigned(company):
    # Given a conversation assigned to the admin
    conversation_id = await new_conversation(company)
    await assign(company.admin, conversation_id, company.ids["admin"])

    # When ann unassigns it
    unassigned = (await company.ann.data(UNASSIGN, {"c": conversation_id}))["unassignConversation"]

    # Then it is back in UNASSIGNED, with an UNASSIGNED event by ann
    assert unassigned["assignee"] is None
    assert unassigned["section"] == "UNASSIGNED"
    assert await section_ids(company.admin, "UNASSIGNED") == [conversation_id]
    assert (await conversation(company.admin, conversation_id))["events"][-1] == {
        "kind": "UNASSIGNED", "actor": {"id": company.ids["ann"]}, "assignee": None, "message": None}


async def test_assigning_a_closed_conversation_keeps_it_closed(company):
    # Given a closed conversation
    conversation_id = await new_conversation(company)
    await company.admin.data(CLOSE, {"c": conversation_id})

    # When it is assigned to ann
    assigned = await assign(company.admin, conversation_id, company.ids["ann"])

    # Then it stays closed, with ann as assignee
    assert assigned["status"] == "CLOSED"
    assert assigned["section"] == "CLOSED"
    assert assigned["assignee"] == {"id": company.ids["ann"]}
    assert await sections_of(company.ann, conversation_id) == ["CLOSED"]
    # And reopening it puts it into her section
    await company.admin.data(REOPEN, {"c": conversation_id})
    assert await sections_of(company.ann, conversation_id) == ["ASSIGNED_TO_ME"]


async def test_concurrent_assignments_leave_one_result_and_two_events(company):
    for round_ in range(10):
        # Given a fresh conversation
        conversation_id = await new_conversation(company, contact=f"race-{round_}")

        # When the admin and ann assign it at the same instant, each to the other
        first, second = await asyncio.gather(
            company.admin.execute(ASSIGN, {"c": conversation_id, "u": company.ids["ann"]}),
            company.ann.execute(ASSIGN, {"c": conversation_id, "u": company.ids["admin"]}))

        # Then both succeed, two ASSIGNED events exist, and the last one says who holds it
        assert not first.get("errors") and not second.get("errors"), (first, second)
        found = await conversation(company.admin, conversation_id)
        assigned = [event for event in found["events"] if event["kind"] == "ASSIGNED"]
        assert len(assigned) == 2
        assert {event["actor"]["id"] for event in assigned} == {company.ids["admin"], company.ids["ann"]}
        assert found["assignee"] == assigned[-1]["assignee"]


# -- close and reopen ------------------------------------------------------------------------

async def test_any_user_with_access_may_close_and_reopen(company):
    # Given a conversation
    conversation_id = await new_conversation(company)

    # When ann closes it
    closed = (await company.ann.data(CLOSE, {"c": conversation_id}))["closeConversation"]

    # Then it is CLOSED for everyone
    assert closed["status"] == "CLOSED"
    assert await sections_of(company.admin, conversation_id) == ["CLOSED"]
    assert await sections_of(company.ann, conversation_id) == ["CLOSED"]

    # When the admin reopens it
    reopened = (await company.admin.data(REOPEN, {"c": conversation_id}))["reopenConversation"]

    # Then it is open and unassigned again, with both events and their actors
    assert reopened["status"] == "OPEN"
    assert await sections_of(company.ann, conversation_id) == ["UNASSIGNED"]
    events = (await conversation(company.admin, conversation_id))["events"]
    assert [(e["kind"], e["actor"]["id"]) for e in events[-2:]] == [
        ("CLOSED", company.ids["ann"]), ("REOPENED", company.ids["admin"])]


async def test_repeating_close_reopen_or_unassign_records_nothing_more(company):
    # Given a closed, unassigned conversation
    conversation_id = await new_conversation(company)
    await company.ann.data(CLOSE, {"c": conversation_id})
    before = kinds(await conversation(company.ann, conversation_id))

    # When it is closed and unassigned again, then reopened twice
    await company.admin.data(CLOSE, {"c": conversation_id})
    await company.admin.data(UNASSIGN, {"c": conversation_id})
    await company.admin.data(REOPEN, {"c": conversation_id})
    reopened = (await company.ann.data(REOPEN, {"c": conversation_id}))["reopenConversation"]

    # Then only the first reopen is an event
    assert reopened["status"] == "OPEN"
    assert kinds(await conversation(company.ann, conversation_id)) == before + ["REOPENED"]


async def test_user_without_access_cannot_close(company):
    conversation_id = await new_conversation(company)

    assert await company.bob.error_code(CLOSE, {"c": conversation_id}) == "NOT_FOUND"
    assert (await conversation(company.admin, conversation_id))["status"] == "OPEN"


async def test_closed_conversation_keeps_its_assignee_and_reopens_into_its_section(company):
    # Given a conversation assigned to ann
    conversation_id = await new_conversation(company)
    await assign(company.admin, conversation_id, company.ids["ann"])

    # When it is closed
    closed = (await company.admin.data(CLOSE, {"c": conversation_id}))["closeConversation"]

    # Then it keeps ann as assignee, in CLOSED for everyone
    assert closed["assignee"] == {"id": company.ids["ann"]}
    assert await sections_of(company.ann, conversation_id) == ["CLOSED"]
    assert await sections_of(company.admin, conversation_id) == ["CLOSED"]

    # When it is reopened, it is back in her section
    await company.admin.data(REOPEN, {"c": conversation_id})
    assert await sections_of(company.ann, conversation_id) == ["ASSIGNED_TO_ME"]
    assert await sections_of(company.admin, conversation_id) == ["ASSIGNED_TO_OTHERS"]


async def test_inbound_message_reopens_a_closed_conversation_into_its_section(company):
    # Given a conversation assigned to ann, closed
    conversation_id = await new_conversation(company, contact="returning")
    await assign(company.admin, conversation_id, company.ids["ann"])
    await company.ann.data(CLOSE, {"c": conversation_id})

    # When the contact writes again
    message = await company.inbound("me again", contact="returning")

    # Then the same conversation is open again, still ann's, with a REOPENED event by no one
    assert message["conversation"]["id"] == conversation_id
    assert message["conversation"]["status"] == "OPEN"
    assert await sections_of(company.ann, conversation_id) == ["ASSIGNED_TO_ME"]
    found = await conversation(company.ann, conversation_id)
    assert found["assignee"] == {"id": company.ids["ann"]}
    assert found["events"][-2:] == [
        {"kind": "REOPENED", "actor": None, "assignee": None, "message": None},
        {"kind": "MESSAGE_ADDED", "actor": None, "assignee": None, "message": {"id": message["id"]}},
    ]


async def test_inbound_message_reopens_an_unassigned_closed_conversation_into_unassigned(company):
    conversation_id = await new_conversation(company, contact="back")
    await company.ann.data(CLOSE, {"c": conversation_id})

    await company.inbound("back again", contact="back")

    assert await sections_of(company.ann, conversation_id) == ["UNASSIGNED"]


# -- delete and restore ----------------------------------------------------------------------

async def test_only_the_installer_may_delete(company):
    # Given a conversation, and a second admin who did not install the channel
    conversation_id = await new_conversation(company)
    other_admin, _ = await new_user(company, "Otto Admin", is_admin=True)

    # Then a member and the other admin are refused
    assert await company.ann.error_code(DELETE, {"c": conversation_id}) == "FORBIDDEN"
    assert await other_admin.error_code(DELETE, {"c": conversation_id}) == "FORBIDDEN"
    assert await company.bob.error_code(DELETE, {"c": conversation_id}) == "NOT_FOUND"
    assert await conversation(company.ann, conversation_id) is not None

    # And the installer may
    assert (await company.admin.data(DELETE, {"c": conversation_id}))["deleteConversation"] == conversation_id


async def test_delete_erases_the_conversation_and_its_messages(company):
    # Given a conversation with two messages
    first = await company.inbound("secret one", contact="gone")
    second = await company.inbound("secret two", contact="gone")
    conversation_id = first["conversation"]["id"]

    # When the installer deletes it
    await company.admin.data(DELETE, {"c": conversation_id})

    # Then neither it nor its messages resolve, and search does not find them
    node = "query($id: ID!) { node(id: $id) { id } }"
    for client in (company.admin, company.ann):
        for message in (first, second):
            assert (await client.data(node, {"id": message["id"]}))["node"] is None
        assert (await client.data(node, {"id": conversation_id}))["node"] is None
        assert await section_ids(client, "UNASSIGNED", search="secret") == []
    # And acting on it is NOT_FOUND
    assert await company.admin.error_code(CLOSE, {"c": conversation_id}) == "NOT_FOUND"
    assert await company.admin.error_code(DELETE, {"c": conversation_id}) == "NOT_FOUND"


async def test_contact_writing_after_delete_restores_a_fresh_conversation(company):
    # Given a conversation assigned to ann, read by her, closed, then deleted
    old = await company.inbound("before", contact="phoenix")
    conversation_id = old["conversation"]["id"]
    await assign(company.admin, conversation_id, company.ids["ann"])
    await company.ann.data(MARK_READ, {"c": conversation_id})
    await company.admin.data(CLOSE, {"c": conversation_id})
    await company.admin.data(DELETE, {"c": conversation_id})

    # When the contact writes again
    new = await company.inbound("after", contact="phoenix")

    # Then the same conversation is visible again, open and unassigned, holding only the new message
    assert new["conversation"]["id"] == conversation_id
    found = await company.ann.data(
        """query($id: ID!) { conversation(id: $id) { status section assignee { id } unreadCount
             messages { edges { node { id body } } } events { kind actor { id } message { id } } } }""",
        {"id": conversation_id})
    restored = found["conversation"]
    assert restored["status"] == "OPEN"
    assert restored["section"] == "UNASSIGNED"
    assert restored["assignee"] is None
    assert [edge["node"] for edge in restored["messages"]["edges"]] == [{"id": new["id"], "body": "after"}]
    assert restored["unreadCount"] == 1
    # And its old events are gone: it starts with RESTORED by no one
    assert restored["events"] == [{"kind": "RESTORED", "actor": None, "message": None},
                                  {"kind": "MESSAGE_ADDED", "actor": None, "message": {"id": new["id"]}}]
    assert await sections_of(company.ann, conversation_id) == ["UNASSIGNED"]
    assert (await company.ann.data("query($id: ID!) { node(id: $id) { id } }", {"id": old["id"]}))["node"] is None


async def test_restored_conversation_has_no_old_links_but_the_notes_stay(company):
    # Given a conversation linked to a new person, then deleted
    conversation_id = await new_conversation(company, contact="linked")
    link = await company.ann.data(
        "mutation($c: ID!) { linkConversation(conversationId: $c, target: {newPerson: {name: \"Lin Ked\"}}) "
        "{ target { ... on Person { id } } } }", {"c": conversation_id})
    person_id = link["linkConversation"]["target"]["id"]
    await company.admin.data(DELETE, {"c": conversation_id})

    # When the contact writes again
    await company.inbound("again", contact="linked")

    # Then the conversation has no links, and the person keeps the note written on linking
    found = await company.ann.data("query($id: ID!) { conversation(id: $id) { links { id } } }",
                                   {"id": conversation_id})
    assert found["conversation"]["links"] == []
    person = await company.ann.data("query($id: ID!) { node(id: $id) { ... on Person { notes { id } } } }",
                                    {"id": person_id})
    assert len(person["node"]["notes"]) == 1


# -- read state ------------------------------------------------------------------------------

async def test_unread_count_is_per_user_and_mark_read_clears_it_for_the_viewer_only(company):
    # Given two inbound messages
    conversation_id = await new_conversation(company, contact="reader")
    await company.inbound("second", contact="reader")
    assert (await conversation(company.ann, conversation_id))["unreadCount"] == 2
    assert (await conversation(company.admin, conversation_id))["unreadCount"] == 2

    # When ann marks it read
    marked = (await company.ann.data(MARK_READ, {"c": conversation_id}))["markConversationRead"]

    # Then it is read for her only, with a READ event by her
    assert marked["unreadCount"] == 0
    assert (await conversation(company.ann, conversation_id))["unreadCount"] == 0
    assert (await conversation(company.admin, conversation_id))["unreadCount"] == 2
    assert (await conversation(company.admin, conversation_id))["events"][-1] == {
        "kind": "READ", "actor": {"id": company.ids["ann"]}, "assignee": None, "message": None}

    # And a new inbound message is unread again
    await company.inbound("third", contact="reader")
    assert (await conversation(company.ann, conversation_id))["unreadCount"] == 1
    assert (await conversation(company.admin, conversation_id))["unreadCount"] == 3


async def test_unread_count_in_a_section_page(company):
    conversation_id = await new_conversation(company, contact="listed")
    await company.inbound("more", contact="listed")
    await company.ann.data(MARK_READ, {"c": conversation_id})
    await company.inbound("even more", contact="listed")

    found = await company.ann.data("{ inbox(section: UNASSIGNED) { edges { node { id unreadCount } } } }")

    assert found["inbox"]["edges"] == [{"node": {"id": conversation_id, "unreadCount": 1}}]


# -- assignable users ------------------------------------------------------------------------

async def test_assignable_users_are_the_available_users_with_access(company):
    # Given a conversation, a second admin, and bob without access
    conversation_id = await new_conversation(company)
    _, other_admin_id = await new_user(company, "Otto Admin", is_admin=True)
    query = "query($c: ID!) { assignableUsers(conversationId: $c) { id } }"

    # Then the admins and ann may be assignees, bob not
    found = {user["id"] for user in (await company.ann.data(query, {"c": conversation_id}))["assignableUsers"]}
    assert found == {company.ids["admin"], company.ids["ann"], other_admin_id}

    # When ann becomes unavailable, she is no longer assignable
    await company.ann.data(SET_AVAILABILITY, {"a": False})
    found = {user["id"] for user in (await company.ann.data(query, {"c": conversation_id}))["assignableUsers"]}
    assert found == {company.ids["admin"], other_admin_id}


# -- the conversation's fields ---------------------------------------------------------------

async def test_events_are_the_timeline_oldest_first(company):
    # Given a conversation that went through a full life
    first = await company.inbound("one", contact="life")
    conversation_id = first["conversation"]["id"]
    await assign(company.admin, conversation_id, company.ids["ann"])
    await company.ann.data(CLOSE, {"c": conversation_id})
    second = await company.inbound("two", contact="life")
    await company.ann.data(UNASSIGN, {"c": conversation_id})
    await company.ann.data(MARK_READ, {"c": conversation_id})

    # Then its events tell it in order, with actors, assignee and messages
    admin, ann = {"id": company.ids["admin"]}, {"id": company.ids["ann"]}
    found = await company.admin.data(
        "query($id: ID!) { conversation(id: $id) { events { id kind conversationId occurredAt "
        "actor { id } assignee { id } message { id } } } }", {"id": conversation_id})
    events = found["conversation"]["events"]
    assert [(e["kind"], e["actor"], e["assignee"], e["message"]) for e in events] == [
        ("CREATED", None, None, None),
        ("MESSAGE_ADDED", None, None, {"id": first["id"]}),
        ("ASSIGNED", admin, ann, None),
        ("CLOSED", ann, None, None),
        ("REOPENED", None, None, None),
        ("MESSAGE_ADDED", None, None, {"id": second["id"]}),
        ("UNASSIGNED", ann, None, None),
        ("READ", ann, None, None),
    ]
    assert {e["conversationId"] for e in events} == {conversation_id}
    assert [e["occurredAt"] for e in events] == sorted(e["occurredAt"] for e in events)
    assert len({e["id"] for e in events}) == len(events)


async def test_conversation_url_and_last_message(company):
    # Given a conversation with two messages
    await company.inbound("first", contact="fields", sent_at="2026-01-02T10:00:00+00:00")
    last = await company.inbound("latest", contact="fields", sent_at="2026-01-02T11:30:00+00:00")
    conversation_id = last["conversation"]["id"]

    # Then it tells where it lives and what was said last
    found = (await company.ann.data(
        "query($id: ID!) { conversation(id: $id) { id url lastMessageAt lastMessage { id body } "
        "channel { id } createdAt } }", {"id": conversation_id}))["conversation"]
    assert found["url"].startswith("http://inbox.test/")
    assert conversation_id in found["url"]
    assert found["lastMessage"] == {"id": last["id"], "body": "latest"}
    assert found["lastMessageAt"].startswith("2026-01-02T11:30:00")
    assert found["channel"] == {"id": company.channel_id}


MESSAGES = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  conversation(id: $id) {
    messages(first: $first, after: $after, last: $last, before: $before) {
      edges { cursor node { id body cursor } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""


async def messages_page(client: Client, conversation_id: str, **arguments) -> dict:
    return (await client.data(MESSAGES, {"id": conversation_id, **arguments}))["conversation"]["messages"]


def bodies(connection: dict) -> list[str]:
    return [edge["node"]["body"] for edge in connection["edges"]]


async def test_messages_page_forwards_oldest_first(company):
    # Given five messages
    for number in range(1, 6):
        message = await company.inbound(f"m{number}", contact="pager")
    conversation_id = message["conversation"]["id"]

    # Then first/after walk them oldest first
    page_one = await messages_page(company.ann, conversation_id, first=2)
    assert bodies(page_one) == ["m1", "m2"]
    assert page_one["pageInfo"]["hasNextPage"] is True and page_one["pageInfo"]["hasPreviousPage"] is False
    assert all(edge["cursor"] == edge["node"]["cursor"] for edge in page_one["edges"])
    page_two = await messages_page(company.ann, conversation_id, first=2, after=page_one["pageInfo"]["endCursor"])
    assert bodies(page_two) == ["m3", "m4"]
    assert page_two["pageInfo"]["hasPreviousPage"] is True
    page_three = await messages_page(company.ann, conversation_id, first=2, after=page_two["pageInfo"]["endCursor"])
    assert bodies(page_three) == ["m5"]
    assert page_three["pageInfo"]["hasNextPage"] is False
    assert bodies(await messages_page(company.ann, conversation_id)) == ["m1", "m2", "m3", "m4", "m5"]


async def test_messages_page_backwards_from_the_newest(company):
    # Given five messages
    for number in range(1, 6):
        message = await company.inbound(f"m{number}", contact="pager")
    conversation_id = message["conversation"]["id"]

    # Then last/before walk them back from the newest, each page oldest first
    newest = await messages_page(company.ann, conversation_id, last=2)
    assert bodies(newest) == ["m4", "m5"]
    assert newest["pageInfo"]["hasPreviousPage"] is True and newest["pageInfo"]["hasNextPage"] is False
    middle = await messages_page(company.ann, conversation_id, last=2, before=newest["pageInfo"]["startCursor"])
    assert bodies(middle) == ["m2", "m3"]
    assert middle["pageInfo"]["hasNextPage"] is True
    oldest = await messages_page(company.ann, conversation_id, last=2, before=middle["pageInfo"]["startCursor"])
    assert bodies(oldest) == ["m1"]
    assert oldest["pageInfo"]["hasPreviousPage"] is False


# -- a page shows what the conversation shows ---------------------------------------------------

CONVERSATION_FIELDS = """
    id status section createdAt lastMessageAt unreadCount url
    contact { id name externalId avatarUrl channel { id } }
    assignee { id name email isAdmin available }
    lastMessage { id body sentAt direction status senderName failureReason cursor author { id } }"""
PAGE_OF_FIELDS = ("query($section: InboxSection!) { inbox(section: $section, first: 100) "
                  "{ edges { node { %s } } } }" % CONVERSATION_FIELDS)
ONE_WITH_FIELDS = "query($id: ID!) { conversation(id: $id) { %s } }" % CONVERSATION_FIELDS
REPLY = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"


async def test_a_section_page_shows_each_conversation_as_the_conversation_query_does(company, fakes):
    # Given, on a channel that takes replies: a conversation the admin replied to, then
    # assigned to ann; one with two unread messages; one assigned to the admin, read
    installed = await company.admin.data(
        "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }",
        {"i": {"kind": "CUSTOM", "name": "Replying app", "custom": {"callbackUrl": fakes.callback_url(unique("cb"))}}})
    partner = Client(company.partner.base_url, installed["installChannel"]["channelToken"], company.partner.http)
    await company.admin.data("mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }",
                             {"c": installed["installChannel"]["channel"]["id"], "u": [company.ids["ann"]]})
    replied = (await company.inbound("hi", contact=unique("c"), name="Jane Doe", partner=partner))["conversation"]["id"]
    await company.admin.data(REPLY, {"c": replied, "b": "Hello Jane"})
    await assign(company.admin, replied, company.ids["ann"])
    unread = (await company.inbound("one", contact="two-unread", partner=partner))["conversation"]["id"]
    await company.inbound("two", contact="two-unread", partner=partner)
    read = (await company.inbound("mine", contact=unique("c"), partner=partner))["conversation"]["id"]
    await assign(company.admin, read, company.ids["admin"])
    await company.admin.data(MARK_READ, {"c": read})

    # When the admin reads every section, and each conversation on its own
    listed = {}
    for section in SECTIONS:
        found = await company.admin.data(PAGE_OF_FIELDS, {"section": section})
        listed.update({edge["node"]["id"]: edge["node"] for edge in found["inbox"]["edges"]})

    # Then each is shown the same both ways
    assert {replied, unread, read} <= set(listed)
    for conversation_id in (replied, unread, read):
        alone = (await company.admin.data(ONE_WITH_FIELDS, {"id": conversation_id}))["conversation"]
        assert listed[conversation_id] == alone
    assert listed[replied]["lastMessage"]["senderName"] == "Ada Admin"
    assert listed[replied]["assignee"]["id"] == company.ids["ann"]
    assert (listed[unread]["unreadCount"], listed[read]["unreadCount"]) == (2, 0)


# -- query count -----------------------------------------------------------------------------

SECTION_PAGE = """
query($first: Int) {
  inbox(section: UNASSIGNED, first: $first) {
    totalCount
    edges { cursor node { id contact { name } assignee { name } lastMessage { body } unreadCount } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_a_section_page_runs_a_fixed_number_of_queries(company, count_queries):
    # Given thirty unassigned conversations
    for number in range(30):
        await company.inbound(f"hello {number}", contact=f"count-{number}")

    # When pages of 5 and of 25 are read (the fewest of three tries: background workers
    # such as the send queue's poll log their statements to the same counter)
    statements = {}
    for size in (5, 25):
        tries = []
        for _ in range(3):
            count_queries.count = 0
            found = await company.ann.data(SECTION_PAGE, {"first": size})
            tries.append(count_queries.count)
            assert len(found["inbox"]["edges"]) == size
        statements[size] = min(tries)

    # Then both ran as many statements: no N+1. Four: the token's user, the channels the
    # viewer has access to, the page with its contacts, assignees, last messages and
    # unread counts, and the total count
    assert statements[5] == statements[25], statements
    assert statements[25] <= 4, statements


async def test_the_section_is_counted_only_when_total_count_is_asked_for(company, count_queries):
    # Given a few unassigned conversations
    for number in range(3):
        await company.inbound(f"hello {number}", contact=f"lazy-{number}")

    async def statements(query: str) -> int:
        tries = []
        for _ in range(3):  # the fewest of three: background workers log to the same counter
            count_queries.count = 0
            await company.ann.data(query, {"first": 5})
            tries.append(count_queries.count)
        return min(tries)

    # When the same page is read with and without totalCount
    with_total = await statements(SECTION_PAGE)
    without_total = await statements(SECTION_PAGE.replace("totalCount", ""))

    # Then only the page that asks for the total counts the section
    assert without_total == with_total - 1, (with_total, without_total)
