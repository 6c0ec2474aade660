// The reference web inbox: everything a person does in the inbox, on the public API only.
// Integrators: the GraphQL documents are at the top; the rules of the API that a client
// must respect are commented where they are used. The page holds little state: on any
// live event it refetches what the event may have changed (counts, the visible page of
// the list, the open conversation's header) instead of patching a local copy, so it can
// never drift from what the server says. Messages of the open conversation are appended
// as they arrive and deduplicated by id.
import { Api, Unauthenticated } from "./api.js";

const MESSAGE = `fragment M on Message {
  id direction body sentAt status failureReason senderName cursor author { name } conversation { id } }`;
const ME = `{ me { id name isAdmin available } }`;
const COUNTS = `{ inboxCounts { unassigned assignedToMe assignedToOthers closed unread } }`;
const LIST = `query List($section: InboxSection!, $search: String, $after: String) {
  inbox(section: $section, search: $search, first: 25, after: $after) {
    edges { node { id status unreadCount lastMessageAt contact { name } assignee { name }
                   lastMessage { body direction } } }
    pageInfo { hasNextPage endCursor } } }`;
const CONVERSATION = `query Conversation($id: ID!) { conversation(id: $id) {
  id status section unreadCount contact { name } assignee { id name }
  channel { name kind installedBy { id } }
  links { id target { __typename ... on Person { name } ... on Lead { title } ... on Deal { title } } } } }`;
// Chat views page backwards: `last` N, then `before` the oldest cursor shown.
const MESSAGES = `query Messages($id: ID!, $before: String) { conversation(id: $id) {
  messages(last: 20, before: $before) { edges { node { ...M } } pageInfo { hasPreviousPage startCursor } } } }
  ${MESSAGE}`;
const ASSIGNABLE = `query Assignable($id: ID!) { assignableUsers(conversationId: $id) { id name } }`;
const PERSONS = `{ persons(first: 50) { edges { node { id name } } } }`;
const NOTIFICATIONS = `{ notifications(unreadOnly: true, first: 20) { edges { node {
  id kind createdAt actor { name } conversation { id contact { name } } message { body } } } } }`;
const SETTINGS = `{ notificationSettings {
  desktop { newMessageAssignedToMe newMessageAssignedToOthers newMessageUnassigned conversationAssignedToMe }
  email { newMessageAssignedToMe newMessageAssignedToOthers newMessageUnassigned conversationAssignedToMe } } }`;

const ACTIONS = {
  assign: `mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }`,
  unassign: `mutation($c: ID!) { unassignConversation(conversationId: $c) { id } }`,
  close: `mutation($c: ID!) { closeConversation(conversationId: $c) { id } }`,
  reopen: `mutation($c: ID!) { reopenConversation(conversationId: $c) { id } }`,
  delete: `mutation($c: ID!) { deleteConversation(conversationId: $c) }`,
  read: `mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount } }`,
  // clientMessageId makes a retried send (a timeout, a double click) send once.
  send: `mutation($c: ID!, $b: String!, $k: String) {
    sendMessage(conversationId: $c, body: $b, clientMessageId: $k) { ...M } } ${MESSAGE}`,
  link: `mutation($c: ID!, $t: LinkTargetInput!) { linkConversation(conversationId: $c, target: $t) { id } }`,
  unlink: `mutation($l: ID!) { unlinkConversation(linkId: $l) }`,
  availability: `mutation($a: Boolean!) { setAvailability(available: $a) { id available } }`,
  notificationsRead: `mutation { markNotificationsRead }`,
  settings: `mutation($i: NotificationSettingsInput!) { updateNotificationSettings(input: $i) { desktop {
    newMessageAssignedToMe } } }`,
};

const LIVE = {
  // `after`: the newest cursor seen, so that a resumed stream replays exactly what was missed.
  messageAdded: `subscription($after: String) { messageAdded(after: $after) { ...M } } ${MESSAGE}`,
  messageUpdated: `subscription { messageUpdated { id status failureReason conversation { id } } }`,
  conversationChanged: `subscription { conversationChanged { id kind conversationId } }`,
  notificationReceived: `subscription { notificationReceived {
    id kind actor { name } conversation { id contact { name } } message { body } } }`,
};

const TOKEN_KEY = "inbox-token"; // shared with GraphiQL at /graphql
const STATUS_TEXT = { PENDING: "Sending…", SENT: "Sent", DELIVERED: "Delivered", READ: "Read", FAILED: "Failed",
                      RECEIVED: "" };
const TOGGLES = { newMessageAssignedToMe: "New messages assigned to me",
                  newMessageAssignedToOthers: "New messages assigned to others",
                  newMessageUnassigned: "New unassigned messages",
                  conversationAssignedToMe: "A conversation assigned to me" };

const $ = (id) => document.getElementById(id);

/** A DOM element; text always goes in as text, never as HTML. */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const time = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

const state = {
  api: null, me: null, section: "UNASSIGNED", search: "", after: null,
  open: null, // the open conversation, as CONVERSATION returned it
  oldest: null, // cursor of the oldest message shown, for paging back
  shown: new Set(), // ids of the messages shown
  newest: null, // the newest messageAdded cursor seen
  // The latest delivery status messageUpdated gave each message: it may arrive before the
  // sendMessage answer that shows the message (the send is that fast), and wins over it.
  statuses: new Map(),
};

// --- signing in ---------------------------------------------------------------------------

function token() {
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) { // `inbox demo`'s links: keep it, and take it out of the address bar
    localStorage.setItem(TOKEN_KEY, fragment);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return fragment || localStorage.getItem(TOKEN_KEY);
}

function showSignIn(message = "") {
  if (state.api) state.api.close();
  state.api = null;
  $("app").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("token").focus();
}

async function signIn(value) {
  const api = new Api(value);
  try {
    state.me = (await api.request(ME)).me;
  } catch (error) {
    api.close();
    showSignIn(error instanceof Unauthenticated ? "That token was refused." : error.message);
    return;
  }
  localStorage.setItem(TOKEN_KEY, value);
  state.api = api;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("me").textContent = state.me.name;
  $("available").checked = state.me.available;
  api.on(onConnection);
  live();
  await Promise.all([refresh(), loadSettings()]);
}

// --- live ---------------------------------------------------------------------------------

function onConnection(connection) {
  const text = { connecting: "connecting…", connected: "live", resumed: "live", disconnected: "reconnecting…", refused: "signed out" };
  $("live").textContent = text[connection];
  $("live").dataset.state = connection;
  if (connection === "refused") showSignIn("The server refused the token.");
  // Changes made while the socket was down came with no event: fetch them. Messages come
  // back on messageAdded (resumed `after` the newest one seen live); before any was seen
  // live there is no cursor to resume from, so the open conversation is fetched again.
  if (connection === "resumed") {
    refresh();
    if (state.open && !state.newest) catchUp().catch(failed);
  }
}

function live() {
  const api = state.api;
  api.subscribe(LIVE.messageAdded, () => ({ after: state.newest }), ({ messageAdded: message }) => {
    state.newest = message.cursor;
    if (state.open && message.conversation.id === state.open.id) {
      showMessage(message, "end");
      if (message.direction === "INBOUND" && document.visibilityState === "visible") markRead();
    }
    scheduleRefresh();
  });
  api.subscribe(LIVE.messageUpdated, () => ({}), ({ messageUpdated: message }) => {
    state.statuses.set(message.id, message);
    showStatus(message);
  });
  api.subscribe(LIVE.conversationChanged, () => ({}), ({ conversationChanged: event }) => {
    if (state.open && event.conversationId === state.open.id) {
      if (event.kind === "DELETED") closeConversation();
      else reloadHeader();
    }
    scheduleRefresh();
  });
  api.subscribe(LIVE.notificationReceived, () => ({}), ({ notificationReceived: notification }) => {
    desktopNotification(notification);
    loadNotifications();
  });
}

let refreshTimer = null;
function scheduleRefresh() { // a burst of events costs one refetch
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 100);
}

async function refresh() {
  if (!state.api) return;
  try {
    await Promise.all([loadCounts(), loadList(), loadNotifications()]);
  } catch (error) {
    failed(error);
  }
}

function failed(error) {
  if (error instanceof Unauthenticated) showSignIn("The server refused the token.");
  else $("conversation-error").textContent = error.message;
}

// --- sections and the list ----------------------------------------------------------------

async function loadCounts() {
  const counts = (await state.api.request(COUNTS)).inboxCounts;
  const bySection = { UNASSIGNED: counts.unassigned, ASSIGNED_TO_ME: counts.assignedToMe,
                      ASSIGNED_TO_OTHERS: counts.assignedToOthers, CLOSED: counts.closed };
  for (const button of document.querySelectorAll("[data-section]")) {
    button.querySelector(".count").textContent = bySection[button.dataset.section];
  }
  $("unread-total").textContent = counts.unread;
  document.title = counts.unread ? `(${counts.unread}) Inbox` : "Inbox";
}

async function loadList(more = false) {
  const variables = { section: state.section, search: state.search || null, after: more ? state.after : null };
  const page = (await state.api.request(LIST, variables)).inbox;
  const list = $("conversations");
  if (!more) list.replaceChildren();
  for (const { node } of page.edges) list.append(conversationItem(node));
  state.after = page.pageInfo.endCursor;
  $("more-conversations").hidden = !page.pageInfo.hasNextPage;
}

function conversationItem(conversation) {
  const last = conversation.lastMessage;
  const button = el("button", { className: "conversation-item", onclick: () => openConversation(conversation.id) },
    el("span", { className: "name", textContent: conversation.contact.name }),
    conversation.unreadCount ? el("span", { className: "badge", textContent: conversation.unreadCount,
                                            title: `${conversation.unreadCount} unread` }) : null,
    el("span", { className: "snippet", textContent: last ? last.body : "" }),
    el("span", { className: "meta", textContent: [
      conversation.assignee ? `→ ${conversation.assignee.name}` : "",
      conversation.lastMessageAt ? time.format(new Date(conversation.lastMessageAt)) : ""].join(" ") }));
  button.dataset.id = conversation.id;
  if (state.open && state.open.id === conversation.id) button.setAttribute("aria-current", "true");
  return el("li", {}, button);
}

function chooseSection(section) {
  state.section = section;
  for (const button of document.querySelectorAll("[data-section]")) {
    button.setAttribute("aria-pressed", String(button.dataset.section === section));
  }
  loadList().catch(failed);
}

// --- the open conversation ----------------------------------------------------------------

async function openConversation(id) {
  state.open = { id };
  state.oldest = null;
  state.shown = new Set();
  $("messages").replaceChildren();
  $("conversation-error").textContent = "";
  $("contact-name").textContent = $("conversation-status").textContent = "";
  $("assignee").replaceChildren();
  for (const part of document.querySelectorAll(".actions, .links")) part.hidden = true; // until the header loads
  $("conversation").hidden = false;
  document.body.classList.add("reading"); // phones: the conversation takes the screen
  await reloadHeader();
  await loadMessages();
  await markRead();
  $("reply-body").focus();
}

function closeConversation() {
  state.open = null;
  $("conversation").hidden = true;
  document.body.classList.remove("reading");
}

async function reloadHeader() {
  const id = state.open.id;
  const [{ conversation }, { assignableUsers }] = await Promise.all([
    state.api.request(CONVERSATION, { id }), state.api.request(ASSIGNABLE, { id })]);
  if (!conversation) return closeConversation(); // deleted, or no longer shared with us
  if (!state.open || state.open.id !== id) return;
  state.open = conversation;
  $("contact-name").textContent = `${conversation.contact.name} · ${conversation.channel.name}`;
  $("conversation-status").textContent = conversation.status === "CLOSED" ? "Closed"
    : conversation.assignee ? `Assigned to ${conversation.assignee.name}` : "Unassigned";
  // Only users who are available and share the channel may be assigned (assignableUsers).
  const chosen = $("assignee").value; // a live event re-renders the header: keep the person's choice
  $("assignee").replaceChildren(...assignableUsers.map((user) =>
    el("option", { value: user.id, textContent: user.id === state.me.id ? `${user.name} (me)` : user.name })));
  if (assignableUsers.some((user) => user.id === chosen)) $("assignee").value = chosen;
  $("assign").disabled = assignableUsers.length === 0;
  $("assign").textContent = conversation.assignee ? "Reassign" : "Assign";
  $("unassign").hidden = !conversation.assignee;
  $("close").hidden = conversation.status === "CLOSED";
  $("reopen").hidden = conversation.status !== "CLOSED";
  // Only the installer of the channel may delete its conversations.
  $("delete").hidden = conversation.channel.installedBy.id !== state.me.id;
  for (const part of document.querySelectorAll(".actions, .links")) part.hidden = false;
  $("link-count").textContent = `(${conversation.links.length})`;
  $("link-list").replaceChildren(...conversation.links.map((link) => el("li", {},
    `${link.target.__typename}: ${link.target.name || link.target.title} `,
    el("button", { textContent: "Unlink", onclick: () => act("unlink", { l: link.id }) }))));
}

async function loadMessages() {
  const id = state.open.id;
  const page = (await state.api.request(MESSAGES, { id, before: state.oldest })).conversation.messages;
  const list = $("messages");
  const first = list.firstChild;
  for (const { node } of page.edges) showMessage(node, "start", first);
  state.oldest = page.pageInfo.startCursor || state.oldest;
  $("earlier").hidden = !page.pageInfo.hasPreviousPage;
}

async function catchUp() {
  const page = (await state.api.request(MESSAGES, { id: state.open.id, before: null })).conversation.messages;
  for (const { node } of page.edges) showMessage(node, "end");
}

function showMessage(message, where, before = null) {
  if (state.shown.has(message.id)) return showStatus(message); // a reply comes back on messageAdded too
  state.shown.add(message.id);
  const item = el("li", { className: `message ${message.direction.toLowerCase()}` },
    el("span", { className: "who", textContent: message.author ? message.author.name : message.senderName }),
    el("p", { className: "body", textContent: message.body }),
    el("time", { dateTime: message.sentAt, textContent: time.format(new Date(message.sentAt)) }),
    el("span", { className: "delivery" }));
  item.dataset.id = message.id;
  if (where === "end") $("messages").append(item);
  else $("messages").insertBefore(item, before);
  showStatus(message);
  if (where === "end") item.scrollIntoView({ block: "end" });
}

function showStatus(message) {
  const item = document.querySelector(`.message[data-id="${CSS.escape(message.id)}"] .delivery`);
  if (!item) return;
  message = state.statuses.get(message.id) || message;
  item.textContent = STATUS_TEXT[message.status] + (message.failureReason ? `: ${message.failureReason}` : "");
  item.dataset.status = message.status;
}

async function markRead() {
  if (!state.open) return;
  await state.api.request(ACTIONS.read, { c: state.open.id }); // clears the unread badge everywhere, live
}

/** A mutation on the open conversation; the live events that follow update the page. */
async function act(action, variables = {}) {
  $("conversation-error").textContent = "";
  try {
    await state.api.request(ACTIONS[action], { c: state.open.id, ...variables });
    if (action === "delete") closeConversation();
  } catch (error) {
    failed(error); // e.g. FORBIDDEN, or BAD_USER_INPUT for a user who just became unavailable
  }
}

async function reply(event) {
  event.preventDefault();
  const body = $("reply-body").value.trim();
  if (!body) return;
  try {
    const { sendMessage } = await state.api.request(ACTIONS.send, {
      c: state.open.id, b: body, k: crypto.randomUUID() });
    $("reply-body").value = "";
    showMessage(sendMessage, "end"); // PENDING until messageUpdated says SENT, DELIVERED, READ or FAILED
  } catch (error) {
    failed(error);
  }
}

async function link(event) {
  event.preventDefault();
  const form = event.target;
  const kind = form.elements.kind.value;
  const name = form.elements.name.value.trim();
  const target = kind === "existingPerson" ? { personId: form.elements.person.value }
    : kind === "newPerson" ? { newPerson: { name } } : { [kind]: { title: name } };
  await act("link", { t: target });
  form.elements.name.value = "";
  await reloadHeader();
}

async function loadPersons() {
  const persons = (await state.api.request(PERSONS)).persons.edges.map((edge) => edge.node);
  $("link-form").elements.person.replaceChildren(
    ...persons.map((person) => el("option", { value: person.id, textContent: person.name })));
}

// --- notifications ------------------------------------------------------------------------

function describe(notification) {
  const who = notification.conversation ? notification.conversation.contact.name : "a contact";
  return {
    NEW_MESSAGE_ASSIGNED_TO_ME: `New message from ${who}`,
    NEW_MESSAGE_ASSIGNED_TO_OTHERS: `New message from ${who} (assigned to someone else)`,
    NEW_MESSAGE_UNASSIGNED: `New message from ${who} (unassigned)`,
    CONVERSATION_ASSIGNED_TO_ME: `${notification.actor ? notification.actor.name : "Someone"} assigned ${who} to you`,
  }[notification.kind];
}

async function loadNotifications() {
  const edges = (await state.api.request(NOTIFICATIONS)).notifications.edges;
  $("bell-count").hidden = edges.length === 0;
  $("bell-count").textContent = edges.length === 20 ? "20+" : edges.length;
  $("notification-list").replaceChildren(...edges.map(({ node }) => el("li", {},
    el("button", { textContent: describe(node), disabled: !node.conversation,
                   onclick: () => node.conversation && openConversation(node.conversation.id) }))));
}

function desktopNotification(notification) {
  // The server sends notificationReceived only for kinds whose desktop toggle is on.
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const shown = new Notification(describe(notification), {
    body: notification.message ? notification.message.body : "", tag: notification.id });
  shown.onclick = () => { window.focus(); if (notification.conversation) openConversation(notification.conversation.id); };
}

async function loadSettings() {
  const settings = (await state.api.request(SETTINGS)).notificationSettings;
  const fieldset = $("notification-settings");
  fieldset.replaceChildren(el("legend", { textContent: "Notify me" }));
  for (const channel of ["desktop", "email"]) {
    for (const [key, label] of Object.entries(TOGGLES)) {
      const box = el("input", { type: "checkbox", checked: settings[channel][key] });
      box.onchange = () => state.api.request(ACTIONS.settings, { i: { [channel]: { [key]: box.checked } } })
        .catch(failed);
      fieldset.append(el("label", {}, box, ` ${label} (${channel})`));
    }
  }
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value.trim());
  });
  $("sign-out").onclick = () => { localStorage.removeItem(TOKEN_KEY); closeConversation(); showSignIn(); };
  for (const button of document.querySelectorAll("[data-section]")) {
    button.onclick = () => chooseSection(button.dataset.section);
  }
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.search = $("search").value.trim(); loadList().catch(failed); }, 200);
  });
  $("more-conversations").onclick = () => loadList(true).catch(failed);
  $("back").onclick = closeConversation;
  $("earlier").onclick = () => loadMessages().catch(failed);
  $("assign").onclick = () => act("assign", { u: $("assignee").value });
  $("unassign").onclick = () => act("unassign");
  $("close").onclick = () => act("close");
  $("reopen").onclick = () => act("reopen");
  $("delete").onclick = () => confirm("Delete this conversation and its messages?") && act("delete");
  $("reply").addEventListener("submit", reply);
  $("reply-body").addEventListener("keydown", (event) => { // Ctrl/Cmd-Enter sends
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("reply").requestSubmit();
  });
  $("link-form").addEventListener("submit", link);
  document.querySelector(".links").addEventListener("toggle", (event) => event.target.open && loadPersons());
  $("available").onchange = async () => {
    try {
      await state.api.request(ACTIONS.availability, { a: $("available").checked });
    } catch (error) {
      $("available").checked = !$("available").checked;
      failed(error);
    }
  };
  $("bell").onclick = () => {
    const open = $("notifications").hidden;
    $("notifications").hidden = !open;
    $("bell").setAttribute("aria-expanded", String(open));
  };
  $("notifications-read").onclick = () => state.api.request(ACTIONS.notificationsRead).then(loadNotifications, failed);
  $("desktop-permission").onclick = () => "Notification" in window && Notification.requestPermission();
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("notifications").hidden) $("bell").click();
  });
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && markRead());
}

wire();
const saved = token();
if (saved) signIn(saved); else showSignIn();
