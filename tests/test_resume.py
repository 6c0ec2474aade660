"""Every live stream resumes after a dropped socket (SPEC §6, issue 12): with `after`, the
server replays what the viewer missed, in order, then streams live ones, with no gap and
no duplicate. messageAdded and conversationChanged are proved action by action in
tests/test_replay.py; here messageUpdated, notificationReceived, cursors and access."""
from __future__ import annotations

import asyncio
import base64

from conftest import DEADLINE, Company, subscriptions_live, unique
from test_sending import install_partner, report, send, settled

UPDATED = """subscription($c: ID, $after: String) {
  messageUpdated(conversationId: $c, after: $after) { id status updateCursor } }"""
NOTIFIED = """subscription($after: String) {
  notificationReceived(after: $after) { id kind cursor conversation { id } } }"""
CHANGED = """subscription($after: String) { conversationChanged(after: $after) { kind cursor conversationId } }"""
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id } }"
REOPEN = "mutation($c: ID!) { reopenConversation(conversationId: $c) { id } }"
SHARE = "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }"
UNSHARE = "mutation($c: ID!, $u: [ID!]!) { unshareChannel(channelId: $c, userIds: $u) { id } }"
UPDATE_CURSOR = "query($id: ID!) { node(id: $id) { ... on Message { updateCursor } } }"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def first_error(sub, operation: str) -> dict:
    while True:
        message = await sub.receive()
        if message.get("id") == operation and message["type"] == "error":
            return message["payload"][0]


async def test_message_updated_resumes_each_changed_message_once_in_its_latest_state(
        company: Company, subscribers, fakes):
    # Given two replies, and a cursor taken when the first was created
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, (200, {"externalMessageId": "ext-a"}), (200, {"externalMessageId": "ext-b"}))
    first = await send(company.ann, partner.conversation_id, "first")
    created = (await company.ann.data(UPDATE_CURSOR, {"id": first["id"]}))["node"]["updateCursor"]
    second = await send(company.ann, partner.conversation_id, "second")
    # When, while the client is away, both are sent, then the first is delivered
    await settled(company.ann, first["id"], "SENT")
    await settled(company.ann, second["id"], "SENT")
    await report(partner, "ext-a", "DELIVERED")
    sub = await subscribers(company.ann.token)
    await sub.subscribe(UPDATED, {"c": partner.conversation_id, "after": created})

    # Then it gets each changed message once, in its current state, in the order of its
    # latest change
    replayed = [(await sub.next_data())["messageUpdated"] for _ in range(2)]
    assert [(m["id"], m["status"]) for m in replayed] == [(second["id"], "SENT"), (first["id"], "DELIVERED")]
    assert await sub.nothing_within(0.3)
    # and then the live stream, with nothing repeated
    await report(partner, "ext-b", "READ")
    live = (await sub.next_data())["messageUpdated"]
    assert (live["id"], live["status"]) == (second["id"], "READ")
    # and the last cursor resumes after everything it saw
    again = await subscribers(company.ann.token)
    await again.subscribe(UPDATED, {"c": partner.conversation_id, "after": live["updateCursor"]})
    assert await again.nothing_within(0.3)


async def test_notification_received_resumes_after_its_cursor(company: Company, subscribers):
    # Given ann's first notification (a new unassigned conversation), seen with its cursor
    sub = await subscribers(company.ann.token)
    await sub.subscribe(NOTIFIED)
    await subscriptions_live(company)
    await company.inbound("one", contact=unique("c"))
    seen = (await sub.next_data())["notificationReceived"]
    await sub.close()
    # When two more arrive while she is away
    later = [await company.inbound(body, contact=unique("c")) for body in ("two", "three")]
    again = await subscribers(company.ann.token)
    await again.subscribe(NOTIFIED, {"after": seen["cursor"]})

    # Then she gets exactly those, in order, then live ones
    replayed = [(await again.next_data())["notificationReceived"] for _ in later]
    assert [n["conversation"]["id"] for n in replayed] == [m["conversation"]["id"] for m in later]
    assert replayed[0]["cursor"] != seen["cursor"]
    live_message = await company.inbound("four", contact=unique("c"))
    live = (await again.next_data())["notificationReceived"]
    assert live["conversation"]["id"] == live_message["conversation"]["id"]
    # and a notification's cursor pages the `notifications` list too (older ones after it)
    listed = await company.ann.data("query($a: String) { notifications(after: $a) { edges { node { id } } } }",
                                    {"a": replayed[-1]["cursor"]})
    ids = [edge["node"]["id"] for edge in listed["notifications"]["edges"]]
    assert ids[:2] == [replayed[0]["id"], seen["id"]]


async def test_a_cursor_this_deployment_never_made_is_cursor_expired(company: Company, subscribers):
    sub = await subscribers(company.admin.token)
    for query, stream, tag in ((CHANGED, "conversationChanged", "e"), (NOTIFIED, "notificationReceived", "n"),
                               (UPDATED, "messageUpdated", "u")):
        operation = await sub.subscribe(query, {"after": cursor(f"{tag}:999999999999")})
        error = await first_error(sub, operation)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "reason": "CURSOR_EXPIRED"}, (stream, error)


async def test_a_malformed_cursor_is_bad_user_input(company: Company, subscribers):
    sub = await subscribers(company.admin.token)
    for query in (CHANGED, NOTIFIED, UPDATED):
        for bad in ("not a cursor", cursor("m:12"), cursor("e:-1")):
            if query is UPDATED and bad == cursor("m:12"):
                continue  # a message's cursor is a position of the messageUpdated stream too
            operation = await sub.subscribe(query, {"after": bad})
            error = await first_error(sub, operation)
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (query, bad, error)


async def test_a_viewer_removed_from_a_channel_during_the_gap_gets_nothing_of_it(company: Company, subscribers):
    # Given bob, a member of the partner channel, who saw an event of its conversation
    await company.admin.data(SHARE, {"c": company.channel_id, "u": [company.ids["bob"]]})
    conversation = (await company.inbound("hello", contact=unique("c")))["conversation"]["id"]
    sub = await subscribers(company.bob.token)
    await sub.subscribe(CHANGED)
    await subscriptions_live(company)
    await company.admin.data(CLOSE, {"c": conversation})
    seen = (await sub.next_data())["conversationChanged"]
    assert seen["kind"] == "CLOSED"
    await sub.close()
    # When, while he is away, he is removed from the channel and the conversation reopens
    await company.admin.data(UNSHARE, {"c": company.channel_id, "u": [company.ids["bob"]]})
    await company.admin.data(REOPEN, {"c": conversation})
    # Then resuming gives him nothing of that channel
    again = await subscribers(company.bob.token)
    await again.subscribe(CHANGED, {"after": seen["cursor"]})
    assert await again.nothing_within(0.5)


async def test_a_conversation_deleted_during_the_gap_replays_its_deleted_event(company: Company, subscribers):
    # Given ann, who saw an event of a conversation
    conversation = (await company.inbound("hello", contact=unique("c")))["conversation"]["id"]
    sub = await subscribers(company.ann.token)
    await sub.subscribe(CHANGED)
    await subscriptions_live(company)
    await company.admin.data(CLOSE, {"c": conversation})
    seen = (await sub.next_data())["conversationChanged"]
    await sub.close()
    # When the installer deletes it while she is away
    await company.admin.data("mutation($c: ID!) { deleteConversation(conversationId: $c) }", {"c": conversation})
    # Then resuming replays its DELETED event, and nothing before it twice
    again = await subscribers(company.ann.token)
    await again.subscribe(CHANGED, {"after": seen["cursor"]})
    replayed = (await again.next_data())["conversationChanged"]
    assert (replayed["kind"], replayed["conversationId"]) == ("DELETED", conversation)
    assert await again.nothing_within(0.3)


# -- replay equals fetch for replies' statuses and for notifications -------------------------

ADDED_IN = """subscription($c: ID, $after: String) {
  messageAdded(conversationId: $c, after: $after) { id status cursor } }"""
STATUSES = "query($c: ID!) { conversation(id: $c) { messages(first: 100) { edges { node { id status } } } } }"
TOGGLES = "{ newMessageAssignedToMe newMessageAssignedToOthers newMessageUnassigned conversationAssignedToMe }"
SETTINGS = f"""mutation($i: NotificationSettingsInput!) {{
  updateNotificationSettings(input: $i) {{ desktop {TOGGLES} }} }}"""
NOTIFICATIONS = "{ notifications(first: 100) { edges { node { id kind conversation { id } } } } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"


async def statuses(company: Company, conversation: str) -> dict:
    found = await company.ann.data(STATUSES, {"c": conversation})
    return {edge["node"]["id"]: edge["node"]["status"] for edge in found["conversation"]["messages"]["edges"]}


async def test_reply_statuses_resumed_after_a_dropped_socket_equal_a_fresh_fetch(
        company: Company, subscribers, fakes):
    # Given a partner conversation with a reply, and ann's client: fetched statuses and
    # cursors on messageAdded and messageUpdated
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, *[(200, {"externalMessageId": f"ext-{n}"}) for n in range(3)])
    first = await send(company.ann, partner.conversation_id, "first")
    await settled(company.ann, first["id"], "SENT")
    conversation = partner.conversation_id
    state = await statuses(company, conversation)
    cursors = {"messageAdded": (await company.ann.data(
        "query($c: ID!) { conversation(id: $c) { lastMessage { cursor } } }", {"c": conversation})
                               )["conversation"]["lastMessage"]["cursor"],
               "messageUpdated": (await company.ann.data(UPDATE_CURSOR, {"id": first["id"]}))["node"]["updateCursor"]}

    # When, while her socket is down, two more replies go out and each status moves
    second = await send(company.ann, partner.conversation_id, "second")
    third = await send(company.ann, partner.conversation_id, "third")
    for reply in (second, third):
        await settled(company.ann, reply["id"], "SENT")
    await report(partner, "ext-0", "READ")
    await report(partner, "ext-1", "DELIVERED")
    await report(partner, "ext-2", "FAILED", "blocked")
    fresh = await statuses(company, conversation)

    # Then resuming both streams from her cursors rebuilds exactly what a fetch returns
    sub = await subscribers(company.ann.token)
    added = await sub.subscribe(ADDED_IN, {"c": conversation, "after": cursors["messageAdded"]})
    updated = await sub.subscribe(UPDATED, {"c": conversation, "after": cursors["messageUpdated"]})
    # (each stream gives a message in its current state: applying both is idempotent)
    changed = []
    while True:
        try:
            frame = await sub.receive(0.5 if state == fresh else DEADLINE)
        except asyncio.TimeoutError:
            break
        assert frame["type"] == "next", frame
        stream = {added: "messageAdded", updated: "messageUpdated"}[frame["id"]]
        message = frame["payload"]["data"][stream]
        state[message["id"]] = message["status"]
        if stream == "messageUpdated":
            changed.append(message["id"])
    assert state == fresh
    # and messageUpdated gave each changed message once
    assert sorted(changed) == sorted({first["id"], second["id"], third["id"]})


async def test_notifications_of_every_kind_resumed_after_a_dropped_socket_equal_a_fresh_fetch(
        company: Company, subscribers):
    # Given ann, with every desktop notification on, whose client fetched her
    # notifications and saw one live (with its cursor)
    every = {"newMessageAssignedToMe": True, "newMessageAssignedToOthers": True, "newMessageUnassigned": True,
             "conversationAssignedToMe": True}
    await company.ann.data(SETTINGS, {"i": {"desktop": every}})
    sub = await subscribers(company.ann.token)
    await sub.subscribe(NOTIFIED)
    await subscriptions_live(company)
    await company.inbound("probe", contact=unique("c"))
    last = (await sub.next_data())["notificationReceived"]["cursor"]
    fetched = await company.ann.data(NOTIFICATIONS)
    state = [edge["node"] for edge in fetched["notifications"]["edges"]]
    await sub.close()

    # When, while she is away, something of each kind happens
    mine = (await company.inbound("for ann", contact=unique("c")))["conversation"]["id"]          # UNASSIGNED
    await company.admin.data(ASSIGN, {"c": mine, "u": company.ids["ann"]})                         # ASSIGNED_TO_ME
    await company.inbound("more for ann", contact=unique("x"))
    theirs = (await company.inbound("for admin", contact=unique("c")))["conversation"]["id"]
    await company.admin.data(ASSIGN, {"c": theirs, "u": company.ids["admin"]})
    contact_of_mine = (await company.admin.data(
        "query($c: ID!) { conversation(id: $c) { contact { externalId } } }", {"c": mine}))
    await company.inbound("to ann's", contact=contact_of_mine["conversation"]["contact"]["externalId"])  # TO_ME
    contact_of_theirs = (await company.admin.data(
        "query($c: ID!) { conversation(id: $c) { contact { externalId } } }", {"c": theirs}))
    await company.inbound("to admin's", contact=contact_of_theirs["conversation"]["contact"]["externalId"])  # OTHERS
    fresh = [edge["node"] for edge in (await company.ann.data(NOTIFICATIONS))["notifications"]["edges"]]
    assert {n["kind"] for n in fresh} >= {"NEW_MESSAGE_UNASSIGNED", "CONVERSATION_ASSIGNED_TO_ME",
                                           "NEW_MESSAGE_ASSIGNED_TO_ME", "NEW_MESSAGE_ASSIGNED_TO_OTHERS"}

    # Then resuming from her cursor, newest first like the list, rebuilds it exactly
    again = await subscribers(company.ann.token)
    await again.subscribe(NOTIFIED, {"after": last})
    while len(state) < len(fresh):
        notification = (await again.next_data())["notificationReceived"]
        state.insert(0, {"id": notification["id"], "kind": notification["kind"],
                         "conversation": notification["conversation"]})
    assert state == fresh
    assert await again.nothing_within(0.3)


async def test_a_message_just_received_has_its_cursors(company: Company):
    # The inbound path builds its messages from the rows it inserted, every column included.
    received = await company.partner.data(
        """mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id cursor updateCursor } }""",
        {"i": {"externalMessageId": unique("ext"), "sender": {"externalId": unique("c"), "name": "C"}, "body": "hi"}})
    message = received["receiveChannelMessage"]
    assert base64.urlsafe_b64decode(message["updateCursor"] + "==").decode().startswith("u:")
    assert message["cursor"] != message["updateCursor"]
