// Apollo Client (with PersistedQueryLink) and urql against the real server, configured as
// their documentation says, nothing adapted to this server. Run by tests/test_clients.py,
// which starts the server and passes INBOX_URL, INBOX_TOKEN (a user who is a member of
// the channel) and INBOX_PARTNER_TOKEN (that CUSTOM channel's token).
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { test } from "node:test";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { Client as UrqlClient, fetchExchange, subscriptionExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";

const { INBOX_URL: url, INBOX_TOKEN: token, INBOX_PARTNER_TOKEN: partner } = process.env;
const uri = `${url}/graphql`;
const authorization = `Bearer ${token}`;
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

/** fetch, recording what each request carried. */
function recordingFetch() {
  const sent = [];
  const fetchImpl = async (input, init = {}) => {
    const target = new URL(typeof input === "string" ? input : input.url);
    const body = init.body ? JSON.parse(init.body) : {};
    const extensions = target.searchParams.get("extensions");
    sent.push({ method: init.method || "GET", hasQuery: Boolean(body.query || target.searchParams.get("query")),
                hashed: Boolean(body.extensions?.persistedQuery || extensions) });
    return fetch(input, init);
  };
  return { sent, fetchImpl };
}

async function receive(body) {
  const response = await fetch(uri, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${partner}` },
    body: JSON.stringify({
      query: "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }",
      variables: { i: { externalMessageId: randomUUID(), sender: { externalId: "node", name: "Node Client" }, body } },
    }),
  });
  assert.equal(response.status, 200, await response.text());
}

// A document of its own per run, so that the server has never seen its hash.
const ME = () => gql`query Me${randomUUID().replaceAll("-", "")} { me { id name } }`;

for (const useGETForHashedQueries of [false, true]) {
  test(`Apollo Client with PersistedQueryLink (useGETForHashedQueries: ${useGETForHashedQueries})`, async () => {
    const { sent, fetchImpl } = recordingFetch();
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: new PersistedQueryLink({ sha256, useGETForHashedQueries })
        .concat(new HttpLink({ uri, headers: { authorization }, fetch: fetchImpl })),
    });
    const query = ME();
    const first = await client.query({ query, fetchPolicy: "network-only" });
    assert.equal(first.data.me.name, "Ann Agent");
    // the hash alone, PersistedQueryNotFound, then the hash with the document
    assert.deepEqual(sent.map((r) => [r.method, r.hasQuery, r.hashed]),
                     [[useGETForHashedQueries ? "GET" : "POST", false, true], ["POST", true, true]]);
    const again = await client.query({ query, fetchPolicy: "network-only" });
    assert.equal(again.data.me.name, "Ann Agent");
    assert.deepEqual(sent.slice(2).map((r) => [r.method, r.hasQuery]),
                     [[useGETForHashedQueries ? "GET" : "POST", false]]); // the hash alone now runs
  });
}

test("Apollo Client subscriptions over GraphQLWsLink, the token in connectionParams", async () => {
  const ws = createWsClient({ url: uri.replace(/^http/, "ws"), webSocketImpl: WebSocket,
                              connectionParams: { authorization } });
  const client = new ApolloClient({ cache: new InMemoryCache(), link: new GraphQLWsLink(ws) });
  try {
    const body = `hello apollo ${randomUUID()}`;
    const received = new Promise((resolve, reject) => {
      const subscription = client.subscribe({ query: gql`subscription { messageAdded { body } }` }).subscribe({
        next: ({ data }) => data?.messageAdded.body === body && (subscription.unsubscribe(), resolve()),
        error: reject,
      });
    });
    await new Promise((resolve) => ws.on("connected", resolve));
    await waitUntilLive(() => receive(body), received);
  } finally {
    await ws.dispose();
  }
});

test("urql with persistedExchange and subscriptionExchange", async () => {
  const { sent, fetchImpl } = recordingFetch();
  const ws = createWsClient({ url: uri.replace(/^http/, "ws"), webSocketImpl: WebSocket,
                              connectionParams: { authorization } });
  const client = new UrqlClient({
    url: uri,
    fetch: fetchImpl,
    fetchOptions: { headers: { authorization } },
    exchanges: [
      persistedExchange({ preferGetForPersistedQueries: true }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({ subscribe: (sink) => ({ unsubscribe: ws.subscribe(request, sink) }) }),
      }),
    ],
  });
  try {
    const query = ME();
    const first = await client.query(query, {}, { requestPolicy: "network-only" }).toPromise();
    assert.equal(first.error, undefined);
    assert.equal(first.data.me.name, "Ann Agent");
    const again = await client.query(query, {}, { requestPolicy: "network-only" }).toPromise();
    assert.equal(again.data.me.name, "Ann Agent");
    assert.equal(sent.at(-1).hasQuery, false); // the hash alone ran
    const body = `hello urql ${randomUUID()}`;
    const received = new Promise((resolve, reject) => {
      const { unsubscribe } = client.subscription("subscription { messageAdded { body } }", {}).subscribe((result) => {
        if (result.error) reject(result.error);
        else if (result.data?.messageAdded.body === body) { unsubscribe(); resolve(); }
      });
    });
    await waitUntilLive(() => receive(body), received);
  } finally {
    await ws.dispose();
  }
});

/**
 * A subscription starts a moment after `subscribe` is sent (the protocol has no
 * acknowledgement): push the message (again) until one arrives, for at most 10 s.
 */
async function waitUntilLive(push, received) {
  let done = false;
  received.then(() => { done = true; });
  const deadline = Date.now() + 10_000;
  while (!done && Date.now() < deadline) {
    await push();
    await Promise.race([received, new Promise((resolve) => setTimeout(resolve, 300))]);
  }
  assert.ok(done, "no event within 10 s");
}
