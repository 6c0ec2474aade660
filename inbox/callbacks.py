"""Where a CUSTOM channel's replies may go (issue 11): a callbackUrl whose host is, or
resolves to, a loopback, private, link-local, multicast or unspecified address is refused
at install and again at every send (DNS may change in between), unless the operator
allows private callbacks. The sender connects to the very address checked here
(channels/outbound.py), so a name cannot resolve to another one between check and use."""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from server import metrics

from .errors import BadInput

# How long install waits for DNS; a host that does not resolve in time is checked at each send.
RESOLVE_TIMEOUT = 5.0
BOUND = "callback_private_address"
# A message's failureReason when the check fails at send time: it names no address.
NOT_PUBLIC = "refused: the callbackUrl does not point at a public address"


class NotPublic(Exception):
    """The host is, or resolves to, an address that is not public."""


def is_public(address: str) -> bool:
    """Whether an address is one of the internet's: not loopback, private, link-local,
    multicast, unspecified, reserved or shared (ipaddress's `is_global`, which counts
    multicast as global), nor an IPv6 form of such an IPv4 address."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 zone is no part of the address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal, in any spelling the system
    accepts: itself), in the resolver's order. OSError when it does not resolve."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    if not infos:
        raise OSError(f"{host} resolves to nothing")
    return list(dict.fromkeys(info[4][0] for info in infos))


async def address_to_call(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for `host`: the first it resolves to, once every one of
    them is public (or private ones are allowed). NotPublic otherwise; OSError when the
    host does not resolve."""
    addresses = await resolve(host, port)
    if not allow_private and not all(is_public(address) for address in addresses):
        metrics.refused(BOUND)
        raise NotPublic(host)
    return addresses[0]


async def check_at_install(url: str, *, allow_private: bool) -> None:
    """BAD_USER_INPUT when the callbackUrl's host is, or resolves to, an address that is
    not public. A host that does not resolve (yet) is accepted: every send checks again."""
    if allow_private:
        return
    parts = urlsplit(url)
    try:
        await address_to_call(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                              allow_private=False)
    except NotPublic:
        raise BadInput("callbackUrl must point at a public address, not a loopback, private, link-local, "
                       "multicast or unspecified one") from None
    except UnicodeError:
        raise BadInput("callbackUrl's host is not a valid host name") from None
    except OSError:
        pass
