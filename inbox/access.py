"""Who may see and act on what (SPEC §1): channel access is membership, or being an admin."""
from __future__ import annotations

from models import Channel, ChannelMember, Conversation, User

from . import sql
from .errors import Forbidden, NotFound
from .validation import MAX_MEMBERS


def require_admin(viewer: User) -> None:
    if not viewer.is_admin:
        raise Forbidden("only admins change the messaging settings")


def live_channels(company_id: int):
    return Channel.filter(company_id=company_id, uninstalled_at__isnull=True)


# The channels a viewer sees: every live channel of its company for an admin, those it
# is a member of for anyone else. Written out, not built by the ORM: read by every page,
# count and subscription, where building the query took about 250 µs of the 350.
_LIVE_CHANNELS = """SELECT c.id FROM channel c WHERE c.company_id = :company AND c.uninstalled_at IS NULL
                    ORDER BY c.id"""
_MEMBER_CHANNELS = """SELECT c.id FROM channel c JOIN channel_member m ON m.channel_id = c.id
                      WHERE c.company_id = :company AND c.uninstalled_at IS NULL AND m.user_id = :user
                      ORDER BY c.id"""


async def accessible_channel_ids(viewer: User) -> list[int]:
    if viewer.is_admin:
        rows = await sql.fetch(_LIVE_CHANNELS, company=viewer.company_id)
    else:
        rows = await sql.fetch(_MEMBER_CHANNELS, company=viewer.company_id, user=viewer.id)
    return [row["id"] for row in rows]


async def has_access(user: User, channel_id: int) -> bool:
    if user.is_admin:
        return await live_channels(user.company_id).filter(id=channel_id).exists()
    return await ChannelMember.filter(user_id=user.id, channel_id=channel_id,
                                      channel__uninstalled_at__isnull=True).exists()


async def members_of(channel_ids: list[int]) -> dict[int, list[User]]:
    """Each channel's members by name, at most MAX_MEMBERS each, in one statement."""
    return await sql.first_per(User, "m.channel_id", channel_ids, "t.name, t.id", MAX_MEMBERS,
                               source='channel_member m JOIN "user" t ON t.id = m.user_id')


async def audience(channel_id: int) -> tuple[int, ...]:
    """Members of the channel: with admins, everyone an event of it may reach."""
    return tuple(await ChannelMember.filter(channel_id=channel_id).values_list("user_id", flat=True))


async def visible_channel(viewer: User, channel_id: int) -> Channel:
    channel = await live_channels(viewer.company_id).get_or_none(id=channel_id)
    if channel is None or not await has_access(viewer, channel.id):
        raise NotFound("channel not found")
    return channel


async def visible_conversation(viewer: User, conversation_id: int, *, for_update: bool = False) -> Conversation:
    """The conversation if the viewer may see it; NOT_FOUND otherwise, whatever the reason."""
    query = Conversation.filter(id=conversation_id, company_id=viewer.company_id,
                                deleted_at__isnull=True, channel__uninstalled_at__isnull=True)
    if for_update:
        # Only the conversation's row: PostgreSQL refuses FOR UPDATE on the channel,
        # the nullable side of the join that checks it is still installed.
        query = query.select_for_update(of=("conversation",))
    conversation = await query.first()
    if conversation is None or not await has_access(viewer, conversation.channel_id):
        raise NotFound("conversation not found")
    return conversation


async def visible_conversations(viewer: User, conversation_ids: list[int]) -> dict[int, Conversation]:
    """Those of the conversations the viewer may see (as `visible_conversation`), by id,
    in two statements whatever their number."""
    channel_ids = await accessible_channel_ids(viewer)
    rows = await Conversation.filter(id__in=conversation_ids, company_id=viewer.company_id, deleted_at__isnull=True,
                                     channel_id__in=channel_ids or [0])
    return {row.id: row for row in rows}


async def company_user(viewer: User, user_id: int) -> User:
    user = await User.get_or_none(id=user_id, company_id=viewer.company_id)
    if user is None:
        raise NotFound("user not found")
    return user
