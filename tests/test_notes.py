"""SPEC §4, links to persons, leads and deals, and the notes the inbox writes there:
the note on linking, 24-hour note windows (23:59:59 in, 24:00:00 out), edited and
deleted notes, several targets, unlink, outbound replies, the assignment status
line, concurrent messages, delete and restore, HTML-safe content, LINKED / UNLINKED
events, tenant isolation of every new type, and the persons list."""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Client, Company, subscriptions_live, unique

LINK = """
mutation($c: ID!, $t: LinkTargetInput!) {
  linkConversation(conversationId: $c, target: $t) {
    id createdAt conversation { id }
    target { __typename ... on Person { id name } ... on Lead { id title } ... on Deal { id title } }
  }
}"""
UNLINK = "mutation($l: ID!) { unlinkConversation(linkId: $l) }"
CREATE_PERSON = "mutation($i: PersonInput!) { createPerson(input: $i) { id name email phone } }"
CREATE_LEAD = "mutation($i: LeadInput!) { createLead(input: $i) { id title person { id name } } }"
CREATE_DEAL = "mutation($i: DealInput!) { createDeal(input: $i) { id title value currency person { id } } }"
UPDATE_NOTE = "mutation($n: ID!, $c: String!) { updateNote(id: $n, content: $c) { id content updatedAt } }"
DELETE_NOTE = "mutation($n: ID!) { deleteNote(id: $n) }"
NOTE_FIELDS = "id content createdAt updatedAt conversation { id } target { __typename ... on Person { id } " \
              "... on Lead { id } ... on Deal { id } }"
NOTES = f"""
query($id: ID!) {{
  node(id: $id) {{
    __typename
    ... on Person {{ notes {{ {NOTE_FIELDS} }} }}
    ... on Lead {{ notes {{ {NOTE_FIELDS} }} }}
    ... on Deal {{ notes {{ {NOTE_FIELDS} }} }}
  }}
}}"""
LINKS = """
query($c: ID!) {
  conversation(id: $c) { url links { id createdAt target { __typename ... on Person { id } ... on Lead { id }
                                                           ... on Deal { id } } } }
}"""
PERSONS = """
query($search: String, $first: Int, $after: String) {
  persons(search: $search, first: $first, after: $after) {
    edges { cursor node { id name } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""
NODE = "query($id: ID!) { node(id: $id) { id __typename } }"
SEND = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
UNASSIGN = "mutation($c: ID!) { unassignConversation(conversationId: $c) { id } }"
CONVERSATION_CHANGED = """
subscription($c: ID) { conversationChanged(conversationId: $c) { kind conversationId actor { id } } }"""


# -- helpers ---------------------------------------------------------------------------------

def at(moment: str | datetime, **delta) -> str:
    """An ISO time `delta` after `moment`."""
    start = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return (start + timedelta(**delta)).isoformat()


async def new_conversation(company: Company, body: str = "hello", **kwargs) -> tuple[str, str]:
    """A new conversation; returns its id and its contact's external id."""
    contact = unique("contact")
    message = await company.inbound(body, contact=contact, **kwargs)
    return message["conversation"]["id"], contact


async def link(client: Client, conversation_id: str, target: dict) -> dict:
    return (await client.data(LINK, {"c": conversation_id, "t": target}))["linkConversation"]


async def new_person(client: Client, name: str = "Jane Doe", **fields) -> dict:
    return (await client.data(CREATE_PERSON, {"i": {"name": name, **fields}}))["createPerson"]


async def notes_of(client: Client, target_id: str) -> list[dict]:
    """A target's notes, newest first."""
    return (await client.data(NOTES, {"id": target_id}))["node"]["notes"]


def message_lines(note: dict) -> list[str]:
    """The message lines of a note (after the header and its blank line)."""
    return note["content"].split("\n")[4:]


async def linked_person(company: Company, conversation_id: str, by: Client | None = None) -> tuple[dict, str]:
    """Links the conversation to a new person (by ann unless said); returns the link and the person's id."""
    made = await link(by or company.ann, conversation_id, {"newPerson": {"name": unique("Person")}})
    return made, made["target"]["id"]


# -- the note on linking -----------------------------------------------------------------------

async def test_linking_writes_a_note_at_once_with_the_latest_twenty_messages_oldest_first(company):
    start = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    conversation_id, contact = await new_conversation(company, "message 1", name="Jane Doe", sent_at=at(start))
    for n in range(2, 23):
        await company.inbound(f"message {n}", contact=contact, name="Jane Doe", sent_at=at(start, minutes=n))

    made = await link(company.ann, conversation_id, {"newPerson": {"name": "Jane Doe"}})

    [note] = await notes_of(company.ann, made["target"]["id"])
    assert message_lines(note) == [
        f"[2026-03-01 09:{n:02d} UTC] Jane Doe: message {n}" for n in range(3, 23)]
    assert note["conversation"] == {"id": conversation_id}
    assert note["target"] == {"__typename": "Person", "id": made["target"]["id"]}


async def test_the_note_header_holds_contact_assignment_status_and_url(company):
    conversation_id, _ = await new_conversation(company, name="Jane Doe")
    url = (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["url"]

    _, person_id = await linked_person(company, conversation_id)

    [note] = await notes_of(company.ann, person_id)
    assert note["content"].split("\n")[:4] == ["Conversation with Jane Doe on Partner app", "Unassigned", url, ""]
    assert url == f"http://inbox.test/inbox/conversations/{conversation_id}"


async def test_a_new_person_is_made_from_the_conversation_and_listed(company):
    conversation_id, _ = await new_conversation(company)

    made = await link(company.ann, conversation_id,
                      {"newPerson": {"name": "Jane Doe", "email": "Jane@Example.com", "phone": "+14155550123"}})

    assert made["target"]["__typename"] == "Person" and made["target"]["name"] == "Jane Doe"
    listed = (await company.bob.data(PERSONS, {"search": "jane"}))["persons"]["edges"]
    assert [edge["node"]["id"] for edge in listed] == [made["target"]["id"]]


async def test_new_leads_and_deals_are_made_and_linked(company):
    conversation_id, _ = await new_conversation(company)
    person = await new_person(company.ann)

    lead = await link(company.ann, conversation_id, {"newLead": {"title": "Website lead", "personId": person["id"]}})
    deal = await link(company.ann, conversation_id,
                      {"newDeal": {"title": "Big deal", "value": 1200.5, "currency": "eur"}})

    assert lead["target"]["__typename"] == "Lead" and lead["target"]["title"] == "Website lead"
    assert deal["target"]["__typename"] == "Deal"
    found = (await company.ann.data(
        "query($l: ID!, $d: ID!) { l: node(id: $l) { ... on Lead { person { id } notes { id } } } "
        "d: node(id: $d) { ... on Deal { value currency notes { id } } } }",
        {"l": lead["target"]["id"], "d": deal["target"]["id"]}))
    assert found["l"]["person"] == {"id": person["id"]} and len(found["l"]["notes"]) == 1
    assert found["d"]["value"] == 1200.5 and found["d"]["currency"] == "EUR" and len(found["d"]["notes"]) == 1


async def test_conversation_links_lists_every_target(company):
    conversation_id, _ = await new_conversation(company)
    person = await new_person(company.ann)
    lead = (await company.ann.data(CREATE_LEAD, {"i": {"title": "Lead"}}))["createLead"]
    deal = (await company.ann.data(CREATE_DEAL, {"i": {"title": "Deal"}}))["createDeal"]

    made = [await link(company.ann, conversation_id, target) for target in
            ({"personId": person["id"]}, {"leadId": lead["id"]}, {"dealId": deal["id"]})]

    links = (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"]
    assert [(row["id"], row["target"]["id"]) for row in links] == [
        (row["id"], target) for row, target in zip(made, (person["id"], lead["id"], deal["id"]))]


# -- note windows ------------------------------------------------------------------------------

async def test_a_message_23_59_59_after_linking_goes_into_the_current_note(company):
    conversation_id, contact = await new_conversation(company, "before")
    made, person_id = await linked_person(company, conversation_id)

    await company.inbound("still inside", contact=contact, sent_at=at(made["createdAt"], hours=23, minutes=59,
                                                                        seconds=59))

    [note] = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(note)] == ["before", "still inside"]


async def test_a_message_24_hours_after_linking_opens_a_new_note(company):
    conversation_id, contact = await new_conversation(company, "before")
    made, person_id = await linked_person(company, conversation_id)

    await company.inbound("next day", contact=contact, sent_at=at(made["createdAt"], hours=24))

    newest, first = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(first)] == ["before"]
    assert [line.split(": ", 1)[1] for line in message_lines(newest)] == ["next day"]


async def test_a_new_window_starts_at_the_sent_at_of_the_message_that_opened_it(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    opened = at(made["createdAt"], days=3, minutes=17)
    await company.inbound("opens", contact=contact, sent_at=opened)

    await company.inbound("inside", contact=contact, sent_at=at(opened, hours=23, minutes=59, seconds=59))
    await company.inbound("outside", contact=contact, sent_at=at(opened, hours=24))

    third, second, _ = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(second)] == ["opens", "inside"]
    assert [line.split(": ", 1)[1] for line in message_lines(third)] == ["outside"]


async def test_a_sent_at_in_the_future_is_taken_as_given(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    future = datetime(2100, 1, 1, 12, 0, tzinfo=timezone.utc)

    await company.inbound("from the future", contact=contact, sent_at=at(future))
    await company.inbound("same window", contact=contact, sent_at=at(future, hours=23))

    newest, _ = await notes_of(company.ann, person_id)
    assert message_lines(newest) == ["[2100-01-01 12:00 UTC] Contact " + contact + ": from the future",
                                     "[2100-01-02 11:00 UTC] Contact " + contact + ": same window"]


async def test_messages_of_a_window_are_written_oldest_first_whatever_their_arrival(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    opened = at(made["createdAt"], days=2)
    await company.inbound("opens", contact=contact, sent_at=opened)

    await company.inbound("late arrival, sent earlier", contact=contact, sent_at=at(opened, minutes=-5))

    newest, _ = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(newest)] == ["late arrival, sent earlier", "opens"]


# -- edited and deleted notes ------------------------------------------------------------------

async def test_an_edited_note_is_never_written_again(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)
    await company.bob.data(UPDATE_NOTE, {"n": note["id"], "c": "Called her back, she wants a demo"})

    await company.inbound("inside the window", contact=contact, sent_at=at(made["createdAt"], minutes=5))

    newest, edited = await notes_of(company.ann, person_id)
    assert edited["id"] == note["id"] and edited["content"] == "Called her back, she wants a demo"
    assert datetime.fromisoformat(edited["updatedAt"]) > datetime.fromisoformat(note["updatedAt"])
    assert [line.split(": ", 1)[1] for line in message_lines(newest)] == ["inside the window"]


async def test_a_deleted_note_is_never_written_again(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    deleted = (await company.ann.data(DELETE_NOTE, {"n": note["id"]}))["deleteNote"]
    await company.inbound("inside the window", contact=contact, sent_at=at(made["createdAt"], minutes=5))

    assert deleted == note["id"]
    assert (await company.ann.data(NODE, {"id": note["id"]}))["node"] is None
    [newest] = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(newest)] == ["inside the window"]


async def test_a_note_of_another_company_can_be_neither_edited_nor_deleted(company, other_company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    assert await other_company.admin.error_code(UPDATE_NOTE, {"n": note["id"], "c": "mine"}) == "NOT_FOUND"
    assert await other_company.admin.error_code(DELETE_NOTE, {"n": note["id"]}) == "NOT_FOUND"
    assert (await notes_of(company.ann, person_id)) == [note]


async def test_an_empty_note_edit_is_bad_input_and_changes_nothing(company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    assert await company.ann.error_code(UPDATE_NOTE, {"n": note["id"], "c": "  "}) == "BAD_USER_INPUT"
    assert (await notes_of(company.ann, person_id)) == [note]


# -- several targets, unlink, replies, assignment ------------------------------------------------

async def test_every_linked_target_gets_each_message_in_its_own_note(company):
    conversation_id, contact = await new_conversation(company, "first")
    person_link, person_id = await linked_person(company, conversation_id)
    deal_link = await link(company.ann, conversation_id, {"newDeal": {"title": "Deal"}})

    await company.inbound("to both", contact=contact, sent_at=at(deal_link["createdAt"], minutes=1))

    for target_id in (person_id, deal_link["target"]["id"]):
        [note] = await notes_of(company.ann, target_id)
        assert [line.split(": ", 1)[1] for line in message_lines(note)] == ["first", "to both"]


async def test_unlinking_stops_further_notes_and_keeps_the_written_ones(company):
    conversation_id, contact = await new_conversation(company, "first")
    made, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    unlinked = (await company.ann.data(UNLINK, {"l": made["id"]}))["unlinkConversation"]
    await company.inbound("after unlink", contact=contact, sent_at=at(made["createdAt"], minutes=1))
    await company.inbound("a day later", contact=contact, sent_at=at(made["createdAt"], days=2))

    assert unlinked == made["id"]
    assert (await notes_of(company.ann, person_id)) == [note]
    assert (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"] == []
    assert (await company.ann.data(NODE, {"id": made["id"]}))["node"] is None


async def test_a_conversation_may_be_linked_again_after_unlinking(company):
    conversation_id, _ = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    await company.ann.data(UNLINK, {"l": made["id"]})

    again = await link(company.ann, conversation_id, {"personId": person_id})

    assert again["target"]["id"] == person_id
    assert len(await notes_of(company.ann, person_id)) == 2


async def test_outbound_replies_go_into_the_note_with_the_author_name(company, fakes):
    data = await company.admin.data(
        "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }",
        {"i": {"kind": "CUSTOM", "name": "Replying app", "custom": {"callbackUrl": fakes.callback_url(unique("cb"))}}})
    partner = Client(company.partner.base_url, data["installChannel"]["channelToken"], company.partner.http)
    contact = unique("contact")
    message = await company.inbound("hi", contact=contact, name="Jane Doe", partner=partner)
    conversation_id = message["conversation"]["id"]
    _, person_id = await linked_person(company, conversation_id, by=company.admin)

    await company.admin.data(SEND, {"c": conversation_id, "b": "Hello Jane"})

    [note] = await notes_of(company.admin, person_id)
    assert [line.split("] ", 1)[1] for line in message_lines(note)] == ["Jane Doe: hi", "Ada Admin: Hello Jane"]


async def test_the_assignment_status_line_follows_the_assignee(company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)

    await company.ann.data(ASSIGN, {"c": conversation_id, "u": company.ids["ann"]})
    [assigned] = await notes_of(company.ann, person_id)
    await company.ann.data(UNASSIGN, {"c": conversation_id})
    [unassigned] = await notes_of(company.ann, person_id)

    assert assigned["content"].split("\n")[1] == "Assigned to Ann Agent"
    assert unassigned["content"].split("\n")[1] == "Unassigned"


async def test_a_note_a_user_edited_keeps_its_text_when_the_assignee_changes(company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)
    await company.ann.data(UPDATE_NOTE, {"n": note["id"], "c": "my own words"})

    await company.ann.data(ASSIGN, {"c": conversation_id, "u": company.ids["ann"]})

    [kept] = await notes_of(company.ann, person_id)
    assert kept["content"] == "my own words"


# -- concurrency ---------------------------------------------------------------------------------

async def test_concurrent_messages_never_open_two_notes_for_one_window(company):
    conversation_id, contact = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    window = at(made["createdAt"], days=2)

    await asyncio.gather(*[company.inbound(f"burst {n}", contact=contact, sent_at=at(window, seconds=n))
                           for n in range(20)])

    newest, _ = await notes_of(company.ann, person_id)
    assert sorted(line.split(": ", 1)[1] for line in message_lines(newest)) == sorted(
        f"burst {n}" for n in range(20))


async def test_a_link_made_while_messages_arrive_loses_none_of_them(company):
    conversation_id, contact = await new_conversation(company, "first")
    person = await new_person(company.ann)

    results = await asyncio.gather(
        link(company.ann, conversation_id, {"personId": person["id"]}),
        *[company.inbound(f"racing {n}", contact=contact) for n in range(8)])

    [note] = await notes_of(company.ann, person["id"])
    written = sorted(line.split(": ", 1)[1] for line in message_lines(note))
    assert written == sorted(["first", *(f"racing {n}" for n in range(8))]), results[0]


# -- delete and restore ------------------------------------------------------------------------

async def test_notes_stay_when_the_conversation_is_deleted_and_links_are_gone_after_restore(company):
    conversation_id, contact = await new_conversation(company, "before delete")
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    await company.admin.data("mutation($c: ID!) { deleteConversation(conversationId: $c) }", {"c": conversation_id})
    [while_deleted] = await notes_of(company.ann, person_id)
    await company.inbound("after restore", contact=contact)

    assert while_deleted["content"] == note["content"] and while_deleted["conversation"] is None
    assert (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"] == []
    [after_restore] = await notes_of(company.ann, person_id)
    assert after_restore["content"] == note["content"]
    assert after_restore["conversation"] == {"id": conversation_id}


async def test_notes_stay_when_the_channel_is_uninstalled(company):
    conversation_id, _ = await new_conversation(company, "kept")
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    await company.admin.data("mutation($c: ID!) { uninstallChannel(channelId: $c) }", {"c": company.channel_id})

    [kept] = await notes_of(company.ann, person_id)
    assert kept["id"] == note["id"] and kept["content"] == note["content"] and kept["conversation"] is None


# -- HTML-safe content ---------------------------------------------------------------------------

async def test_written_notes_escape_markup(company):
    conversation_id, _ = await new_conversation(company, "<script>alert('x')</script> Tom & Jerry",
                                                name="<b>Eve</b>")
    _, person_id = await linked_person(company, conversation_id)

    [note] = await notes_of(company.ann, person_id)

    assert "<" not in note["content"] and ">" not in note["content"]
    assert message_lines(note)[0].endswith(
        "&lt;b&gt;Eve&lt;/b&gt;: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Tom &amp; Jerry")


async def test_edited_notes_escape_markup_and_are_not_escaped_twice(company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.ann, person_id)

    edited = (await company.ann.data(UPDATE_NOTE, {"n": note["id"], "c": "<img src=x onerror=alert(1)> & co"})
              )["updateNote"]
    again = (await company.ann.data(UPDATE_NOTE, {"n": note["id"], "c": edited["content"]}))["updateNote"]

    assert edited["content"] == "&lt;img src=x onerror=alert(1)&gt; &amp; co"
    assert again["content"] == edited["content"]


# -- input, conflicts and access ------------------------------------------------------------------

async def test_linking_the_same_target_twice_is_a_conflict(company):
    conversation_id, _ = await new_conversation(company)
    _, person_id = await linked_person(company, conversation_id)

    code = await company.ann.error_code(LINK, {"c": conversation_id, "t": {"personId": person_id}})

    assert code == "CONFLICT"
    assert len((await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"]) == 1
    assert len(await notes_of(company.ann, person_id)) == 1


@pytest.mark.parametrize("target", [
    {},
    {"personId": None},
    {"newPerson": {"name": "Two fields"}, "newLead": {"title": "Two fields"}},
], ids=["none", "only-null", "two"])
async def test_a_link_target_with_zero_or_two_fields_is_bad_input_and_changes_nothing(company, target):
    conversation_id, _ = await new_conversation(company)

    code = await company.ann.error_code(LINK, {"c": conversation_id, "t": target})

    assert code == "BAD_USER_INPUT"
    assert (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"] == []
    assert (await company.ann.data(PERSONS, {"search": "Two fields"}))["persons"]["edges"] == []


async def test_a_malformed_target_id_is_bad_input(company):
    conversation_id, _ = await new_conversation(company)

    assert await company.ann.error_code(LINK, {"c": conversation_id, "t": {"personId": "nope"}}) == "BAD_USER_INPUT"


async def test_a_new_person_without_a_name_is_bad_input_and_creates_nothing(company):
    conversation_id, _ = await new_conversation(company)

    code = await company.ann.error_code(LINK, {"c": conversation_id, "t": {"newPerson": {"name": " "}}})

    assert code == "BAD_USER_INPUT"
    assert (await company.ann.data(PERSONS))["persons"]["edges"] == []


async def test_users_without_access_to_the_conversation_cannot_link_or_unlink_it(company, other_company):
    conversation_id, _ = await new_conversation(company)
    person = await new_person(company.bob)
    made, _ = await linked_person(company, conversation_id)

    assert await company.bob.error_code(LINK, {"c": conversation_id, "t": {"personId": person["id"]}}) == "NOT_FOUND"
    assert await other_company.admin.error_code(LINK, {"c": conversation_id, "t": {"newPerson": {"name": "X"}}}) \
        == "NOT_FOUND"
    assert await company.bob.error_code(UNLINK, {"l": made["id"]}) == "NOT_FOUND"
    assert await other_company.admin.error_code(UNLINK, {"l": made["id"]}) == "NOT_FOUND"
    assert len((await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"]) == 1
    assert await notes_of(company.ann, person["id"]) == []


async def test_items_of_another_company_cannot_be_linked(company, other_company):
    conversation_id, _ = await new_conversation(company)
    foreign_person = await new_person(other_company.admin)
    foreign_lead = (await other_company.admin.data(CREATE_LEAD, {"i": {"title": "L"}}))["createLead"]

    assert await company.ann.error_code(LINK, {"c": conversation_id, "t": {"personId": foreign_person["id"]}}) \
        == "NOT_FOUND"
    assert await company.ann.error_code(LINK, {"c": conversation_id, "t": {"leadId": foreign_lead["id"]}}) \
        == "NOT_FOUND"
    assert await company.ann.error_code(
        LINK, {"c": conversation_id, "t": {"newDeal": {"title": "D", "personId": foreign_person["id"]}}}) \
        == "NOT_FOUND"
    assert (await company.ann.data(LINKS, {"c": conversation_id}))["conversation"]["links"] == []


async def test_every_new_type_is_invisible_to_another_company_through_node(company, other_company):
    conversation_id, _ = await new_conversation(company)
    made = await link(company.ann, conversation_id, {"newLead": {"title": "Lead",
                                                                 "personId": (await new_person(company.ann))["id"]}})
    deal = (await company.ann.data(CREATE_DEAL, {"i": {"title": "Deal"}}))["createDeal"]
    [note] = await notes_of(company.ann, made["target"]["id"])
    lead = (await company.ann.data("query($id: ID!) { node(id: $id) { ... on Lead { person { id } } } }",
                                   {"id": made["target"]["id"]}))["node"]
    ids = {"Person": lead["person"]["id"], "Lead": made["target"]["id"], "Deal": deal["id"], "Note": note["id"],
           "ConversationLink": made["id"]}

    mine = {kind: (await company.ann.data(NODE, {"id": pk}))["node"] for kind, pk in ids.items()}
    theirs = {kind: (await other_company.admin.data(NODE, {"id": pk}))["node"] for kind, pk in ids.items()}

    assert mine == {kind: {"id": pk, "__typename": kind} for kind, pk in ids.items()}
    assert theirs == {kind: None for kind in ids}


async def test_a_link_is_visible_only_with_access_to_its_conversation_the_crm_to_everyone(company):
    conversation_id, _ = await new_conversation(company)
    made, person_id = await linked_person(company, conversation_id)
    [note] = await notes_of(company.bob, person_id)

    assert (await company.bob.data(NODE, {"id": made["id"]}))["node"] is None
    assert (await company.bob.data(NODE, {"id": person_id}))["node"] == {"id": person_id, "__typename": "Person"}
    assert note["conversation"] is None


# -- real time -----------------------------------------------------------------------------------

async def test_linking_and_unlinking_reach_conversation_changed(company, subscribers):
    conversation_id, _ = await new_conversation(company)
    sub = await subscribers(company.admin.token)
    await sub.subscribe(CONVERSATION_CHANGED, {"c": conversation_id})
    await subscriptions_live(company)

    made, _ = await linked_person(company, conversation_id)
    await company.ann.data(UNLINK, {"l": made["id"]})

    events = [(await sub.next_data())["conversationChanged"] for _ in range(2)]
    assert [(event["kind"], event["actor"]["id"], event["conversationId"]) for event in events] == [
        ("LINKED", company.ids["ann"], conversation_id), ("UNLINKED", company.ids["ann"], conversation_id)]


# -- persons -------------------------------------------------------------------------------------

async def test_persons_are_searched_by_name_email_or_phone_case_insensitively(company, other_company):
    by_name = await new_person(company.ann, "Élodie Martin")
    by_email = await new_person(company.ann, "Someone", email="sales@ACME.example")
    by_phone = await new_person(company.ann, "Another", phone="+33 6 12 34 56 78")
    await new_person(other_company.admin, "Élodie Martin")

    async def found(search: str) -> list[str]:
        edges = (await company.bob.data(PERSONS, {"search": search}))["persons"]["edges"]
        return [edge["node"]["id"] for edge in edges]

    assert await found("élodie") == [by_name["id"]]
    assert await found("acme.EXAMPLE") == [by_email["id"]]
    assert await found("12 34") == [by_phone["id"]]


async def test_persons_are_listed_newest_first_with_stable_cursors(company):
    made = [await new_person(company.ann, f"Person {n}") for n in range(5)]

    first = (await company.ann.data(PERSONS, {"first": 2}))["persons"]
    await new_person(company.ann, "Arrived meanwhile")
    rest = (await company.ann.data(PERSONS, {"first": 10, "after": first["pageInfo"]["endCursor"]}))["persons"]

    assert [e["node"]["id"] for e in first["edges"] + rest["edges"]] == [p["id"] for p in reversed(made)]
    assert first["pageInfo"]["hasNextPage"] and not first["pageInfo"]["hasPreviousPage"]
    assert not rest["pageInfo"]["hasNextPage"] and rest["pageInfo"]["hasPreviousPage"]


async def test_a_malformed_persons_cursor_is_bad_input(company):
    assert await company.ann.error_code(PERSONS, {"after": "garbage"}) == "BAD_USER_INPUT"


async def test_a_partner_integration_sees_no_links(company):
    conversation_id, contact = await new_conversation(company)
    await linked_person(company, conversation_id)

    body = await company.partner.execute(
        "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { conversation { links { id } } } }",
        {"i": {"externalMessageId": unique("m"), "sender": {"externalId": contact, "name": "Jane"}, "body": "hi"}})

    assert body["data"] is None
    assert [error["extensions"]["code"] for error in body["errors"]] == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["receiveChannelMessage", "conversation", "links"]


@pytest.mark.parametrize("mutation, variables", [
    (CREATE_PERSON, {"name": ""}),
    (CREATE_PERSON, {"name": "x" * 256}),
    (CREATE_PERSON, {"name": "Jane", "email": "not an email"}),
    (CREATE_LEAD, {"title": " "}),
    (CREATE_DEAL, {"title": "Deal", "currency": "euro"}),
    (CREATE_DEAL, {"title": "Deal", "value": -1}),
    (CREATE_DEAL, {"title": "Deal", "personId": "garbage"}),
], ids=["empty-name", "long-name", "bad-email", "empty-title", "bad-currency", "negative-value", "bad-person-id"])
async def test_invalid_crm_input_is_bad_input(company, mutation, variables):
    assert await company.ann.error_code(mutation, {"i": variables}) == "BAD_USER_INPUT"
    assert (await company.ann.data(PERSONS))["persons"]["edges"] == []


# -- bounds: a note's size and the cost of writing into it ---------------------------------------

async def test_a_window_reaching_the_note_max_opens_a_new_note(company):
    import models
    from schema.ids import pk_of

    conversation_id, contact = await new_conversation(company, "m1")
    made, person_id = await linked_person(company, conversation_id)
    # given a link whose note windows hold three messages (INBOX_NOTE_MAX_MESSAGES when linked)
    await models.ConversationLink.filter(id=pk_of(made["id"], "ConversationLink")).update(note_max_messages=3)

    for n in range(2, 6):
        await company.inbound(f"m{n}", contact=contact, sent_at=at(made["createdAt"], minutes=n))

    # then the window's fourth message opened a new note, which takes the next ones
    newest, first = await notes_of(company.ann, person_id)
    assert [line.split(": ", 1)[1] for line in message_lines(first)] == ["m1", "m2", "m3"]
    assert [line.split(": ", 1)[1] for line in message_lines(newest)] == ["m4", "m5"]
    assert newest["content"].split("\n")[:4] == first["content"].split("\n")[:4]


async def test_a_link_records_the_servers_note_max(company, server):
    import models
    from schema.ids import pk_of

    conversation_id, _ = await new_conversation(company)
    made, _ = await linked_person(company, conversation_id)

    row = await models.ConversationLink.get(id=pk_of(made["id"], "ConversationLink"))
    assert row.note_max_messages == server.settings.note_max_messages == 200


def test_the_note_max_is_read_from_the_environment(monkeypatch):
    from server.config import Settings

    monkeypatch.setenv("INBOX_NOTE_MAX_MESSAGES", "7")
    assert Settings.from_env().note_max_messages == 7


class NoteWrites(logging.Handler):
    """The bytes of the parameters of every statement that writes a note or its lines."""

    WRITES = re.compile(r'^\s*(INSERT\s+INTO|UPDATE)\s+"?note(_line)?"?\s', re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bytes = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and len(record.args) == 2 and self.WRITES.match(str(record.args[0])):
            self.bytes += sum(len(str(value)) for value in record.args[1] or ())


@pytest.fixture
def note_writes():
    logger = logging.getLogger("tortoise.db_client")
    handler, previous = NoteWrites(), logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_writing_a_message_into_a_note_costs_its_own_line_whatever_the_window_holds(company, note_writes):
    conversation_id, contact = await new_conversation(company, "opening")
    made, person_id = await linked_person(company, conversation_id)
    body = "x" * 2000

    async def written(n: int) -> int:
        note_writes.bytes = 0
        await company.inbound(body, contact=contact, sent_at=at(made["createdAt"], minutes=n))
        return note_writes.bytes

    # when the window's 2nd and then its 40th message arrive, each as long as the other
    second = await written(1)
    for n in range(2, 39):
        await company.inbound(body, contact=contact, sent_at=at(made["createdAt"], minutes=n))
    fortieth = await written(39)

    # then each wrote its own line once, and the fortieth no more than the second:
    # not the 39 lines before it again
    assert len(body) <= second < 2 * len(body), second
    assert fortieth <= second + 32, (second, fortieth)
    [note] = await notes_of(company.ann, person_id)
    assert len(message_lines(note)) == 40


async def test_a_batch_of_messages_into_notes_runs_a_fixed_number_of_statements(company, count_queries):
    import models
    from inbox import messages
    from schema.ids import pk_of

    conversation_id, contact = await new_conversation(company, "opening")
    _, person_id = await linked_person(company, conversation_id)
    channel = await models.Channel.get(id=pk_of(company.channel_id, "Channel"))

    async def statements(count: int) -> int:
        count_queries.count = 0
        await messages.receive_all([(channel, messages.Inbound(
            external_message_id=unique("m"), sender_external_id=contact, sender_name="Jane", body=f"batch {n}"))
            for n in range(count)])
        return count_queries.count

    # when messages of a linked conversation arrive together, three then fifteen of them
    # (the fewest of three tries: background work logs its statements to the same counter)
    few = min([await statements(3) for _ in range(3)])
    many = min([await statements(15) for _ in range(3)])
    # then both batches ran as many statements, and every message is in the note
    assert few == many, (few, many)
    [note] = await notes_of(company.ann, person_id)
    assert len(message_lines(note)) == 1 + 3 * 3 + 15 * 3
