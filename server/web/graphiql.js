// GraphiQL signed in from its first view: the token comes from the URL's fragment
// (`/graphql#token=usr_…`, what `inbox demo` prints; a fragment never reaches a server or
// its logs) or from an earlier visit, and goes on every request: HTTP (Authorization
// header) and the websocket of subscriptions (connectionParams.authorization). So the
// schema's introspection succeeds at once: Docs and autocomplete work without a click.
"use strict";

const TOKEN_KEY = "inbox-token"; // shared with the web inbox at /

const fragment = new URLSearchParams(location.hash.slice(1)); // token=…&query=… (optional)

function tokenFromPage() {
  const token = fragment.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  }
  return token || localStorage.getItem(TOKEN_KEY);
}

const EXAMPLE = `# Signed in. Docs: top left.
# Autocomplete: Ctrl-Space.
# Run: the play button, then pick
# an operation. Subscriptions run
# here too (graphql-transport-ws).
query Inbox {
  me { name isAdmin available }
  inboxCounts { unassigned assignedToMe assignedToOthers closed unread }
  inbox(section: UNASSIGNED, first: 5) {
    edges { node { id contact { name } lastMessage { body } unreadCount } }
  }
}

subscription Live {
  conversationChanged { kind conversationId actor { name } assignee { name } }
}
`;

function start() {
  const token = tokenFromPage();
  const signIn = document.getElementById("sign-in");
  if (!token) {
    signIn.hidden = false;
    signIn.addEventListener("submit", (event) => {
      event.preventDefault();
      localStorage.setItem(TOKEN_KEY, signIn.elements.token.value.trim());
      location.reload();
    });
  }
  const url = location.origin + location.pathname;
  const authorization = token ? `Bearer ${token}` : undefined;
  const fetcher = GraphiQL.createFetcher({
    url,
    headers: authorization ? { Authorization: authorization } : {},
    subscriptionUrl: url.replace(/^http/, "ws"),
    wsConnectionParams: authorization ? { authorization } : {},
  });
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: EXAMPLE,
    query: fragment.get("query") || undefined,
    defaultEditorToolsVisibility: false,
    isHeadersEditorEnabled: true,
  }));
}

start();
