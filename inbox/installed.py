"""Installed channels as webhooks and partner tokens find them, remembered per process.

A channel's settings never change once installed: the only news is its uninstall. This
process forgets a channel as it uninstalls it (`forget`); an uninstall by another
process is seen here within STALE_SECONDS. That bound is all a stale entry can cost:
storing an inbound message checks again, inside its transaction, that the channel is
installed (inbox/messages.py), and the rows a receipt would change went with the
uninstall. Unknown ids and tokens are never remembered: a channel installed by another
process is found at once."""
from __future__ import annotations

import time
from collections import OrderedDict

from models import Channel

STALE_SECONDS = 5.0
KEPT = 10_000

# channel id -> (when read, the row); token hash -> channel id.
_by_id: OrderedDict[int, tuple[float, Channel]] = OrderedDict()
_by_token: dict[str, int] = {}


def _fresh(channel_id: int | None) -> Channel | None:
    found = _by_id.get(channel_id) if channel_id is not None else None
    if found is None or time.monotonic() - found[0] >= STALE_SECONDS:
        return None
    return found[1]


def _remember(channel: Channel | None) -> Channel | None:
    if channel is None:
        return None
    forget(channel.id)
    _by_id[channel.id] = (time.monotonic(), channel)
    if channel.token_hash:
        _by_token[channel.token_hash] = channel.id
    while len(_by_id) > KEPT:
        forget(next(iter(_by_id)))
    return channel


async def channel(channel_id: int) -> Channel | None:
    """The installed channel with this id, or None."""
    return _fresh(channel_id) or _remember(
        await Channel.get_or_none(id=channel_id, uninstalled_at__isnull=True))


async def channel_of_token(digest: str) -> Channel | None:
    """The installed CUSTOM channel whose token has this sha256, or None."""
    return _fresh(_by_token.get(digest)) or _remember(
        await Channel.get_or_none(token_hash=digest, uninstalled_at__isnull=True))


def forget(channel_id: int) -> None:
    """Called as this process uninstalls the channel."""
    found = _by_id.pop(channel_id, None)
    if found is not None and found[1].token_hash:
        _by_token.pop(found[1].token_hash, None)
