"""Contacts' names and avatars as the messaging apps report them after the fact
(Messenger's profile arrives after the message it belongs to). Profiles that arrive
together are applied together (inbox/group_commit.py): a burst of new contacts renames
them in one transaction of a few statements."""
from __future__ import annotations

from dataclasses import dataclass

from models import Channel, DeliveryStatus, MessageDirection

from . import sql
from .events import MessageUpdated
from .group_commit import GroupCommit
from .replay import lock_company_order, mark_changed
from .transaction import Action, action
from .validation import MAX_NAME

# Live clients refresh the `senderName` of the messages they show; the latest ones
# are enough for a conversation that is on screen.
REFRESHED_MESSAGES = 20
MAX_BATCH = 128


@dataclass(frozen=True)
class _Profile:
    channel: Channel
    external_id: str
    name: str | None
    avatar_url: str | None


async def apply_profile(channel: Channel, external_id: str, name: str | None, avatar_url: str | None) -> bool:
    """Renames the contact and sets its avatar; publishes `messageUpdated` for its
    latest inbound messages, whose `senderName` changed. Returns whether it changed."""
    name = (name or "").strip()[:MAX_NAME] or None
    avatar_url = avatar_url if avatar_url and len(avatar_url) <= 2048 else None
    if name is None and avatar_url is None:
        return False
    changed, = await _profiles.submit([_Profile(channel, external_id, name, avatar_url)])
    return changed


async def _apply(profiles: list[_Profile]) -> list[bool]:
    async with action() as act:
        # Renames move messages in the companies' messageUpdated streams (inbox/replay.py).
        for company_id in sorted({p.channel.company_id for p in profiles}):
            await lock_company_order(company_id)
        where, params = sql.pairs_in([(p.channel.id, p.external_id) for p in profiles],
                                     "ct.channel_id", "ct.external_id")
        contacts = {(row["channel_id"], row["external_id"]): row for row in await sql.fetch(
            "SELECT ct.id, ct.channel_id, ct.external_id, ct.name, ct.avatar_url, cv.id AS conversation_id"
            " FROM contact ct LEFT JOIN conversation cv ON cv.contact_id = ct.id AND cv.deleted_at IS NULL"
            f" WHERE {where}", *params)}
        changed = []
        renamed: dict[int, dict] = {}  # contact id -> its row as the batch leaves it
        for profile in profiles:
            row = contacts.get((profile.channel.id, profile.external_id))
            news = row is not None and ((profile.name and row["name"] != profile.name)
                                        or (profile.avatar_url and row["avatar_url"] != profile.avatar_url))
            if news:
                row["name"] = profile.name or row["name"]
                row["avatar_url"] = profile.avatar_url or row["avatar_url"]
                renamed[row["id"]] = row
            changed.append(bool(news))
        if renamed:
            await _rename(list(renamed.values()))
            await _refresh(act, [row for row in renamed.values() if row["conversation_id"] is not None],
                           {p.channel.id: p.channel for p in profiles})
    return changed


_profiles: GroupCommit[_Profile, bool] = GroupCommit(_apply, MAX_BATCH)


async def _rename(rows: list[dict]) -> None:
    cases = " ".join("WHEN ? THEN ?" for _ in rows)
    contacts, ids = sql.in_list([row["id"] for row in rows])
    await sql.execute(
        f"UPDATE contact SET name = CASE id {cases} ELSE name END, avatar_url = CASE id {cases} ELSE avatar_url END"
        f" WHERE id IN {contacts}",
        *[value for row in rows for value in (row["id"], row["name"])],
        *[value for row in rows for value in (row["id"], row["avatar_url"])], *ids)


async def _refresh(act: Action, rows: list[dict], channels: dict[int, Channel]) -> None:
    """`messageUpdated` for each renamed contact's latest inbound messages."""
    if not rows:
        return
    latest = " UNION ALL ".join(
        f"SELECT * FROM (SELECT id, conversation_id FROM message WHERE conversation_id = ? AND direction = ?"
        f" AND status = ? ORDER BY id DESC LIMIT ?) AS latest_{index}" for index in range(len(rows)))
    messages = await sql.fetch(latest, *[value for row in rows for value in (
        row["conversation_id"], MessageDirection.INBOUND.value, DeliveryStatus.RECEIVED.value, REFRESHED_MESSAGES)])
    channel_ids, params = sql.in_list(sorted({row["channel_id"] for row in rows}))
    members: dict[int, list[int]] = {channel_id: [] for channel_id in params}
    for member in await sql.fetch(
            f"SELECT channel_id, user_id FROM channel_member WHERE channel_id IN {channel_ids} ORDER BY id", *params):
        members[member["channel_id"]].append(member["user_id"])
    channel_of = {row["conversation_id"]: channels[row["channel_id"]] for row in rows}
    messages = sorted(messages, key=lambda m: m["id"])
    positions = await mark_changed([message["id"] for message in messages])
    for message in messages:
        channel = channel_of[message["conversation_id"]]
        act.emit(MessageUpdated(company_id=channel.company_id, channel_id=channel.id,
                                conversation_id=message["conversation_id"], audience=tuple(members[channel.id]),
                                message_id=message["id"], position=positions[message["id"]]))
