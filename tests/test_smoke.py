"""The server answers GraphQL over HTTP and websockets with the embedded default."""
from __future__ import annotations


async def test_me_answers_for_a_user_token(company):
    data = await company.admin.data("{ me { id name isAdmin available } }")
    assert data["me"]["name"] == "Ada Admin"
    assert data["me"]["isAdmin"] is True


async def test_first_inbound_message_opens_an_unassigned_conversation(company):
    message = await company.inbound("Hi there", contact="alice", name="Alice")
    assert message["direction"] == "INBOUND"
    assert message["status"] == "RECEIVED"
    assert message["senderName"] == "Alice"
    assert message["conversation"]["status"] == "OPEN"
    # (the assignee is for users to read: a partner's token may not, tests/test_partner_tokens.py)
    seen = await company.admin.data("query($c: ID!) { conversation(id: $c) { assignee { id } } }",
                                    {"c": message["conversation"]["id"]})
    assert seen["conversation"]["assignee"] is None


async def test_reply_on_a_custom_channel_is_posted_to_the_partner_callback(company, fakes):
    data = await company.admin.data(
        "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }",
        {"i": {"kind": "CUSTOM", "name": "Callback app", "custom": {"callbackUrl": fakes.callback_url("smoke")}}})
    from conftest import Client

    partner = Client(company.admin.base_url, data["installChannel"]["channelToken"], company.admin.http)
    inbound = await company.inbound("Need help", contact="zed", partner=partner)
    sent = await company.admin.data(
        'mutation($c: ID!) { sendMessage(conversationId: $c, body: "On it") { id status direction } }',
        {"c": inbound["conversation"]["id"]})
    assert sent["sendMessage"]["status"] == "PENDING"
    [request] = await fakes.wait_for("partner", "smoke")
    assert request.json()["body"] == "On it"
    assert request.json()["recipient"] == {"externalId": "zed"}
