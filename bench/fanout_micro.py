"""In-process micro-benchmark of the subscription fan-out (subscriptions/fanout.py):
N subscriptions of one document, one event, executed by graphql-core through our
per-event executor and encoded as the websocket frame, per subscriber ("before": each
subscriber its own root object, as the generators yielded before the fan-out, so each
executes and encodes) or shared ("after": one root per event, one execution and one
encoding per group). No database, no sockets: the server CPU that the fan-out changes.

    .venv/bin/python bench/fanout_micro.py [--subscribers 1000] [--events 50]
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from graphql import parse  # noqa: E402
from graphql.execution import Executor, map_source_to_response_event  # noqa: E402
from strawberry.http.base import BaseView  # noqa: E402

from schema import schema, types  # noqa: E402
from schema.context import Context  # noqa: E402
from server.app import InboxGraphQL  # noqa: E402
from subscriptions import fanout  # noqa: E402
from subscriptions.events import ConversationChanged  # noqa: E402
from subscriptions.fanout import shared_root  # noqa: E402

DOCUMENT = "subscription($c: ID) { conversationChanged(conversationId: $c) { id kind conversationId occurredAt } }"


class Source:
    """A subscription's event source: the roots its generator would yield."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.queue.get()


def event_payload(n: int) -> dict:
    return ConversationChanged(company_id=1, channel_id=1, conversation_id=1, audience=(1,), event_id=n,
                               kind="ASSIGNED", actor_id=None, assignee_id=None, message_id=None,
                               occurred_at="2026-01-01T00:00:00+00:00").to_payload()


async def run(subscribers: int, events: int, shared: bool) -> float:
    document = parse(DOCUMENT)  # one parsed document, as strawberry's ParserCache gives
    view = object.__new__(InboxGraphQL)
    encode = view.encode_json if shared else (lambda message: BaseView.encode_json(view, message))
    subs = []
    for _ in range(subscribers):
        executor = Executor.build(schema._schema, document, context_value=Context(None, None, None),
                                  raw_variable_values={"c": "Q29udmVyc2F0aW9uOjE="})
        source = Source()
        subs.append((source, map_source_to_response_event(executor, source)))
    total = 0.0
    for n in range(events):
        payload = event_payload(n)
        event = ConversationChanged(**{k: payload[k] for k in payload if k != "type"})
        start = time.perf_counter()
        for source, stream in subs:
            if shared:
                root = shared_root(payload, ("ConversationEvent",), lambda: types.ConversationEvent.of_broadcast(event))
            else:
                root = types.ConversationEvent.of_broadcast(event)
            source.queue.put_nowait(root)
            result = await anext(stream)
            frame = encode({"id": "1", "type": "next", "payload": {"data": result.data}})
            assert '"kind":"ASSIGNED"' in frame
        total += time.perf_counter() - start
    for _, stream in subs:
        await stream.aclose()
    return total / (events * subscribers) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    await run(args.subscribers, 3, False)  # warm up
    await run(args.subscribers, 3, True)
    before = await run(args.subscribers, args.events, False)
    fanout.stats.update(shared=0, reused=0, own=0)
    after = await run(args.subscribers, args.events, True)
    print(f"{args.subscribers} subscribers x {args.events} events, one document")
    print(f"  before (execute + encode per subscriber): {before:7.1f} µs per delivery")
    print(f"  after  (one execution + encoding per group): {after:7.1f} µs per delivery  ({before / after:.1f}x)")
    print(f"  executions: {fanout.stats}")


if __name__ == "__main__":
    asyncio.run(main())
