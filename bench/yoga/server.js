// graphql-yoga baseline for bench/run.py (issue 15): what a mainstream Node GraphQL server
// does with the same clients. graphql-yoga executes, graphql-ws (over the `ws` package)
// speaks graphql-transport-ws, and yoga's own in-memory pub/sub carries the events; no
// database, nothing persisted (the inbox persists every message it delivers).
//
//   POST /graphql        { hello } (the HTTP figure) through yoga
//   ws   /graphql        subscription($c: ID!) { messageAdded(conversationId: $c) { id body cursor } }
//   POST /publish        {"seq": int, "body": str, "conversationId"?: str} -> one pub/sub event
//   GET  /healthz        200
//
//   node bench/yoga/server.js --port 8200
"use strict";

const http = require("node:http");
const { WebSocketServer } = require("ws");
const { createYoga, createSchema, createPubSub } = require("graphql-yoga");
const { useServer } = require("graphql-ws/lib/use/ws");

const pubSub = createPubSub();

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Query { hello: String! }
    type Message { id: ID! body: String! cursor: String! }
    type Subscription { messageAdded(conversationId: ID!): Message! }
  `,
  resolvers: {
    Query: { hello: () => "world" },
    Subscription: {
      messageAdded: {
        subscribe: (_, { conversationId }) => pubSub.subscribe("messageAdded", conversationId),
        resolve: (payload) => payload,
      },
    },
  },
});

const yoga = createYoga({ schema, graphqlEndpoint: "/graphql", graphiql: false, logging: false,
                          landingPage: false, maskedErrors: false });

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

const server = http.createServer(async (request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  } else if (request.url === "/publish" && request.method === "POST") {
    const event = JSON.parse(await readBody(request));
    const seq = event.seq;
    pubSub.publish("messageAdded", event.conversationId || "raw",
                   { id: Buffer.from(`Message:${seq}`).toString("base64"), body: event.body, cursor: String(seq) });
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  } else {
    yoga(request, response);
  }
});

// As yoga's documentation wires graphql-ws: yoga's envelop does parse, validate, execute, subscribe.
const sockets = new WebSocketServer({ server, path: yoga.graphqlEndpoint });
useServer({
  execute: (args) => args.rootValue.execute(args),
  subscribe: (args) => args.rootValue.subscribe(args),
  onSubscribe: async (context, message) => {
    const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
      ...context, req: context.extra.request, socket: context.extra.socket, params: message.payload,
    });
    const args = {
      schema, operationName: message.payload.operationName, document: parse(message.payload.query),
      variableValues: message.payload.variables, contextValue: await contextFactory(), rootValue: { execute, subscribe },
    };
    const errors = validate(args.schema, args.document);
    return errors.length ? errors : args;
  },
}, sockets);

const flag = process.argv.indexOf("--port");
const port = flag >= 0 ? Number(process.argv[flag + 1]) : 8200;
server.listen({ host: "127.0.0.1", port, backlog: 4096 }, () => console.log(`yoga on 127.0.0.1:${port}`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
