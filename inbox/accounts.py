"""Companies, users, their tokens and availability."""
from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

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
    viewer.available = available
    await viewer.save(update_fields=["available"])
    return viewer


async def authenticate(token: str | None) -> User | Channel | None:
    """The user or CUSTOM channel a bearer token belongs to, or None."""
    if not token:
        return None
    digest = token_hash(token)
    if token.startswith(CHANNEL_PREFIX):
        return await installed.channel_of_token(digest)
    if token.startswith(USER_PREFIX):
        return await User.get_or_none(token_hash=digest)
    return None
