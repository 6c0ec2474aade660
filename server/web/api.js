// The two ways a browser talks to the inbox, in one place: GraphQL over HTTP (queries and
// mutations) and over a websocket (subscriptions, graphql-transport-ws through the
// vendored graphql-ws client). Both carry the user's token: the Authorization header on
// HTTP, connectionParams.authorization on the websocket (browsers cannot set headers on
// a websocket). The page may be on another origin if INBOX_ALLOWED_ORIGINS allows it.
import { createClient } from "./vendor/graphql-ws/client.js";

export class Unauthenticated extends Error {}

export class Api {
  constructor(token, base = location.origin) {
    this.token = token;
    this.url = `${base}/graphql`;
    this.listeners = new Set();
    this.state = "connecting";
    this.ws = createClient({
      url: this.url.replace(/^http/, "ws"),
      connectionParams: { authorization: `Bearer ${token}` },
      lazy: false,
      keepAlive: 15_000, // pings show a dead socket in seconds, not at the next write
      retryAttempts: Infinity,
      // 4403: the token was refused; retrying cannot help. Anything else (the server
      // restarting, 1013 for a client that fell behind, a network drop) is retried.
      shouldRetry: (event) => !(event && event.code === 4403),
      on: {
        connected: (_socket, _payload, wasRetry) => this.emit(wasRetry ? "resumed" : "connected"),
        closed: (event) => this.emit(event && event.code === 4403 ? "refused" : "disconnected"),
      },
    });
  }

  /** Calls `listener(state)` now and at every change of the connection's state. */
  on(listener) {
    this.listeners.add(listener);
    listener(this.state);
  }

  emit(state) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /** The data of a query or mutation; throws the first GraphQL error otherwise. */
  async request(query, variables = {}) {
    const response = await fetch(this.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` },
      body: JSON.stringify({ query, variables }),
    });
    if (response.status === 401) throw new Unauthenticated("the token was refused");
    const body = await response.json();
    if (body.errors && body.errors.length) {
      const error = new Error(body.errors[0].message);
      error.code = body.errors[0].extensions && body.errors[0].extensions.code;
      throw error;
    }
    return body.data;
  }

  /**
   * A subscription that resumes by itself. `variables()` is asked again at every
   * (re)subscription, so a stream with a cursor (messageAdded's `after`) restarts right
   * after the last event the page saw: the server replays what was missed, with no gap
   * and no duplicate. The server ends a subscription with `complete` when it may have
   * missed events (its broadcast backend was lost), and a reconnected socket is a new
   * session: both resubscribe. Returns a function that stops it.
   */
  subscribe(query, variables, onData) {
    let current = null; // the running subscription; ended ones only matter while current
    let stopped = false;
    const start = () => {
      if (stopped) return;
      const mine = {};
      current = mine;
      mine.dispose = this.ws.subscribe({ query, variables: variables() }, {
        next: (result) => result.data && onData(result.data),
        error: () => current === mine && setTimeout(start, 1000), // e.g. while the server restarts
        complete: () => current === mine && setTimeout(start, 100), // the server ended it: resume
      });
    };
    const restart = () => {
      const previous = current;
      current = null; // its `complete`, which disposing it causes, must not start another
      if (previous) previous.dispose();
      start();
    };
    // graphql-ws would resend the first `variables` after a reconnect; restart instead,
    // with the cursor as it is now.
    const onState = (state) => state === "resumed" && restart();
    this.listeners.add(onState); // from now on: not the state as it is now
    start();
    return () => {
      stopped = true;
      this.listeners.delete(onState);
      const previous = current;
      current = null;
      if (previous) previous.dispose();
    };
  }

  close() {
    this.ws.dispose();
  }
}
