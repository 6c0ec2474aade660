"""Notifications (SPEC §5): the four kinds with their desktop and email toggles and
defaults, who is notified (members of the channel, the assignee), the stored desktop
notifications with their read state, `notificationReceived` over real websockets, and
the emails: their content, bursts collapsed, retries while the SMTP server is down,
exactly once across restarts and racing workers, and queued while none is configured.

The session server sends its emails to a real SMTP server (aiosmtpd, tests/smtp_server.py)
and collapses new-message bursts over 0.3 s (conftest.py). Where a test looks at what is
queued rather than sent, the session server's email worker is paused (`mailer_paused`),
as if its process had stopped: the outbox rows are then what will be sent."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest

import models
from inbox.mailer import Mailer
from schema.ids import conversation_url, pk_of
from server.mail import SmtpTransport, parse_smtp_url, start_mailer

from conftest import Client, Company, eventually, make_settings, subscriptions_live, unique

KINDS = ["NEW_MESSAGE_ASSIGNED_TO_ME", "NEW_MESSAGE_ASSIGNED_TO_OTHERS", "NEW_MESSAGE_UNASSIGNED",
         "CONVERSATION_ASSIGNED_TO_ME"]
FIELD = {"NEW_MESSAGE_ASSIGNED_TO_ME": "newMessageAssignedToMe",
         "NEW_MESSAGE_ASSIGNED_TO_OTHERS": "newMessageAssignedToOthers",
         "NEW_MESSAGE_UNASSIGNED": "newMessageUnassigned",
         "CONVERSATION_ASSIGNED_TO_ME": "conversationAssignedToMe"}
TOGGLES = "{ newMessageAssignedToMe newMessageAssignedToOthers newMessageUnassigned conversationAssignedToMe }"
SETTINGS = f"{{ notificationSettings {{ desktop {TOGGLES} email {TOGGLES} }} }}"
UPDATE = f"""
mutation($i: NotificationSettingsInput!) {{
  updateNotificationSettings(input: $i) {{ desktop {TOGGLES} email {TOGGLES} }}
}}"""
NOTIFICATION = "id kind createdAt readAt conversation { id } message { id body } actor { id }"
NOTIFICATIONS = f"""
query($u: Boolean, $f: Int, $a: String) {{
  notifications(unreadOnly: $u, first: $f, after: $a) {{
    edges {{ cursor node {{ {NOTIFICATION} }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}"""
MARK = "mutation($ids: [ID!]) { markNotificationsRead(ids: $ids) }"
RECEIVED = f"subscription {{ notificationReceived {{ {NOTIFICATION} }} }}"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } apiToken } }"
INSTALL = "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }"
SHARE = "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }"
UNSHARE = "mutation($c: ID!, $u: [ID!]!) { unshareChannel(channelId: $c, userIds: $u) { id } }"
SEND = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
NODE = "query($id: ID!) { node(id: $id) { id ... on Notification { kind } } }"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def mailer_paused(server):
    """The session server's email worker claims nothing during the test, as if its process
    had stopped: the outbox keeps what is queued. `resume()` starts it again."""
    mailer = server.server.config.app.app.state.mailer

    async def claim_nothing() -> list[int]:
        return []

    def resume() -> None:
        if "claim" in vars(mailer):
            del mailer.claim
        mailer.wake()

    mailer.claim = claim_nothing
    mailer.resume = resume
    yield mailer
    resume()
    del mailer.resume


@pytest.fixture
def fresh_mailers(server):
    """Two email workers as two freshly started server processes would run them."""
    settings = server.settings
    return [Mailer(SmtpTransport(parse_smtp_url(settings.smtp_url), settings.email_timeout),
                   from_address=settings.email_from,
                   conversation_url=lambda pk: conversation_url(settings.public_url, pk),
                   timeout=settings.email_timeout, collapse_seconds=settings.email_collapse_seconds,
                   backoff_seconds=settings.email_backoff_seconds, retry_seconds=settings.email_retry_seconds)
            for _ in range(2)]


def user_pk(company: Company, key: str) -> int:
    return pk_of(company.ids[key], "User")


async def address_of(client: Client) -> str:
    return (await client.data("{ me { email } }"))["me"]["email"]


async def only(client: Client, kind: str | None, *, desktop: bool = False, email: bool = False) -> dict:
    """Every toggle off but `kind`'s, which is set as given."""
    off = {field: False for field in FIELD.values()}
    changes = {"desktop": dict(off), "email": dict(off)}
    if kind is not None:
        changes["desktop"][FIELD[kind]] = desktop
        changes["email"][FIELD[kind]] = email
    return (await client.data(UPDATE, {"i": changes}))["updateNotificationSettings"]


async def notifications(client: Client, unread_only: bool | None = None, first: int | None = None,
                        after: str | None = None) -> dict:
    variables = {"u": unread_only, "f": first, "a": after}
    return (await client.data(NOTIFICATIONS, {k: v for k, v in variables.items() if v is not None}))["notifications"]


async def kinds(client: Client) -> list[str]:
    return [edge["node"]["kind"] for edge in (await notifications(client))["edges"]]


async def queued_kinds(company: Company, key: str) -> list[str]:
    """What the outbox holds for that user (with the email worker paused: what will be sent)."""
    rows = await models.NotificationEmail.filter(user_id=user_pk(company, key)).order_by("id")
    return [row.kind.value for row in rows]


async def assign(client: Client, conversation_id: str, user_id: str) -> None:
    await client.data(ASSIGN, {"c": conversation_id, "u": user_id})


async def add_user(company: Company, key: str, *, is_admin: bool = False, email: str | None = None) -> Client:
    data = await company.admin.data(CREATE_USER, {"i": {
        "name": f"{key.capitalize()} User", "email": email or f"{unique(key)}@example.com", "isAdmin": is_admin}})
    company.ids[key] = data["createUser"]["user"]["id"]
    return Client(company.admin.base_url, data["createUser"]["apiToken"], company.admin.http)


async def cause(company: Company, kind: str) -> str:
    """Makes one notification of `kind` for ann (with only that kind's toggles on, nothing
    else reaches her); returns the conversation's id."""
    contact = unique("contact")
    first = await company.inbound("Hello there", contact=contact, name="Carla Contact")
    conversation = first["conversation"]["id"]  # NEW_MESSAGE_UNASSIGNED for ann
    if kind == "NEW_MESSAGE_ASSIGNED_TO_ME":
        await assign(company.admin, conversation, company.ids["ann"])
        await company.inbound("Any news?", contact=contact, name="Carla Contact")
    elif kind == "NEW_MESSAGE_ASSIGNED_TO_OTHERS":
        await assign(company.admin, conversation, company.ids["admin"])
        await company.inbound("Any news?", contact=contact, name="Carla Contact")
    elif kind == "CONVERSATION_ASSIGNED_TO_ME":
        await assign(company.admin, conversation, company.ids["ann"])
    return conversation


async def outbox_empty_for(company: Company, key: str) -> None:
    await eventually(lambda: queued_kinds(company, key), lambda queued: queued == [])


# -- settings -----------------------------------------------------------------------------


async def test_defaults_are_desktop_for_mine_unassigned_and_assigned_to_me_and_email_for_assigned_to_me(company):
    # when: a new user reads their settings
    settings = (await company.ann.data(SETTINGS))["notificationSettings"]

    # then: the spec's defaults
    assert settings == {
        "desktop": {"newMessageAssignedToMe": True, "newMessageAssignedToOthers": False,
                    "newMessageUnassigned": True, "conversationAssignedToMe": True},
        "email": {"newMessageAssignedToMe": False, "newMessageAssignedToOthers": False,
                  "newMessageUnassigned": False, "conversationAssignedToMe": True},
    }


async def test_update_changes_only_the_toggles_given_and_is_kept(company):
    # when: ann turns on the email for unassigned messages and nothing else
    updated = (await company.ann.data(UPDATE, {"i": {"email": {"newMessageUnassigned": True},
                                                     "desktop": {"newMessageAssignedToMe": None}}}
                                      ))["updateNotificationSettings"]

    # then: that toggle changed, the others kept their defaults, and a later read agrees
    assert updated["email"] == {"newMessageAssignedToMe": False, "newMessageAssignedToOthers": False,
                                "newMessageUnassigned": True, "conversationAssignedToMe": True}
    assert updated["desktop"]["newMessageAssignedToMe"] is True
    assert (await company.ann.data(SETTINGS))["notificationSettings"] == updated


async def test_settings_are_each_users_own(company):
    # given: ann turns everything off
    await only(company.ann, None)

    # then: bob keeps the defaults
    bob = (await company.bob.data(SETTINGS))["notificationSettings"]
    assert bob["desktop"]["newMessageUnassigned"] is True and bob["email"]["conversationAssignedToMe"] is True


# -- every kind and toggle ----------------------------------------------------------------


@pytest.mark.parametrize("email", [True, False], ids=["email", "no-email"])
@pytest.mark.parametrize("desktop", [True, False], ids=["desktop", "no-desktop"])
@pytest.mark.parametrize("kind", KINDS)
async def test_notification_follows_its_kinds_desktop_and_email_toggles(company, mailer_paused, mailbox,
                                                                         kind, desktop, email):
    # given: ann has only this kind's toggles set, as given
    await only(company.ann, kind, desktop=desktop, email=email)

    # when: something of that kind happens to her
    conversation = await cause(company, kind)

    # then: stored (and listed) only with the desktop toggle, queued only with the email one
    listed = (await notifications(company.ann))["edges"]
    assert [edge["node"]["kind"] for edge in listed] == ([kind] if desktop else [])
    if desktop:
        assert listed[0]["node"]["conversation"] == {"id": conversation}
    assert await queued_kinds(company, "ann") == ([kind] if email else [])

    # and: the queued email is sent once the worker runs
    if email:
        mailer_paused.resume()
        [sent] = await mailbox.wait_for(await address_of(company.ann))
        assert "Carla Contact" in sent.text
        await outbox_empty_for(company, "ann")


async def test_defaults_tell_members_of_an_unassigned_message_on_the_desktop_only(company, mailer_paused):
    # when: a contact writes a new conversation, with everyone on the defaults
    message = await company.inbound("Is anyone there?")

    # then: the channel's members (ann, and the admin who installed it) have a desktop
    # notification of it, and no email is queued
    for client in (company.ann, company.admin):
        [edge] = (await notifications(client))["edges"]
        assert edge["node"]["kind"] == "NEW_MESSAGE_UNASSIGNED"
        assert edge["node"]["message"] == {"id": message["id"], "body": "Is anyone there?"}
        assert edge["node"]["actor"] is None and edge["node"]["readAt"] is None
    assert await queued_kinds(company, "ann") == [] and await queued_kinds(company, "admin") == []


# -- who is notified ----------------------------------------------------------------------


async def test_admin_who_is_not_a_member_is_not_told_of_new_messages(company):
    # given: an admin who is not a member of the channel, with every toggle on
    boss = await add_user(company, "boss", is_admin=True)
    await boss.data(UPDATE, {"i": {"desktop": {f: True for f in FIELD.values()}}})

    # when: messages arrive, unassigned and then assigned to ann
    first = await company.inbound("hello")
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])
    await company.inbound("still there?")

    # then: neither the admin nor bob (no access) hears of them, while ann does
    assert await kinds(boss) == []
    assert await kinds(company.bob) == []
    assert await kinds(company.ann) == ["NEW_MESSAGE_ASSIGNED_TO_ME", "CONVERSATION_ASSIGNED_TO_ME",
                                       "NEW_MESSAGE_UNASSIGNED"]


async def test_assignee_is_told_of_their_conversation_even_as_an_admin_who_is_not_a_member(company):
    # given: an admin who is not a member of the channel is assigned a conversation by another admin
    boss = await add_user(company, "boss", is_admin=True)
    first = await company.inbound("hello")
    await assign(company.admin, first["conversation"]["id"], company.ids["boss"])

    # when: the contact writes again
    await company.inbound("hello again")

    # then: the assignee hears of both, and the members hear it is someone else's
    assert await kinds(boss) == ["NEW_MESSAGE_ASSIGNED_TO_ME", "CONVERSATION_ASSIGNED_TO_ME"]
    await only(company.ann, "NEW_MESSAGE_ASSIGNED_TO_OTHERS", desktop=True)
    await company.inbound("and again")
    assert await kinds(company.ann) == ["NEW_MESSAGE_ASSIGNED_TO_OTHERS", "NEW_MESSAGE_UNASSIGNED"]


async def test_assigning_to_oneself_notifies_nobody(company, mailer_paused):
    # given: a conversation, and ann's notifications of it read
    first = await company.inbound("hello")
    await company.ann.data(MARK, {"ids": None})

    # when: ann assigns it to herself
    await assign(company.ann, first["conversation"]["id"], company.ids["ann"])

    # then: nothing new for anyone, and no email
    assert (await notifications(company.ann, unread_only=True))["edges"] == []
    assert await kinds(company.admin) == ["NEW_MESSAGE_UNASSIGNED"]
    assert await queued_kinds(company, "ann") == []


async def test_assignment_by_someone_else_tells_the_assignee_who_did_it(company):
    # given: a conversation with a message
    first = await company.inbound("I would like a quote")

    # when: the admin assigns it to ann
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # then: ann is told, with the actor, the conversation and its latest message
    node = (await notifications(company.ann))["edges"][0]["node"]
    assert node["kind"] == "CONVERSATION_ASSIGNED_TO_ME"
    assert node["actor"] == {"id": company.ids["admin"]}
    assert node["conversation"] == {"id": first["conversation"]["id"]}
    assert node["message"] == {"id": first["id"], "body": "I would like a quote"}


async def test_assigning_again_to_the_current_assignee_tells_nobody_again(company):
    # given: ann was assigned a conversation by the admin
    first = await company.inbound("hello")
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # when: the admin assigns it to her again
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # then: one assignment notification only
    assert await kinds(company.ann) == ["CONVERSATION_ASSIGNED_TO_ME", "NEW_MESSAGE_UNASSIGNED"]


async def test_own_outbound_message_notifies_nobody(company, fakes):
    # given: a channel with a callback, and a conversation on it assigned to ann
    data = await company.admin.data(INSTALL, {"i": {"kind": "CUSTOM", "name": "Replies",
                                                    "custom": {"callbackUrl": fakes.callback_url(unique("p"))}}})
    channel = data["installChannel"]["channel"]["id"]
    await company.admin.data(SHARE, {"c": channel, "u": [company.ids["ann"]]})
    partner = Client(company.admin.base_url, data["installChannel"]["channelToken"], company.admin.http)
    first = await company.inbound("hello", partner=partner)
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])
    for client in (company.ann, company.admin):
        await client.data(UPDATE, {"i": {"desktop": {f: True for f in FIELD.values()}}})
    before = {"ann": await kinds(company.ann), "admin": await kinds(company.admin)}

    # when: ann and the admin reply
    await company.ann.data(SEND, {"c": first["conversation"]["id"], "b": "On it"})
    await company.admin.data(SEND, {"c": first["conversation"]["id"], "b": "Me too"})

    # then: nobody is notified of a reply
    assert {"ann": await kinds(company.ann), "admin": await kinds(company.admin)} == before


async def test_user_unshared_from_the_channel_is_no_longer_told_and_no_longer_sees_the_conversation(company):
    # given: ann was told of a message, then lost access to the channel
    await company.inbound("hello")
    await company.admin.data(UNSHARE, {"c": company.channel_id, "u": [company.ids["ann"]]})

    # when: the contact writes again
    await company.inbound("hello again")

    # then: no new notification, and the old one no longer shows the conversation nor its message
    [edge] = (await notifications(company.ann))["edges"]
    assert edge["node"]["kind"] == "NEW_MESSAGE_UNASSIGNED"
    assert edge["node"]["conversation"] is None and edge["node"]["message"] is None


async def test_deleting_a_conversation_erases_its_notifications(company):
    # given: notifications of a conversation
    first = await company.inbound("hello")

    # when: the installer deletes the conversation
    await company.admin.data(DELETE, {"c": first["conversation"]["id"]})

    # then: they are gone with its messages
    assert await kinds(company.ann) == []


# -- list and read state ------------------------------------------------------------------


async def test_notifications_are_newest_first_with_cursors_stable_while_new_ones_arrive(company):
    # given: three notifications
    bodies = ["one", "two", "three"]
    for n, body in enumerate(bodies):
        await company.inbound(body, contact=f"c{n}")

    # when: ann reads a page of two, a new one arrives, and she reads the next page
    page = await notifications(company.ann, first=2)
    await company.inbound("four", contact="c9")
    rest = await notifications(company.ann, first=2, after=page["pageInfo"]["endCursor"])

    # then: newest first, no notification skipped or repeated
    assert [e["node"]["message"]["body"] for e in page["edges"]] == ["three", "two"]
    assert page["pageInfo"]["hasNextPage"] is True and page["pageInfo"]["hasPreviousPage"] is False
    assert [e["node"]["message"]["body"] for e in rest["edges"]] == ["one"]
    assert rest["pageInfo"]["hasNextPage"] is False and rest["pageInfo"]["hasPreviousPage"] is True
    assert rest["edges"][0]["cursor"] == rest["pageInfo"]["endCursor"]


async def test_marking_some_read_sets_read_at_and_unread_only_leaves_them_out(company):
    # given: two notifications
    await company.inbound("one", contact="c1")
    await company.inbound("two", contact="c2")
    newest, oldest = [edge["node"] for edge in (await notifications(company.ann))["edges"]]

    # when: ann marks the newest read, twice
    changed = (await company.ann.data(MARK, {"ids": [newest["id"]]}))["markNotificationsRead"]
    again = (await company.ann.data(MARK, {"ids": [newest["id"]]}))["markNotificationsRead"]

    # then: one changed, then none; it has a readAt; unreadOnly lists the other one only
    assert (changed, again) == (1, 0)
    listed = {edge["node"]["id"]: edge["node"]["readAt"] for edge in (await notifications(company.ann))["edges"]}
    assert listed[newest["id"]] is not None and listed[oldest["id"]] is None
    unread = (await notifications(company.ann, unread_only=True))["edges"]
    assert [edge["node"]["id"] for edge in unread] == [oldest["id"]]


async def test_marking_with_null_ids_marks_all_of_the_viewers_own_read(company):
    # given: notifications for ann and for the admin
    for n in range(3):
        await company.inbound("hi", contact=f"c{n}")

    # when: ann marks all read
    changed = (await company.ann.data(MARK, {"ids": None}))["markNotificationsRead"]

    # then: her three changed; the admin's stay unread
    assert changed == 3
    assert (await notifications(company.ann, unread_only=True))["edges"] == []
    assert len((await notifications(company.admin, unread_only=True))["edges"]) == 3


async def test_marking_someone_elses_notification_is_not_found_and_changes_nothing(company, other_company):
    # given: a notification of ann's, one of the admin's, and one in another company
    await company.inbound("hello")
    await other_company.inbound("hello")
    [mine] = (await notifications(company.ann))["edges"]
    [admins] = (await notifications(company.admin))["edges"]
    [foreign] = (await notifications(other_company.ann))["edges"]

    # when: ann marks her own with a colleague's or a foreign one
    codes = [await company.ann.error_code(MARK, {"ids": [mine["node"]["id"], other["node"]["id"]]})
             for other in (admins, foreign)]

    # then: NOT_FOUND, and all three stay unread
    assert codes == ["NOT_FOUND", "NOT_FOUND"]
    for client in (company.ann, company.admin, other_company.ann):
        assert len((await notifications(client, unread_only=True))["edges"]) == 1


async def test_malformed_notification_id_cursor_or_page_size_is_bad_input(company):
    assert await company.ann.error_code(MARK, {"ids": ["not-an-id"]}) == "BAD_USER_INPUT"
    assert await company.ann.error_code(NOTIFICATIONS, {"a": "nope"}) == "BAD_USER_INPUT"
    assert await company.ann.error_code(NOTIFICATIONS, {"f": -1}) == "BAD_USER_INPUT"


async def test_node_shows_a_notification_to_its_user_only(company):
    # given: a notification of ann's
    await company.inbound("hello")
    [edge] = (await notifications(company.ann))["edges"]

    # then: ann reads it by id; the admin (whose company it is) reads null
    assert (await company.ann.data(NODE, {"id": edge["node"]["id"]}))["node"] == {
        "id": edge["node"]["id"], "kind": "NEW_MESSAGE_UNASSIGNED"}
    assert (await company.admin.data(NODE, {"id": edge["node"]["id"]}))["node"] is None


# -- notificationReceived -----------------------------------------------------------------


async def test_notification_received_reaches_every_socket_of_its_user_and_nobody_else(
        company, other_company, subscribers):
    # given: ann on two sockets, the admin (a member), an admin who is not a member, and a
    # user of another company, each subscribed
    boss = await add_user(company, "boss", is_admin=True)
    ann_tab, ann_phone = await subscribers(company.ann.token), await subscribers(company.ann.token)
    admin, outsider = await subscribers(company.admin.token), await subscribers(boss.token)
    stranger = await subscribers(other_company.ann.token)
    for sub in (ann_tab, ann_phone, admin, outsider):
        await sub.subscribe(RECEIVED)
    await stranger.subscribe(RECEIVED)
    await subscriptions_live(company, 4)
    await subscriptions_live(other_company, 1)

    # when: a contact writes
    message = await company.inbound("Knock knock")

    # then: both of ann's sockets get her notification; the admin gets his own; the others nothing
    on_tab, on_phone = [(await sub.next_data())["notificationReceived"] for sub in (ann_tab, ann_phone)]
    assert on_tab == on_phone
    assert on_tab["kind"] == "NEW_MESSAGE_UNASSIGNED" and on_tab["message"]["id"] == message["id"]
    assert on_tab == (await notifications(company.ann))["edges"][0]["node"]
    for_admin = (await admin.next_data())["notificationReceived"]
    assert for_admin["id"] != on_tab["id"] and for_admin["kind"] == "NEW_MESSAGE_UNASSIGNED"
    assert await outsider.nothing_within() and await stranger.nothing_within(0.05)


async def test_desktop_toggle_off_pushes_nothing(company, subscribers):
    # given: ann subscribed, with the desktop toggle of unassigned messages off
    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", desktop=False)
    sub = await subscribers(company.ann.token)
    await sub.subscribe(RECEIVED)
    await subscriptions_live(company, 1)

    # when: a contact writes a new conversation, then the admin assigns it to ann
    first = await company.inbound("hello")
    await only(company.ann, "CONVERSATION_ASSIGNED_TO_ME", desktop=True)
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # then: only the assignment arrives
    assert (await sub.next_data())["notificationReceived"]["kind"] == "CONVERSATION_ASSIGNED_TO_ME"
    assert await sub.nothing_within()


# -- email --------------------------------------------------------------------------------


async def test_assignment_email_says_who_assigned_names_the_contact_quotes_and_links(company, mailbox, server):
    # given: a conversation whose contact wrote two lines
    first = await company.inbound("I need 40 chairs\nby Friday", name="Carla Contact")
    conversation = first["conversation"]["id"]

    # when: the admin assigns it to ann (her email toggle is on by default)
    await assign(company.admin, conversation, company.ids["ann"])

    # then: one email, plain text and HTML, saying it, from the configured sender
    [email] = await mailbox.wait_for(await address_of(company.ann))
    url = f"http://inbox.test/inbox/conversations/{conversation}"
    assert email.subject == "Ada Admin assigned you the conversation with Carla Contact"
    assert email.mail_from in server.settings.email_from
    assert "Ada Admin assigned you the conversation with Carla Contact on Partner app." in email.text
    assert "> I need 40 chairs\n> by Friday" in email.text
    assert url in email.text
    assert "<blockquote>I need 40 chairs<br>\nby Friday</blockquote>" in email.html
    assert f'<a href="{url}">' in email.html


async def test_email_html_escapes_the_message(company, mailbox):
    # given: ann wants an email for unassigned messages
    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", email=True)

    # when: a contact writes markup
    await company.inbound('<img src=x onerror="alert(1)"> & more', name="<b>Eve</b>")

    # then: it is quoted as text in the HTML part, and as is in the plain one
    [email] = await mailbox.wait_for(await address_of(company.ann))
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; more" in email.html
    assert "<img" not in email.html and "<b>Eve" not in email.html
    assert '> <img src=x onerror="alert(1)"> & more' in email.text
    assert email.subject == "New message from <b>Eve</b>"


async def test_burst_of_new_messages_becomes_one_email(company, mailbox, mailer_paused):
    # given: ann wants an email for messages of her conversations
    await only(company.ann, "NEW_MESSAGE_ASSIGNED_TO_ME", email=True)
    first = await company.inbound("hello", contact="burst", name="Carla Contact")
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # when: the contact writes three more messages before the email goes out
    for body in ("one", "two", "three"):
        await company.inbound(body, contact="burst", name="Carla Contact")
    mailer_paused.resume()

    # then: one email quoting all three
    [email] = await mailbox.wait_for(await address_of(company.ann))
    assert email.subject == "3 new messages from Carla Contact"
    assert "Carla Contact sent 3 new messages in a conversation assigned to you on Partner app." in email.text
    assert [line for line in email.text.splitlines() if line.startswith("> ")] == ["> one", "> two", "> three"]
    await outbox_empty_for(company, "ann")
    assert len(mailbox.to(await address_of(company.ann))) == 1


async def test_message_after_the_email_went_out_starts_a_new_email(company, mailbox):
    # given: ann was emailed about a new conversation
    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", email=True)
    address = await address_of(company.ann)
    await company.inbound("first", contact="again")
    await mailbox.wait_for(address)

    # when: the contact writes again
    await company.inbound("second", contact="again")

    # then: a second email, quoting only the new message
    first_email, second_email = await mailbox.wait_for(address, 2)
    assert "> first" in first_email.text and "> second" not in first_email.text
    assert "> second" in second_email.text and "> first" not in second_email.text


@pytest.fixture
def minute_long_bursts(server):
    """The session server's email worker opens burst windows of 60 s instead of 0.3 s."""
    mailer = server.server.config.app.app.state.mailer
    mailer.collapse = timedelta(seconds=60)
    yield mailer
    mailer.collapse = timedelta(seconds=server.settings.email_collapse_seconds)


async def test_first_new_message_email_goes_out_at_once_and_a_burst_joins_one_follow_up(
        company, mailbox, minute_long_bursts):
    # given: ann wants an email for unassigned messages, and bursts last a minute
    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", email=True)
    address = await address_of(company.ann)

    # when: a contact writes
    await company.inbound("first", contact="bursty")

    # then: the email goes out at once, not at the end of the minute
    [first] = await mailbox.wait_for(address)
    assert "> first" in first.text

    # when: the contact writes twice more within the minute
    await company.inbound("second", contact="bursty")
    await company.inbound("third", contact="bursty")

    # then: no email each; one follow-up waits for the window's end, quoting both
    [row] = await models.NotificationEmail.filter(user_id=user_pk(company, "ann"))
    assert [quoted["body"] for quoted in row.facts["messages"]] == ["second", "third"]
    assert row.next_attempt_at > datetime.now(timezone.utc) + timedelta(seconds=30)
    assert len(mailbox.to(address)) == 1
    # and it goes out when the window is over
    await models.NotificationEmail.filter(id=row.id).update(next_attempt_at=datetime.now(timezone.utc))
    minute_long_bursts.wake()
    first_again, follow_up = await mailbox.wait_for(address, 2)
    assert follow_up.subject == "2 new messages from Contact bursty"
    assert "> second" in follow_up.text and "> third" in follow_up.text and "> first" not in follow_up.text


async def test_assignment_email_is_not_held_by_a_burst(company, mailbox, minute_long_bursts):
    # given: ann has had a new-message email about a conversation a moment ago, and wants
    # assignment emails too
    emails_on = {field: kind in ("NEW_MESSAGE_UNASSIGNED", "CONVERSATION_ASSIGNED_TO_ME") for kind, field in FIELD.items()}
    await company.ann.data(UPDATE, {"i": {"desktop": {field: False for field in FIELD.values()}, "email": emails_on}})
    message = await company.inbound("hello", contact="assigned-soon")
    address = await address_of(company.ann)
    await mailbox.wait_for(address)

    # when: she is assigned that conversation
    await assign(company.admin, message["conversation"]["id"], company.ids["ann"])

    # then: the assignment email goes out at once all the same
    emails = await mailbox.wait_for(address, 2)
    assert "assigned you" in emails[1].subject


async def test_bursts_in_two_conversations_are_two_emails(company, mailbox, mailer_paused):
    # given: ann wants an email for unassigned messages
    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", email=True)

    # when: two contacts write twice each
    for body in ("a1", "a2"):
        await company.inbound(body, contact="a", name="Alice")
    for body in ("b1", "b2"):
        await company.inbound(body, contact="b", name="Bruno")
    mailer_paused.resume()

    # then: one email per conversation
    emails = await mailbox.wait_for(await address_of(company.ann), 2)
    assert sorted(email.subject for email in emails) == ["2 new messages from Alice", "2 new messages from Bruno"]


async def test_email_queued_while_the_smtp_server_is_down_is_delivered_once_it_is_back(company, mailbox):
    # given: the SMTP server is down
    mailbox.stop()
    try:
        first = await company.inbound("hello")

        # when: ann is assigned a conversation, and the worker has tried to send the email
        await assign(company.admin, first["conversation"]["id"], company.ids["ann"])
        await eventually(lambda: models.NotificationEmail.filter(user_id=user_pk(company, "ann")).first(),
                         lambda row: row is not None and row.attempts >= 1 and row.last_error)
    finally:
        # and: the SMTP server comes back on the same port
        mailbox.start()

    # then: the email arrives, once, and leaves the outbox
    address = await address_of(company.ann)
    await mailbox.wait_for(address)
    await outbox_empty_for(company, "ann")
    assert len(mailbox.to(address)) == 1


async def test_fresh_worker_sends_an_email_left_queued_by_a_stopped_process_once(
        company, mailbox, mailer_paused, fresh_mailers):
    # given: an email whose process stopped after leasing it (the lease has run out)
    first = await company.inbound("hello")
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])
    [row] = await models.NotificationEmail.filter(user_id=user_pk(company, "ann"))
    await models.NotificationEmail.filter(id=row.id).update(
        leased_until=datetime.now(timezone.utc) - timedelta(seconds=1))

    # when: a new process's worker works the outbox, twice
    worker = fresh_mailers[0]
    claimed = await worker.claim()
    for email_id in claimed:
        await worker.attempt(email_id)
    again = await worker.claim()

    # then: sent once, off the outbox, never claimed again
    assert row.id in claimed and row.id not in again
    address = await address_of(company.ann)
    await mailbox.wait_for(address)
    assert len(mailbox.to(address)) == 1
    assert not await models.NotificationEmail.filter(id=row.id).exists()


async def test_two_workers_racing_send_each_email_once(company, mailbox, mailer_paused, fresh_mailers):
    # given: four queued emails (ann assigned four conversations), no worker running
    for n in range(4):
        first = await company.inbound("hello", contact=f"race{n}")
        await assign(company.admin, first["conversation"]["id"], company.ids["ann"])
    queued = set(await models.NotificationEmail.filter(user_id=user_pk(company, "ann")).values_list("id", flat=True))
    assert len(queued) == 4

    # when: two workers claim at the same instant, then send what each got
    claims = await asyncio.gather(*(worker.claim() for worker in fresh_mailers))
    await asyncio.gather(*(worker.attempt(email_id) for worker, claimed in zip(fresh_mailers, claims)
                           for email_id in claimed))

    # then: no email was claimed by both, and each went out once
    assert not set(claims[0]) & set(claims[1])
    assert queued <= set(claims[0]) | set(claims[1])
    address = await address_of(company.ann)
    await mailbox.wait_for(address, 4)
    assert len(mailbox.to(address)) == 4
    assert not await models.NotificationEmail.filter(id__in=list(queued)).exists()


async def test_email_refused_for_good_by_the_smtp_server_is_not_retried(company, mailbox):
    # given: a member whose address the SMTP server refuses (550)
    carol = await add_user(company, "carol", email=f"refused-{unique('carol')}@example.com")
    await company.admin.data(SHARE, {"c": company.channel_id, "u": [company.ids["carol"]]})
    first = await company.inbound("hello")

    # when: she is assigned the conversation
    await assign(company.admin, first["conversation"]["id"], company.ids["carol"])

    # then: the email is kept as failed after one attempt, and nothing was delivered
    row = await eventually(lambda: models.NotificationEmail.filter(user_id=user_pk(company, "carol")).first(),
                           lambda row: row is not None and row.failed_at is not None)
    assert row.attempts == 1 and row.last_error.startswith("550")
    assert mailbox.to(await address_of(carol)) == []


async def test_without_smtp_configured_emails_stay_queued_and_the_server_says_so_once(
        company, mailer_paused, caplog):
    # given: an email queued
    first = await company.inbound("hello")
    await assign(company.admin, first["conversation"]["id"], company.ids["ann"])

    # when: a server starts with no SMTP server configured
    with caplog.at_level(logging.WARNING, logger="server.mail"):
        mailer = await start_mailer(make_settings(smtp_url=""))

    # then: no worker runs, it said so once, and the email stays queued
    assert mailer is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.mail"]
    assert len(warnings) == 1 and "INBOX_SMTP_URL is not set" in warnings[0]
    assert await queued_kinds(company, "ann") == ["CONVERSATION_ASSIGNED_TO_ME"]


def test_smtp_url_forms():
    assert parse_smtp_url("smtp://127.0.0.1:1025") == parse_smtp_url("smtp://127.0.0.1:1025/")
    plain = parse_smtp_url("smtp://mail.example.com")
    assert (plain.hostname, plain.port, plain.use_tls, plain.username) == ("mail.example.com", 25, False, None)
    secure = parse_smtp_url("smtps://inbox%40example.com:p%3Ass@mail.example.com")
    assert (secure.port, secure.use_tls, secure.username, secure.password) == (
        465, True, "inbox@example.com", "p:ss")
    with pytest.raises(ValueError):
        parse_smtp_url("http://mail.example.com")

