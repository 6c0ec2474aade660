"""Replay equals fetch (Zulip's verify_action), for every action of SPEC §2: a client
that fetched its inbox, then applied the `conversationChanged` and `messageAdded`
events it received over a real websocket, holds exactly what a fresh fetch returns;
also when its socket dropped before the action and it resumed each stream with the
last cursor it saw (`after`)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import pytest

from conftest import DEADLINE, Client, Company, Subscriber, unique

SECTIONS = ("UNASSIGNED", "ASSIGNED_TO_ME", "ASSIGNED_TO_OTHERS", "CLOSED")

CONVERSATION_CHANGED = """subscription($after: String) {
  conversationChanged(after: $after) { cursor kind conversationId actor { id } assignee { id } message { id } } }"""
MESSAGE_ADDED = """subscription($after: String) {
  messageAdded(after: $after) { cursor id direction conversation { id } } }"""

INBOX_STATE = """
query($section: InboxSection!) {
  inbox(section: $section, first: 40) {
    edges { node {
      id status section unreadCount assignee { id }
      messages(first: 100) { edges { node { id } } }
      events { kind }
    } }
  }
}"""

ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
UNASSIGN = "mutation($c: ID!) { unassignConversation(conversationId: $c) { id } }"
CLOSE = "mutation($c: ID!) { closeConversation(conversationId: $c) { id } }"
REOPEN = "mutation($c: ID!) { reopenConversation(conversationId: $c) { id } }"
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
MARK_READ = "mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }"

# How long to listen, once the state matches, for events that should not come.
QUIET = 0.2
PROBES = 5
PROBE_WAIT = DEADLINE / PROBES


# -- the client's model of its inbox, and its pure reducer ----------------------------------

def section_for(status: str | None, assignee: str | None, viewer_id: str) -> str | None:
    if status is None:
        return None  # only messages seen so far: not in the inbox until CREATED / RESTORED
    if status == "CLOSED":
        return "CLOSED"
    if assignee is None:
        return "UNASSIGNED"
    return "ASSIGNED_TO_ME" if assignee == viewer_id else "ASSIGNED_TO_OTHERS"


def conversation_state(status=None, assignee=None, messages=(), events=(), unread=0, *, viewer_id: str) -> dict:
    return {"status": status, "assignee": assignee, "messages": tuple(messages), "events": tuple(events),
            "unread": unread, "section": section_for(status, assignee, viewer_id)}


def reduce(state: dict, frame: tuple[str, dict], viewer_id: str) -> dict:
    """The inbox after one subscription event. `messageAdded` and `conversationChanged` are
    separate streams, so either may come first for one action: a message may reach a
    conversation the client learns of with the CREATED / RESTORED that follows."""
    stream, data = frame
    state = dict(state)
    if stream == "messageAdded":
        message = data["messageAdded"]
        conversation_id = message["conversation"]["id"]
        current = state.get(conversation_id) or conversation_state(viewer_id=viewer_id)
        state[conversation_id] = conversation_state(
            current["status"], current["assignee"], current["messages"] + (message["id"],), current["events"],
            current["unread"] + (message["direction"] == "INBOUND"), viewer_id=viewer_id)
        return state

    event = data["conversationChanged"]
    conversation_id, kind = event["conversationId"], event["kind"]
    if kind == "DELETED":
        state.pop(conversation_id, None)
        return state
    current = state.get(conversation_id) or conversation_state(viewer_id=viewer_id)
    status, assignee, events, unread = current["status"], current["assignee"], current["events"], current["unread"]
    if kind in ("CREATED", "RESTORED"):
        status, assignee, events = "OPEN", None, ()
    elif kind == "ASSIGNED":
        assignee = event["assignee"]["id"]
    elif kind == "UNASSIGNED":
        assignee = None
    elif kind == "CLOSED":
        status = "CLOSED"
    elif kind == "REOPENED":
        status = "OPEN"
    elif kind == "READ" and event["actor"]["id"] == viewer_id:
        unread = 0
    state[conversation_id] = conversation_state(status, assignee, current["messages"], events + (kind,), unread,
                                                viewer_id=viewer_id)
    return state


async def fetch(client: Client, viewer_id: str) -> dict:
    """The viewer's whole inbox, as a fresh query tells it."""
    state = {}
    for section in SECTIONS:
        found = await client.data(INBOX_STATE, {"section": section})
        for edge in found["inbox"]["edges"]:
            node = edge["node"]
            assert node["section"] == section, node
            assert node["id"] not in state, f"{node['id']} listed in two sections"
            state[node["id"]] = conversation_state(
                node["status"], node["assignee"]["id"] if node["assignee"] else None,
                [e["node"]["id"] for e in node["messages"]["edges"]], [e["kind"] for e in node["events"]],
                node["unreadCount"], viewer_id=viewer_id)
            assert state[node["id"]]["section"] == section, (node, state[node["id"]])
    return state


@dataclass
class ReplayClient:
    """A viewer's client: its subscriptions, its state and the frames it applied."""

    client: Client
    viewer_id: str
    sub: Subscriber | None
    operations: dict[str, str]
    state: dict = field(default_factory=dict)
    applied: list = field(default_factory=list)

    # The last cursor seen on each stream: where it resumes after a dropped socket.
    cursors: dict = field(default_factory=dict)

    @classmethod
    async def open(cls, subscribers, client: Client, viewer_id: str) -> "ReplayClient":
        replay = cls(client, viewer_id, None, {})
        await replay.subscribe(subscribers)
        return replay

    async def subscribe(self, subscribers) -> None:
        """(Re)subscribes both streams, each after its last cursor when it has one."""
        self.sub = await subscribers(self.client.token)
        self.operations = {
            await self.sub.subscribe(CONVERSATION_CHANGED, {"after": self.cursors.get("conversationChanged")}):
                "conversationChanged",
            await self.sub.subscribe(MESSAGE_ADDED, {"after": self.cursors.get("messageAdded")}): "messageAdded"}

    async def drop(self) -> None:
        await self.sub.close()

    async def next_frame(self, timeout: float) -> tuple[str, dict]:
        message = await self.sub.receive(timeout)
        assert message["type"] == "next" and message.get("id") in self.operations, message
        assert not message["payload"].get("errors"), message
        stream = self.operations[message["id"]]
        self.cursors[stream] = message["payload"]["data"][stream]["cursor"]
        return stream, message["payload"]["data"]

    async def drain_until_probe(self, probe_message_id: str, timeout: float) -> bool:
        """Both subscriptions are live once each has delivered the probe message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {"messageAdded", "conversationChanged"}
        while pending:
            try:
                stream, data = await self.next_frame(deadline - loop.time())
            except asyncio.TimeoutError:
                return False
            if stream == "messageAdded" and data["messageAdded"]["id"] == probe_message_id:
                pending.discard(stream)
            elif (stream == "conversationChanged" and data["conversationChanged"]["kind"] == "MESSAGE_ADDED"
                  and (data["conversationChanged"]["message"] or {}).get("id") == probe_message_id):
                pending.discard(stream)
        return True

    async def catch_up(self, fresh: dict) -> None:
        """Applies events until the state equals `fresh`, within the deadline; then no more may come."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while self.state != fresh and loop.time() < deadline:
            try:
                frame = await self.next_frame(deadline - loop.time())
            except asyncio.TimeoutError:
                break
            self.applied.append(frame)
            self.state = reduce(self.state, frame, self.viewer_id)
        assert self.state == fresh, {"replayed": self.state, "fetched": fresh, "events": self.applied}
        await self.sub.nothing_within(QUIET)


async def prove_live(company: Company, clients: list[ReplayClient]) -> None:
    """Probes until each client's subscriptions have delivered one. Subscribing is
    asynchronous (the protocol acknowledges nothing): a message that commits before the
    server has set a live subscription up is, rightly, not part of it, so a probe sent
    right after the subscribe frames may be missed; the next one is not."""
    for _ in range(PROBES):
        probe = await company.inbound("probe", contact=unique("bystander"))
        if all([await replay.drain_until_probe(probe["id"], PROBE_WAIT) for replay in clients]):
            return
    raise AssertionError(f"no probe of {PROBES} came through every subscription")


# -- the actions -----------------------------------------------------------------------------

@dataclass
class Scenario:
    given: Callable[[Company, dict], Awaitable[None]]
    when: Callable[[Company, dict], Awaitable[None]]


async def nothing(company: Company, ctx: dict) -> None:
    ctx["contact"] = unique("contact")


async def a_conversation(company: Company, ctx: dict) -> None:
    ctx["contact"] = unique("contact")
    ctx["conversation"] = (await company.inbound("first", contact=ctx["contact"]))["conversation"]["id"]
    await company.inbound("second", contact=ctx["contact"])


async def assigned_to_ann(company: Company, ctx: dict) -> None:
    await a_conversation(company, ctx)
    await company.admin.data(ASSIGN, {"c": ctx["conversation"], "u": company.ids["ann"]})


async def assigned_to_admin(company: Company, ctx: dict) -> None:
    await a_conversation(company, ctx)
    await company.ann.data(ASSIGN, {"c": ctx["conversation"], "u": company.ids["admin"]})


async def closed_and_assigned_to_ann(company: Company, ctx: dict) -> None:
    await assigned_to_ann(company, ctx)
    await company.ann.data(CLOSE, {"c": ctx["conversation"]})


async def deleted(company: Company, ctx: dict) -> None:
    await closed_and_assigned_to_ann(company, ctx)
    await company.ann.data(MARK_READ, {"c": ctx["conversation"]})
    await company.admin.data(DELETE, {"c": ctx["conversation"]})


async def contact_writes(company: Company, ctx: dict) -> None:
    await company.inbound("news", contact=ctx["contact"])


def by(user: str, mutation: str, **variables: str) -> Callable[[Company, dict], Awaitable[None]]:
    async def act(company: Company, ctx: dict) -> None:
        values = {name: company.ids[value] if value in company.ids else ctx[value]
                  for name, value in variables.items()}
        await getattr(company, user).data(mutation, values)

    return act


SCENARIOS = {
    "new_inbound_conversation": Scenario(nothing, contact_writes),
    "message_into_existing_conversation": Scenario(a_conversation, contact_writes),
    "assign": Scenario(a_conversation, by("admin", ASSIGN, c="conversation", u="ann")),
    "reassign": Scenario(assigned_to_ann, by("ann", ASSIGN, c="conversation", u="admin")),
    "unassign": Scenario(assigned_to_admin, by("ann", UNASSIGN, c="conversation")),
    "close": Scenario(assigned_to_ann, by("ann", CLOSE, c="conversation")),
    "reopen": Scenario(closed_and_assigned_to_ann, by("admin", REOPEN, c="conversation")),
    "auto_reopen": Scenario(closed_and_assigned_to_ann, contact_writes),
    "delete": Scenario(assigned_to_ann, by("admin", DELETE, c="conversation")),
    "restore": Scenario(deleted, contact_writes),
    "mark_read": Scenario(a_conversation, by("ann", MARK_READ, c="conversation")),
}


async def given(scenario: Scenario, company: Company, subscribers, ctx: dict) -> list[ReplayClient]:
    """The scenario's conversation, and a member's and an admin's clients subscribed to
    everything, live (a bystander conversation's message proves it), their inbox fetched."""
    await scenario.given(company, ctx)
    clients = [await ReplayClient.open(subscribers, company.ann, company.ids["ann"]),
               await ReplayClient.open(subscribers, company.admin, company.ids["admin"])]
    await prove_live(company, clients)
    for replay in clients:
        replay.state = await fetch(replay.client, replay.viewer_id)
    return clients


@pytest.mark.parametrize("action", list(SCENARIOS))
async def test_state_replayed_from_events_equals_a_fresh_fetch(company, subscribers, action):
    scenario = SCENARIOS[action]
    ctx: dict = {}
    # Given the scenario's conversation, and a member and an admin subscribed to everything
    clients = await given(scenario, company, subscribers, ctx)

    # When the action happens
    await scenario.when(company, ctx)

    # Then each client's replayed state is what a fresh fetch returns
    for replay in clients:
        fresh = await fetch(replay.client, replay.viewer_id)
        assert fresh != replay.state, "the action changed nothing the viewer sees"
        await replay.catch_up(fresh)


LINK = """mutation($c: ID!, $t: LinkTargetInput!) { linkConversation(conversationId: $c, target: $t) { id } }"""


async def linked(company: Company, ctx: dict) -> None:
    await a_conversation(company, ctx)
    person = await company.admin.data("mutation($i: PersonInput!) { createPerson(input: $i) { id } }",
                                      {"i": {"name": unique("Person")}})
    ctx["person"] = person["createPerson"]["id"]


async def link_to_person(company: Company, ctx: dict) -> None:
    found = await company.ann.data(LINK, {"c": ctx["conversation"], "t": {"personId": ctx["person"]}})
    ctx["link"] = found["linkConversation"]["id"]


async def linked_to_person(company: Company, ctx: dict) -> None:
    await linked(company, ctx)
    await link_to_person(company, ctx)


RESUMED = {**SCENARIOS,
           "link": Scenario(linked, link_to_person),
           "unlink": Scenario(linked_to_person, by("ann", "mutation($l: ID!) { unlinkConversation(linkId: $l) }",
                                                   l="link"))}


@pytest.mark.parametrize("action", list(RESUMED))
async def test_state_resumed_after_a_dropped_socket_equals_a_fresh_fetch(company, subscribers, action):
    scenario = RESUMED[action]
    ctx: dict = {}
    # Given the scenario's conversation, and a member and an admin who fetched their inbox
    # while subscribed, and saw a cursor on each stream
    clients = await given(scenario, company, subscribers, ctx)
    for replay in clients:
        assert set(replay.cursors) == {"messageAdded", "conversationChanged"}
    # When their sockets drop, the action happens, and they resubscribe with `after`
    for replay in clients:
        await replay.drop()
    await scenario.when(company, ctx)
    for replay in clients:
        await replay.subscribe(subscribers)

    # Then each client's state, replayed from what it missed, is what a fresh fetch returns
    for replay in clients:
        fresh = await fetch(replay.client, replay.viewer_id)
        assert fresh != replay.state, "the action changed nothing the viewer sees"
        await replay.catch_up(fresh)
