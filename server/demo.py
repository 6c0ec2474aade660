"""`inbox demo`: a demo company with users, a channel of each kind and ~30
conversations across every section, served at once, with a message now and then
so that the inbox is visibly live."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

from inbox import accounts, channels, conversations, messages
from inbox.tokens import USER_PREFIX
from models import ChannelKind

from .config import Settings

CONTACTS = ["Alice Martin", "Bruno Costa", "Chen Wei", "Dana Levi", "Elif Kaya", "Farid Haddad", "Grace Ho",
            "Hugo Petit", "Ines Moreau", "Jonas Berg", "Kofi Mensah", "Lea Novak", "Mateo Ruiz", "Nora Aziz",
            "Omar Said", "Priya Nair", "Quinn Doyle", "Rosa Silva", "Sven Olsen", "Tara Singh", "Uma Patel",
            "Victor Hugo", "Wen Li", "Ximena Cruz", "Yusuf Demir", "Zoe Adams", "Aiko Sato", "Bea Lund",
            "Carl Jung", "Dara Oak"]
LINES = ["Hi, is the premium plan still on offer?", "Can I get a quote for 20 seats?",
         "Thanks, that answers my question.", "When can someone call me back?", "Is there a discount for NGOs?",
         "I'd like to move my demo to Friday.", "Does it integrate with our calendar?", "Sounds good!"]


async def seed(settings: Settings) -> dict:
    """Creates the demo company; returns what to print."""
    company, admin, admin_token = await accounts.bootstrap("Demo Co", "Ada Admin", "ada@demo.example")
    ann, ann_token = await accounts.create_user(admin, "Ann Agent", "ann@demo.example", False)
    bob, bob_token = await accounts.create_user(admin, "Bob Agent", "bob@demo.example", False)
    messenger = (await channels.install(admin, ChannelKind.MESSENGER, "Demo Messenger page", {
        "pageId": "1000001", "appSecret": "demo-secret", "verifyToken": "demo-verify",
        "pageAccessToken": "demo-page-token"})).channel
    whatsapp = (await channels.install(admin, ChannelKind.WHATSAPP, "Demo WhatsApp", {
        "accountSid": "AC00000000000000000000000000000000", "authToken": "demo-auth",
        "fromNumber": "+14155238886"}, whatsapp_new_installs=True)).channel
    custom = await channels.install(admin, ChannelKind.CUSTOM, "Demo partner app", {})
    for channel in (messenger, whatsapp, custom.channel):
        await channels.share(admin, channel.id, [ann.id, bob.id])
    rng = random.Random(7)
    kinds = itertools.cycle([messenger, whatsapp, custom.channel])
    for index, name in enumerate(CONTACTS):
        channel = next(kinds)
        external = f"+1415555{index:04d}" if channel.kind is ChannelKind.WHATSAPP else f"demo-{index}"
        for turn in range(rng.randint(1, 3)):
            message, _ = await messages.receive(channel, messages.Inbound(
                external_message_id=f"demo-{index}-{turn}", sender_external_id=external, sender_name=name,
                body=rng.choice(LINES)))
        conversation_id = message.conversation_id
        role = index % 6
        if role == 1:
            await conversations.assign(admin, conversation_id, ann.id)
        elif role == 2:
            await conversations.assign(admin, conversation_id, admin.id)
        elif role == 3:
            await conversations.assign(admin, conversation_id, bob.id)
        elif role == 4:
            await conversations.assign(admin, conversation_id, admin.id)
            await conversations.close(admin, conversation_id)
        elif role == 5:
            await conversations.close(admin, conversation_id)
    return {"channel": custom.channel, "tokens": {"Ada Admin (admin)": admin_token, "Ann Agent": ann_token,
                                                  "Bob Agent": bob_token, "partner app (CUSTOM channel)":
                                                  custom.channel_token}}


async def trickle(channel, stop: asyncio.Event) -> None:
    """A new inbound message every 20 seconds, so the inbox moves."""
    rng = random.Random()
    for turn in itertools.count():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 20)
            return
        index = rng.randrange(len(CONTACTS))
        await messages.receive(channel, messages.Inbound(
            external_message_id=f"live-{turn}-{rng.random()}", sender_external_id=f"demo-live-{index}",
            sender_name=CONTACTS[index], body=rng.choice(LINES)))


def signed_in_urls(base: str, token: str) -> dict[str, str]:
    """Pages that sign in with the token in the URL's fragment, which browsers never send
    to a server (server/web/)."""
    return {"web inbox": f"{base}/#token={token}", "GraphiQL": f"{base}/graphql#token={token}"}


def run_demo(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from .app import create_app
    from .serving import uvicorn_options

    stop = asyncio.Event()
    tasks = []

    async def on_start() -> None:
        seeded = await seed(settings)
        base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        print(f"\nInbox demo: open the web inbox at {base}/ (GraphiQL at {base}/graphql)")
        print("API clients send the header  Authorization: Bearer <token>  with one of these tokens;")
        print("each user's links open the web inbox and GraphiQL already signed in:")
        for who, token in seeded["tokens"].items():
            print(f"  {who:32} {token}")
            if token.startswith(USER_PREFIX):  # a partner app's token only receives messages
                for name, url in signed_in_urls(base, token).items():
                    print(f"      {name:10} {url}")
        print("A new inbound message arrives every 20 seconds.\n", flush=True)
        tasks.append(asyncio.create_task(trickle(seeded["channel"], stop)))

    uvicorn.run(create_app(settings, on_start=on_start), host=host, port=port, **uvicorn_options(settings))
    stop.set()
