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
    assert message["conversation"]["assignee"] is None
