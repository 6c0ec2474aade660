"""The web inbox and GraphiQL in a real browser (issue 13): Debian's Chromium driven by
Playwright against the real server, with every request off 127.0.0.1 refused (so nothing
comes from a CDN). Screenshots of each section are kept in tests/artifacts/.

Without Chromium (a developer's machine) these tests skip; in CI (CI=true) they must run."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import shutil

import pytest
import uvicorn

from conftest import DEADLINE, company_pk, eventually, free_port, second_app, subscriptions_live
from test_messenger import install_page, text_message

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
WAIT_MS = DEADLINE * 1000


@pytest.fixture(scope="session")
async def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the browser tests: Chromium is missing (.ci/run installs Debian's `chromium`)")
        pytest.skip("Chromium is not installed (apt-get install chromium): the browser tests run in CI")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        # Debian's Chromium: Playwright's own browser download cannot work here.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


async def offline_only(route):
    """Anything not served by the test servers (a CDN...) fails, as it would offline."""
    url = route.request.url
    if url.startswith(("http://127.0.0.1", "ws://127.0.0.1")):
        await route.continue_()
    else:
        await route.abort()


@pytest.fixture
async def open_page(browser):
    """Opens a page in a browser context of its own (one per user); closes them after."""
    contexts = []

    async def open_one(url: str, viewport: dict | None = None, init_script: str | None = None):
        context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        contexts.append(context)
        if init_script:
            await context.add_init_script(init_script)
        await context.route("**/*", offline_only)
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        page.errors = errors
        await page.goto(url)
        return page

    yield open_one
    for context in contexts:
        await context.close()


PAGE_SUBSCRIPTIONS = 4  # messageAdded, messageUpdated, conversationChanged, notificationReceived


async def live_subscriptions(company) -> int:
    from subscriptions import direct
    from inbox.events import company_topic
    from subscriptions.publish import current_hub

    return direct.live_subscriptions(current_hub(), company_topic(await company_pk(company)))


async def signed_in(open_page, server, company, token: str, viewport: dict | None = None,
                    init_script: str | None = None):
    """The web inbox, opened from a link such as `inbox demo` prints, once its subscriptions
    are live on the server (they start a moment after the socket is up, and only from then
    on is no event missed)."""
    before = await live_subscriptions(company)
    page = await open_page(f"{server.url}/#token={token}", viewport, init_script)
    await page.wait_for_selector("#live[data-state=connected]", timeout=WAIT_MS)
    await subscriptions_live(company, before + PAGE_SUBSCRIPTIONS)
    return page


@pytest.fixture
def eventually_js():
    """A page's JavaScript value once it is non-empty (within the deadline)."""
    async def wait(page, expression: str):
        handle = await page.wait_for_function(f"({expression}).length > 0 && {expression}", timeout=WAIT_MS)
        return await handle.json_value()
    return wait


def item(page, contact: str):
    return page.locator(".conversation-item", has_text=contact)


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_two_users_see_each_others_assign_and_close_live(open_page, server, company):
    await company.inbound("Can I get a quote?", contact="assign-live", name="Lena Live")
    ada = await signed_in(open_page, server, company, company.admin.token)
    ann = await signed_in(open_page, server, company, company.ann.token)
    await item(ada, "Lena Live").wait_for(timeout=WAIT_MS)
    # Ann takes the conversation
    await item(ann, "Lena Live").click()
    await ann.select_option("#assignee", company.ids["ann"])
    await ann.click("#assign")
    # Ada's page follows without a reload: gone from Unassigned, counted under Others
    await item(ada, "Lena Live").wait_for(state="detached", timeout=WAIT_MS)
    await ada.locator("[data-section=ASSIGNED_TO_OTHERS] .count", has_text="1").wait_for(timeout=WAIT_MS)
    await ada.click("[data-section=ASSIGNED_TO_OTHERS]")
    await item(ada, "Lena Live").click()
    await ada.locator("#conversation-status", has_text="Assigned to Ann Agent").wait_for(timeout=WAIT_MS)
    # Ada closes it; Ann sees it closed in the conversation she has open
    await ada.click("#close")
    await ann.locator("#conversation-status", has_text="Closed").wait_for(timeout=WAIT_MS)
    await ann.locator("#reopen").wait_for(timeout=WAIT_MS)
    await ann.locator("[data-section=CLOSED] .count", has_text="1").wait_for(timeout=WAIT_MS)
    assert ada.errors == ann.errors == []


async def test_a_message_pushed_through_a_webhook_appears_without_a_reload(open_page, server, company, http):
    messenger = await install_page(company, http, server)
    await messenger.deliver(text_message("psid-web-1", messenger.page_id, "First message"))
    ada = await signed_in(open_page, server, company, company.admin.token)
    await item(ada, "First message").click()
    await ada.locator(".message", has_text="First message").wait_for(timeout=WAIT_MS)
    await messenger.deliver(text_message("psid-web-1", messenger.page_id, "Pushed while you look"))
    await ada.locator(".message", has_text="Pushed while you look").wait_for(timeout=WAIT_MS)
    await item(ada, "Pushed while you look").wait_for(timeout=WAIT_MS)  # the list follows too
    assert ada.errors == []


@pytest.mark.parametrize("seen_live", [True, False], ids=["resumed-after-a-cursor", "before-any-live-message"])
async def test_a_dropped_socket_resumes_and_misses_nothing(open_page, server, company, seen_live):
    await company.inbound("Before the drop", contact="drop", name="Dora Drop")
    ada = await signed_in(open_page, server, company, company.admin.token)
    await item(ada, "Dora Drop").click()
    await ada.locator(".message", has_text="Before the drop").wait_for(timeout=WAIT_MS)
    if seen_live:  # the page holds a cursor: messageAdded resumes after it
        await company.inbound("Live before the drop", contact="drop", name="Dora Drop")
        await ada.locator(".message", has_text="Live before the drop").wait_for(timeout=WAIT_MS)
    # When the network drops the socket (the server's side is reset, no close frame)
    dropped = 0
    for connection in list(server.server.server_state.connections):
        if "websockets" in type(connection).__module__:
            connection.transport.abort()
            dropped += 1
    assert dropped
    await ada.locator("#live[data-state=disconnected]").wait_for(timeout=WAIT_MS)
    # and a message arrives meanwhile
    await company.inbound("While the socket was down", contact="drop", name="Dora Drop")
    # Then the page reconnects and shows it, and what comes next
    await ada.locator("#live[data-state=resumed]").wait_for(timeout=WAIT_MS)
    await ada.locator(".message", has_text="While the socket was down").wait_for(timeout=WAIT_MS)
    await subscriptions_live(company, PAGE_SUBSCRIPTIONS)  # resubscribed: live from now on
    await company.inbound("After the resume", contact="drop", name="Dora Drop")
    await ada.locator(".message", has_text="After the resume").wait_for(timeout=WAIT_MS)
    assert await ada.locator(".message").count() == (4 if seen_live else 3)  # no duplicate
    assert ada.errors == []


async def test_the_unread_badge_clears_when_read(open_page, server, company):
    await company.inbound("Unread one", contact="unread", name="Uma Unread")
    await company.inbound("Unread two", contact="unread", name="Uma Unread")
    ann = await signed_in(open_page, server, company, company.ann.token)
    badge = item(ann, "Uma Unread").locator(".badge")
    await badge.filter(has_text="2").wait_for(timeout=WAIT_MS)
    await ann.locator("#unread-total", has_text="1").wait_for(timeout=WAIT_MS)
    await item(ann, "Uma Unread").click()
    await badge.wait_for(state="detached", timeout=WAIT_MS)
    await ann.locator("#unread-total", has_text="0").wait_for(timeout=WAIT_MS)
    # another user's badge is theirs: Ada still has it unread
    ada = await signed_in(open_page, server, company, company.admin.token)
    await item(ada, "Uma Unread").locator(".badge", has_text="2").wait_for(timeout=WAIT_MS)


async def test_screenshots_of_each_section_on_a_desk_and_a_phone(open_page, server, company):
    conversations = []
    for index, name in enumerate(["Sam Section", "Tess Section", "Uri Section", "Vic Section"]):
        message = await company.inbound(f"Hello number {index}", contact=f"section-{index}", name=name)
        conversations.append(message["conversation"]["id"])
    assign = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
    await company.admin.data(assign, {"c": conversations[1], "u": company.ids["admin"]})
    await company.admin.data(assign, {"c": conversations[2], "u": company.ids["ann"]})
    await company.admin.data("mutation($c: ID!) { closeConversation(conversationId: $c) { id } }",
                             {"c": conversations[3]})
    ada = await signed_in(open_page, server, company, company.admin.token)
    expected = {"UNASSIGNED": "Sam Section", "ASSIGNED_TO_ME": "Tess Section",
                "ASSIGNED_TO_OTHERS": "Uri Section", "CLOSED": "Vic Section"}
    for section, contact in expected.items():
        await ada.click(f"[data-section={section}]")
        await item(ada, contact).wait_for(timeout=WAIT_MS)
        await shot(ada, f"section-{section.lower()}")
    await item(ada, "Vic Section").click()
    await ada.locator("#contact-name", has_text="Vic Section").wait_for(timeout=WAIT_MS)
    await ada.locator(".message", has_text="Hello number 3").wait_for(timeout=WAIT_MS)
    assert await ada.locator("#reopen").is_visible()
    await shot(ada, "conversation")
    phone = await signed_in(open_page, server, company, company.ann.token,
                            viewport={"width": 390, "height": 844})
    await item(phone, "Sam Section").click()
    await phone.locator(".message", has_text="Hello number 0").wait_for(timeout=WAIT_MS)
    assert await phone.locator(".list-pane").is_hidden()  # the conversation takes the small screen
    await shot(phone, "phone-conversation")
    await phone.click("#back")
    await item(phone, "Sam Section").wait_for(timeout=WAIT_MS)
    assert await phone.locator("#conversation").is_hidden()
    await shot(phone, "phone-list")
    assert ada.errors == phone.errors == []


async def test_a_reply_shows_its_delivery_status(open_page, server, company, http, fakes):
    messenger = await install_page(company, http, server)
    await messenger.deliver(text_message("psid-reply", messenger.page_id, "Reply to me"))
    fakes.script("psid-reply", (200, {"recipient_id": "psid-reply", "message_id": "mid.reply-web"}))
    ada = await signed_in(open_page, server, company, company.admin.token)
    await item(ada, "Reply to me").click()
    await ada.fill("#reply-body", "On it!")
    await ada.keyboard.press("Control+Enter")
    reply = ada.locator(".message.outbound", has_text="On it!")
    await reply.locator(".delivery[data-status=SENT]").wait_for(timeout=WAIT_MS)


# The browser's Notification API, as a user who allowed it sees it (headless Chromium
# shows none): what the page shows is recorded.
RECORD_NOTIFICATIONS = """
window.shownNotifications = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.shownNotifications.push({ title, body: options && options.body }); }
};
"""


async def test_desktop_notifications_and_the_bell_with_its_settings(open_page, server, company, eventually_js):
    message = await company.inbound("Please call me", contact="notify", name="Nia Notify")
    ann = await signed_in(open_page, server, company, company.ann.token, init_script=RECORD_NOTIFICATIONS)
    await company.admin.data("mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) "
                             "{ id } }", {"c": message["conversation"]["id"], "u": company.ids["ann"]})
    shown = await eventually_js(ann, "window.shownNotifications")
    assert shown[0]["title"] == "Ada Admin assigned Nia Notify to you"
    await ann.locator("#bell-count").wait_for(timeout=WAIT_MS)
    await ann.click("#bell")
    await ann.locator("#notification-list button", has_text="assigned Nia Notify to you").wait_for(timeout=WAIT_MS)
    # the settings: turn off desktop notifications of assignments
    await ann.get_by_label("A conversation assigned to me (desktop)").uncheck()
    settings = "{ notificationSettings { desktop { conversationAssignedToMe } email { conversationAssignedToMe } } }"

    async def saved():
        return (await company.ann.data(settings))["notificationSettings"]

    assert await eventually(saved, lambda s: not s["desktop"]["conversationAssignedToMe"]) == {
        "desktop": {"conversationAssignedToMe": False}, "email": {"conversationAssignedToMe": True}}
    await ann.click("#notifications-read")
    await ann.locator("#bell-count").wait_for(state="hidden", timeout=WAIT_MS)


async def test_the_availability_toggle_sets_the_users_availability(open_page, server, company):
    bob = await signed_in(open_page, server, company, company.bob.token)
    await bob.get_by_label("Available").uncheck()

    async def available():
        return (await company.bob.data("{ me { available } }"))["me"]["available"]

    assert await eventually(available, lambda value: value is False) is False
    await bob.get_by_label("Available").check()
    assert await eventually(available, lambda value: value is True) is True


async def test_only_the_installer_is_offered_delete(open_page, server, company):
    await company.inbound("Delete me", contact="delete", name="Dee Delete")
    ann = await signed_in(open_page, server, company, company.ann.token)
    await item(ann, "Dee Delete").click()
    await ann.locator("#contact-name", has_text="Dee Delete").wait_for(timeout=WAIT_MS)
    assert await ann.locator("#delete").is_hidden()  # a member, not the channel's installer
    ada = await signed_in(open_page, server, company, company.admin.token)
    await item(ada, "Dee Delete").click()
    await ada.locator("#contact-name", has_text="Dee Delete").wait_for(timeout=WAIT_MS)
    ada.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await ada.click("#delete")
    await item(ada, "Dee Delete").wait_for(state="detached", timeout=WAIT_MS)
    await item(ann, "Dee Delete").wait_for(state="detached", timeout=WAIT_MS)  # live for Ann too
    assert await ann.locator("#conversation").is_hidden()


async def test_search_paging_back_and_linking_to_a_new_person(open_page, server, company):
    for index in range(25):
        await company.inbound(f"Line {index:02d}", contact="long", name="Lou Long")
    await company.inbound("Something else", contact="other", name="Otto Other")
    ada = await signed_in(open_page, server, company, company.admin.token)
    await ada.get_by_label("Search").fill("Lou")
    await item(ada, "Otto Other").wait_for(state="detached", timeout=WAIT_MS)
    await item(ada, "Lou Long").click()
    await ada.locator(".message", has_text="Line 24").wait_for(timeout=WAIT_MS)
    assert await ada.locator(".message").count() == 20  # the newest page
    await ada.click("#earlier")
    await ada.locator(".message", has_text="Line 00").wait_for(timeout=WAIT_MS)
    assert await ada.locator(".message").count() == 25
    assert await ada.locator(".message .body").first.text_content() == "Line 00"  # oldest first
    assert await ada.locator("#earlier").is_hidden()
    await ada.click(".links summary")
    await ada.get_by_label("Link to").select_option("newPerson")
    await ada.get_by_label("Name or title").fill("Lou Long")
    await ada.click("#link-form button")
    await ada.locator("#link-list", has_text="Person: Lou Long").wait_for(timeout=WAIT_MS)


async def test_graphiql_opens_signed_in_offline_with_docs_and_runs_subscriptions(open_page, server, company):
    subscription = "subscription { messageAdded { body } }"
    page = await open_page(f"{server.url}/graphql#token={company.ann.token}&query={subscription}")
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    await page.locator(".graphiql-doc-explorer-root-type", has_text="subscription").wait_for(timeout=WAIT_MS)
    await shot(page, "graphiql")
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    await subscriptions_live(company)
    await company.inbound("Seen in GraphiQL", contact="graphiql", name="Gia Graphiql")
    await page.locator(".result-window", has_text="Seen in GraphiQL").wait_for(timeout=WAIT_MS)
    assert "usr_" not in page.url  # the token left the address bar
    assert page.errors == []


# --- a page on another origin ---------------------------------------------------------------------

APP_PAGE = """<!doctype html><script type="module">
const [token, api] = [new URLSearchParams(location.hash.slice(1)).get("token"), "%s"];
try {
  const response = await fetch(api + "/graphql", {method: "POST", body: JSON.stringify({query: "{ me { name } }"}),
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token}});
  document.title = (await response.json()).data.me.name;
} catch (error) { document.title = "refused"; }
</script>"""


@contextlib.asynccontextmanager
async def frontend_dev_server(port: int, api_url: str):
    """A frontend's own dev server, on its own origin (on loopback, as a developer's is)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request):
        return HTMLResponse(APP_PAGE % api_url)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/", page)]), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(DEADLINE):
            while not server.started:
                await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE)


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "not-allowed"])
async def test_a_page_on_another_origin_calls_the_api_only_when_allowed(browser, server, company, allowed):
    port = free_port()
    origin = f"http://localhost:{port}"  # the API is at 127.0.0.1: another origin
    settings = dataclasses.replace(server.settings, allowed_origins=(origin,) if allowed else ("http://localhost:1",))
    async with second_app(settings) as api, frontend_dev_server(port, api):
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(f"{origin}/#token={company.ann.token}")
            await page.wait_for_function("document.title !== ''", timeout=WAIT_MS)
            assert await page.title() == ("Ann Agent" if allowed else "refused")
        finally:
            await context.close()


async def test_inbox_demo_prints_links_that_open_graphiql_and_the_inbox_signed_in(open_page, tmp_path):
    from test_cli import serving

    env = {"INBOX_DATABASE_URL": f"sqlite://{tmp_path}/demo.sqlite3", "INBOX_BROADCAST_URL": "memory://"}
    with serving(env, command="demo") as (_, process):
        lines = []
        while not any("arrives every 20 seconds" in line for line in lines):
            lines.append(await asyncio.to_thread(process.stdout.readline))
            assert lines[-1], "".join(lines)
        graphiql = [line.split()[-1] for line in lines if line.split()[:1] == ["GraphiQL"]]
        inbox = [line.split()[-1] for line in lines if line.split()[:2] == ["web", "inbox"]]
        assert len(graphiql) == len(inbox) == 3  # one per user
        page = await open_page(graphiql[1])
        await page.get_by_role("button", name="Show Documentation Explorer").click()
        await page.locator(".graphiql-doc-explorer-root-type", has_text="mutation").wait_for(timeout=WAIT_MS)
        await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
        await page.get_by_role("menuitem", name="Inbox").click()  # the example's query, not its subscription
        await page.locator(".result-window", has_text="Ann Agent").wait_for(timeout=WAIT_MS)
        page = await open_page(inbox[0])
        await page.locator("#me", has_text="Ada Admin").wait_for(timeout=WAIT_MS)
        await page.locator(".conversation-item").first.wait_for(timeout=WAIT_MS)
