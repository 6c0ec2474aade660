"""Companies, users, their tokens and availability."""
from __future__ import annotations

import copy

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from borrowed.tortoise import without_pending_saves
from models import Channel, Company, User

from . import installed, validation
from .access import require_admin
from .errors import Conflict
from .tokens import CHANNEL_PREFIX, USER_PREFIX, new_token, token_hash


async def _new_user(company_id: int, name: str, email: str, is_admin: bool) -> tuple[User, str]:
    name = validation.text(name, "name")
    email = validation.email(email)
    if await User.filter(company_id=company_id, email=email).exists():
        raise Conflict("a user with this email already exists in this company")
    token = new_token(USER_PREFIX)
    try:
        user = await User.create(company_id=company_id, name=name, email=email, is_admin=is_admin,
                                 token_hash=token_hash(token))
    except IntegrityError as error:  # a concurrent create of the same email
        raise Conflict("a user with this email already exists in this company") from error
    return user, token


async def bootstrap(company_name: str, admin_name: str, admin_email: str) -> tuple[Company, User, str]:
    """A new company with its first admin; returns the admin's token (shown once)."""
    company_name = validation.text(company_name, "company name")
    async with in_transaction():
        company = await Company.create(name=company_name)
        user, token = await _new_user(company.id, admin_name, admin_email, True)
    return company, user, token


async def create_user(viewer: User, name: str, email: str, is_admin: bool) -> tuple[User, str]:
    require_admin(viewer)
    return await _new_user(viewer.company_id, name, email, bool(is_admin))


async def set_availability(viewer: User, available: bool) -> User:
    await User.filter(id=viewer.id).update(available=available)
    # The viewer may be a websocket's for as long as it lives: it keeps availability
    # unknown, to be read fresh, and the answer is a copy.
    changed = copy.copy(viewer)
    changed.available = available
    return changed


async def availability(user_id: int) -> bool:
    """Whether a user is available now, read from the database."""
    return bool(await User.filter(id=user_id).first().values_list("available", flat=True))


# The signed-in user of every user token this process has seen. A user token is never
# revoked, its user never deleted, and of a user only `available` ever changes
# (setAvailability, maybe on another process): so the rest is kept here, and
# `available` is None on the users authenticate returns, to be read fresh when needed.
# Misses are not kept: a user made by another process signs in at once. (CUSTOM channel
# tokens, which uninstallChannel revokes: inbox/installed.py.)
KNOWN_USERS_MAX = 10_000
_known_users: dict[str, User] = {}


async def authenticate(token: str | None) -> User | Channel | None:
    """The user or CUSTOM channel a bearer token belongs to, or None. A user comes with
    `available` None: its availability is `availability(user.id)`."""
    if not token:
        return None
    digest = token_hash(token)
    if token.startswith(CHANNEL_PREFIX):
        return await installed.channel_of_token(digest)
    if token.startswith(USER_PREFIX):
        known = _known_users.get(digest)
        if known is None:
            known = await User.get_or_none(token_hash=digest)
            if known is None:
                return None
            known.available = None
            if len(_known_users) >= KNOWN_USERS_MAX:
                del _known_users[next(iter(_known_users))]  # the oldest
            _known_users[digest] = known
        # A copy per request: a request that changes its viewer changes no other's.
        user = copy.copy(known)
        without_pending_saves(user)
        return user
    return None
