"""Bounds on outbound calls and queues (issue 11, parts 5 and 6): where a CUSTOM
channel's replies may go (public addresses only, at install and at every send), how much
of an answer is read and told, how many replies of one channel are in flight, a partner
that never answers delaying nobody else, and queue rows whose attempt raises.

The session server allows private callbacks (its fake partners listen on 127.0.0.1); the
install-time check runs against a server process of its own with the setting off."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import tempfile

import pytest
from prometheus_client import REGISTRY

import models
from channels.outbound import MAX_APP_MESSAGE, Providers
from inbox import callbacks, sending
from inbox.mailer import Mailer
from schema.ids import global_id, pk_of
from server.mail import SmtpTransport, parse_smtp_url

from cluster import ServerProcess, bootstrap_admins, server_env
from conftest import DEADLINE, Client, eventually, free_port, unique
from fakes import ENDLESS, HANG, Held
from test_notifications import mailer_paused  # noqa: F401
from test_sending import (INSTALL, install_partner, queued_replies, send, server_sender_stopped,  # noqa: F401
                          settled)

CHANNELS = "{ channels { id } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }"
USERS = "{ users { id email } }"
CREATE_PERSON = "mutation($i: PersonInput!) { createPerson(input: $i) { id } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"


def refusals(bound: str) -> float:
    return REGISTRY.get_sample_value("inbox_refusals_total", {"bound": bound}) or 0.0


# -- where replies may go ------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict_server(fakes, mailbox):
    """A server process with INBOX_CALLBACK_ALLOW_PRIVATE off (the default), on a SQLite
    file of its own, and its first admin's token."""
    database_url = f"sqlite://{tempfile.mkdtemp(prefix='inbox-strict-')}/inbox.sqlite3"
    env = server_env(database_url, "memory://", unique("strict"), fakes, mailbox)
    env["INBOX_CALLBACK_ALLOW_PRIVATE"] = "false"
    [token] = await bootstrap_admins(database_url, 1)
    server = await ServerProcess(env, "strict").start()
    yield server, token
    await server.stop()


@pytest.fixture
async def strict_admin(strict_server, http) -> Client:
    server, token = strict_server
    return Client(server.url, token, http)


def custom_channel(callback_url: str) -> dict:
    return {"i": {"kind": "CUSTOM", "name": unique("Partner"), "custom": {"callbackUrl": callback_url}}}


@pytest.mark.parametrize("callback_url", [
    "http://127.0.0.1:8080/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/hook",
    "http://localhost:8000/hook",  # a name resolving to loopback
    "http://224.0.0.1/hook",  # multicast
    "http://0.0.0.0:8000/hook",
    "http://[::ffff:127.0.0.1]/hook",  # loopback in IPv6 form
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "https://user:secret@127.1:443/hook",
])
async def test_callback_url_to_a_private_address_is_refused_at_install(strict_admin, callback_url):
    # given
    before = await strict_admin.data(CHANNELS)

    # when
    body = await strict_admin.execute(INSTALL, custom_channel(callback_url))

    # then: refused, and no channel was installed
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert body["data"] is None
    assert await strict_admin.data(CHANNELS) == before


@pytest.mark.parametrize("callback_url", [
    "https://93.184.215.14/hook",  # a public address
    "https://partner.invalid/hook",  # a name that does not resolve (yet): every send checks it
])
async def test_callback_url_to_a_public_or_unresolved_host_is_installed(strict_admin, callback_url):
    data = await strict_admin.data(INSTALL, custom_channel(callback_url))
    assert data["installChannel"]["channelToken"]


async def test_private_callback_urls_are_allowed_with_the_setting(company, fakes):
    # given: the session server runs with INBOX_CALLBACK_ALLOW_PRIVATE=true; a partner on
    # this machine, called by a name that resolves to loopback
    name = unique("local")
    callback = fakes.callback_url(name).replace("127.0.0.1", "localhost")
    partner = await install_partner(company, fakes, callback_url=callback)

    # when
    sent = await send(company.ann, partner.conversation_id, "To a neighbour")

    # then: delivered at the address the name resolved to, with the name as Host
    await settled(company.ann, sent["id"], "SENT")
    [request] = fakes.seen("partner", name)
    assert request.headers["host"] == callback.split("/")[2]


@contextlib.asynccontextmanager
async def sender_in_place(server, **overrides):
    """A sender working the session server's queue in place of its own (which must be
    stopped: `server_sender_stopped`), as a process with these settings would run it."""
    settings = dataclasses.replace(server.settings, **overrides)
    providers = Providers(settings)
    sender = sending.Sender(providers.deliver, timeout=settings.send_timeout,
                            retry_seconds=settings.send_retry_seconds, backoff_seconds=settings.send_backoff_seconds,
                            per_channel=settings.send_concurrency_per_channel, poll_seconds=0.05)
    sender.start()
    try:
        yield sender
    finally:
        await sender.stop()
        await providers.aclose()


@pytest.fixture
async def strict_sender(server, server_sender_stopped):  # noqa: F811
    """The sender of a process with INBOX_CALLBACK_ALLOW_PRIVATE off: as if the callbackUrl's
    host had resolved to a public address at install and resolves to a private one now."""
    async with sender_in_place(server, callback_allow_private=False) as sender:
        yield sender


async def test_reply_to_a_callback_url_now_private_fails_naming_nothing_internal(company, fakes, strict_sender):
    # given: a channel whose callbackUrl points at 127.0.0.1
    partner = await install_partner(company, fakes)
    refused_before = refusals(callbacks.BOUND)

    # when
    sent = await send(company.ann, partner.conversation_id, "Where does this go?")

    # then: FAILED at once, never called, and the reason names no address, port or host
    failed = await settled(company.ann, sent["id"], "FAILED")
    assert failed["failureReason"] == callbacks.NOT_PUBLIC
    assert fakes.seen("partner", partner.name) == []
    assert refusals(callbacks.BOUND) == refused_before + 1
    assert not await models.Delivery.filter(message_id=pk_of(sent["id"], "Message")).exists()


async def test_redirects_are_not_followed(company, partner_pair, fakes):
    # given: the partner answers with a redirect to another endpoint
    partner, elsewhere = partner_pair
    fakes.script(partner.name, (307, {}, {"location": fakes.callback_url(elsewhere)}))

    # when
    sent = await send(company.ann, partner.conversation_id, "Stay here")

    # then: the redirect is the answer (a refusal); nothing went to where it points
    failed = await settled(company.ann, sent["id"], "FAILED")
    assert failed["failureReason"].startswith("307")
    assert fakes.seen("partner", elsewhere) == []


@pytest.fixture
async def partner_pair(company, fakes):
    return await install_partner(company, fakes), unique("elsewhere")


# -- what is read of an answer and told of a failure ----------------------------------------


async def test_an_endless_answer_is_read_up_to_64_kib(company, fakes):
    # given: the partner takes the reply, then never ends its answer's body
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, ENDLESS)

    # when
    sent = await send(company.ann, partner.conversation_id, "Take it")

    # then: SENT on the status, without waiting for the body's end (nor the send timeout
    # and its retries); the cut-short JSON gives no id
    await settled(company.ann, sent["id"], "SENT")
    assert len(fakes.seen("partner", partner.name)) == 1
    message = await models.Message.get(id=pk_of(sent["id"], "Message"))
    assert message.external_id is None


async def test_failure_reason_keeps_the_status_and_a_bounded_app_message(company, fakes):
    # given: the partner refuses with a long error message
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, (422, {"error": "recipient unknown: " + "x" * 20_000}))

    # when
    sent = await send(company.ann, partner.conversation_id)

    # then
    reason = (await settled(company.ann, sent["id"], "FAILED"))["failureReason"]
    assert reason.startswith("422: recipient unknown: xxx")
    assert len(reason) == len("422: ") + MAX_APP_MESSAGE


async def test_an_answer_over_64_kib_is_not_echoed(company, fakes):
    # given: a refusal whose body is larger than what is read
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, (400, {"error": "y" * 100_000}))

    # when
    sent = await send(company.ann, partner.conversation_id)

    # then: the status, in its own words only
    assert (await settled(company.ann, sent["id"], "FAILED"))["failureReason"] == "400: Bad Request"


async def test_network_failures_read_alike_whatever_the_network_said(company, fakes):
    # given: one callback where nothing listens, one that never answers
    refused = await install_partner(company, fakes, callback_url=f"http://127.0.0.1:{free_port()}/hook")
    silent = await install_partner(company, fakes)
    fakes.script(silent.name, *[HANG] * 10)

    # when
    replies = [await send(company.ann, refused.conversation_id), await send(company.ann, silent.conversation_id)]

    # then: both FAILED after their retries, saying the same, naming nothing of the network
    reasons = [(await settled(company.ann, reply["id"], "FAILED"))["failureReason"] for reply in replies]
    for reason in reasons:
        assert reason.endswith(f": {sending.NO_ANSWER}"), reason
        assert "127.0.0.1" not in reason and "refused" not in reason.lower() and "timed out" not in reason
    fakes.scripts.pop(silent.name, None)


# -- replies in flight ---------------------------------------------------------------------


@pytest.fixture
async def patient_sender(server, server_sender_stopped):  # noqa: F811
    """A sender that waits long for an answer: a partner that is slow to answer stays in
    flight for as long as the test holds it."""
    async with sender_in_place(server, send_timeout=4 * DEADLINE) as sender:
        yield sender


@pytest.fixture
async def release():
    """What held answers wait for; set when the test ends, however it ends, so that the
    fake server's handlers finish."""
    event = asyncio.Event()
    yield event
    event.set()


async def test_at_most_four_replies_of_a_channel_are_in_flight(company, fakes, patient_sender, release, server):
    # given: a partner that holds every answer until told
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, *[Held(release, 200, {}) for _ in range(10)])
    bound = server.settings.send_concurrency_per_channel
    assert bound == 4

    # when: ten replies are queued at once
    delivery_ids = await queued_replies(company, partner, [f"Reply {n}" for n in range(10)])
    patient_sender.wake()
    await fakes.wait_for("partner", partner.name, bound)
    release.set()

    # then: all go out, never more than four at once
    await eventually(lambda: models.Delivery.filter(id__in=delivery_ids).count(), lambda left: left == 0)
    assert len(fakes.seen("partner", partner.name)) == 10
    assert fakes.most_in_flight[partner.name] == bound


async def test_a_partner_that_never_answers_delays_no_other_companys_replies(
        company, other_company, fakes, patient_sender, release, server):
    # given: company A's partner endpoint never answers; A has more replies queued than
    # its channel may have in flight
    stuck = await install_partner(company, fakes)
    fakes.script(stuck.name, *[Held(release, 200, {}) for _ in range(6)])
    stuck_ids = await queued_replies(company, stuck, [f"Stuck {n}" for n in range(6)])
    patient_sender.wake()
    await fakes.wait_for("partner", stuck.name, server.settings.send_concurrency_per_channel)

    # when: another company replies
    brisk = await install_partner(other_company, fakes)
    sent = await send(other_company.ann, brisk.conversation_id, "Straight through")

    # then: it goes out while A's calls still hang, and only four of A's were made
    await settled(other_company.ann, sent["id"], "SENT")
    assert [r.json()["body"] for r in fakes.seen("partner", brisk.name)] == ["Straight through"]
    assert not release.is_set()
    assert len(fakes.seen("partner", stuck.name)) == server.settings.send_concurrency_per_channel
    assert await models.Delivery.filter(id__in=stuck_ids).count() == 6
    release.set()  # and once A's partner answers, the rest of A's replies go out
    await eventually(lambda: models.Delivery.filter(id__in=stuck_ids).count(), lambda left: left == 0)


# -- queue rows whose attempt raises ---------------------------------------------------------


async def test_a_send_whose_attempt_raises_fails_after_the_retry_window_and_is_logged(
        company, fakes, server, server_sender_stopped, caplog):  # noqa: F811
    # given: a sender whose every attempt raises (a bug), retrying for half a second
    async def broken(out: sending.Outgoing) -> str | None:
        raise RuntimeError("a bug in the sender")

    sender = sending.Sender(broken, timeout=1.0, retry_seconds=0.5, backoff_seconds=0.05, per_channel=4,
                            poll_seconds=0.05)
    partner = await install_partner(company, fakes)
    [delivery_id] = await queued_replies(company, partner, ["Never sent"])
    message_pk = (await models.Delivery.get(id=delivery_id)).message_id

    # when
    with caplog.at_level(logging.ERROR, logger="inbox.queue"):
        sender.start()
        try:
            failed = await settled(company.ann, global_id("Message", message_pk), "FAILED")
        finally:
            await sender.stop()

    # then: retried until the window was over, then FAILED naming no more than the kind of
    # failure; every attempt's raise logged with its traceback
    attempts = int(re.fullmatch(r"gave up after (\d+) attempts: internal error \(RuntimeError\)",
                                failed["failureReason"]).group(1))
    logged = [r for r in caplog.records if r.exc_info and r.getMessage().endswith(f"of row {delivery_id} raised")]
    assert len(logged) == attempts
    assert not await models.Delivery.filter(id=delivery_id).exists()


async def test_an_email_whose_composing_raises_fails_after_the_retry_window_and_is_logged(
        company, server, mailer_paused, caplog):
    # given: a queued email whose stored facts its composing cannot read (a quoted
    # message without its time), and an email worker retrying for half a second
    message = await company.inbound("hello")
    await company.admin.data(ASSIGN, {"c": message["conversation"]["id"], "u": company.ids["ann"]})
    row = await models.NotificationEmail.get(user_id=pk_of(company.ids["ann"], "User"))
    await models.NotificationEmail.filter(id=row.id).update(facts={"messages": [{"body": "no time"}]})
    settings = server.settings
    worker = Mailer(SmtpTransport(parse_smtp_url(settings.smtp_url), settings.email_timeout),
                    from_address=settings.email_from, conversation_url=lambda pk: f"http://inbox.test/c/{pk}",
                    timeout=settings.email_timeout, collapse_seconds=0, backoff_seconds=0.05, retry_seconds=0.5,
                    poll_seconds=0.05)

    # when
    with caplog.at_level(logging.ERROR, logger="inbox.queue"):
        worker.start()
        try:
            failed = await eventually(lambda: models.NotificationEmail.get(id=row.id),
                                      lambda found: found.failed_at is not None)
        finally:
            await worker.stop()

    # then: retried until the window was over, then given up; every attempt's raise logged
    assert failed.last_error == f"gave up after {failed.attempts} attempts: internal error (KeyError)"
    logged = [r for r in caplog.records if r.exc_info and r.getMessage().endswith(f"of row {row.id} raised")]
    assert len(logged) == failed.attempts
    assert all(isinstance(record.exc_info[1], KeyError) for record in logged)


async def test_an_email_to_an_address_with_cr_lf_fails_instead_of_being_leased_for_ever(
        company, mailbox, caplog):
    # given: ann's address holds CR LF (stored before addresses were checked)
    eve = f"{unique('eve')}@example.com"
    ann_pk = pk_of(company.ids["ann"], "User")
    await models.User.filter(id=ann_pk).update(email=f"{unique('ann')}@example.com\r\nBcc: {eve}")
    message = await company.inbound("hello")

    # when: an assignment queues an email to her
    with caplog.at_level(logging.WARNING, logger="inbox.mailer"):
        await company.admin.data(ASSIGN, {"c": message["conversation"]["id"], "u": company.ids["ann"]})
        row = await eventually(lambda: models.NotificationEmail.get_or_none(user_id=ann_pk),
                               lambda found: found is not None and found.failed_at is not None)

    # then: FAILED for good, saying why, logged, and nothing sent to anyone
    assert row.attempts == 1
    assert "cannot be composed" in row.last_error
    assert any("failed for good" in r.getMessage() for r in caplog.records)
    assert mailbox.to(eve) == []


# -- email addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("email", [
    "eve@example.com\r\nBcc: mallory@example.com",
    "eve@example.com\nBcc: mallory@example.com",
    "eve@example.com\r",
    "eve@example.com\n",
    "eve@example.com,mallory@example.com",
    "eve@example.com, mallory@example.com",
])
async def test_an_email_address_with_cr_lf_or_a_comma_is_refused(company, email):
    # given
    before = await company.admin.data(USERS)
    refused_before = refusals("email_address")

    # when
    body = await company.admin.execute(CREATE_USER, {"i": {"name": "Eve", "email": email}})

    # then
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert await company.admin.data(USERS) == before
    assert refusals("email_address") == refused_before + 1


async def test_a_persons_email_with_a_comma_is_refused(company):
    body = await company.admin.execute(CREATE_PERSON, {"i": {"name": "Eve", "email": "eve@example.com,x@y.com"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
