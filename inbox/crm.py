"""The CRM side the inbox links conversations to (SPEC §4): a company's persons,
leads and deals, the persons list, and the notes on each. Every user of a company
sees its CRM; another company's item reads as NOT_FOUND."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tortoise.expressions import Q

from models import ConversationLink, Deal, Lead, LinkTargetKind, Note, Person, User

from . import sql, validation
from .errors import BadInput, NotFound
from .sections import page_size

MAX_PHONE = 64
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True)
class NewPerson:
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class NewLead:
    title: str
    person_id: int | None = None


@dataclass(frozen=True)
class NewDeal:
    title: str
    value: float | None = None
    currency: str | None = None
    person_id: int | None = None


NewItem = NewPerson | NewLead | NewDeal

MODELS = {LinkTargetKind.PERSON: Person, LinkTargetKind.LEAD: Lead, LinkTargetKind.DEAL: Deal}
KIND_OF = {NewPerson: LinkTargetKind.PERSON, NewLead: LinkTargetKind.LEAD, NewDeal: LinkTargetKind.DEAL}


async def company_item(company_id: int, kind: LinkTargetKind, pk: int) -> Person | Lead | Deal:
    row = await MODELS[kind].get_or_none(id=pk, company_id=company_id)
    if row is None:
        raise NotFound(f"{kind.value.lower()} not found")
    return row


async def checked(viewer: User, item: NewItem) -> NewItem:
    """The item's fields validated (trimmed, limits, a person of the viewer's company),
    before anything is written."""
    if isinstance(item, NewPerson):
        phone = validation.text(item.phone, "phone", MAX_PHONE, required=False)
        email = validation.email(item.email) if item.email is not None and item.email.strip() else None
        return NewPerson(validation.text(item.name, "name"), email, phone)
    if item.person_id is not None:
        await company_item(viewer.company_id, LinkTargetKind.PERSON, item.person_id)
    title = validation.text(item.title, "title")
    if isinstance(item, NewLead):
        return NewLead(title, item.person_id)
    if item.value is not None and (not math.isfinite(item.value) or item.value < 0):
        raise BadInput("value must be a finite amount, zero or more")
    currency = validation.text(item.currency, "currency", required=False)
    if currency is not None and not _CURRENCY.match(currency):
        raise BadInput("currency must be a three-letter ISO 4217 code")
    return NewDeal(title, item.value, currency.upper() if currency else None, item.person_id)


async def add(company_id: int, item: NewItem) -> Person | Lead | Deal:
    """Writes an item that `checked` let through (inside the caller's transaction)."""
    if isinstance(item, NewPerson):
        return await Person.create(company_id=company_id, name=item.name, email=item.email, phone=item.phone)
    if isinstance(item, NewLead):
        return await Lead.create(company_id=company_id, title=item.title, person_id=item.person_id)
    return await Deal.create(company_id=company_id, title=item.title, value=item.value, currency=item.currency,
                             person_id=item.person_id)


async def create(viewer: User, item: NewItem) -> Person | Lead | Deal:
    return await add(viewer.company_id, await checked(viewer, item))


async def persons_page(viewer: User, *, search: str | None, first: int | None,
                       after: int | None) -> tuple[list[Person], bool]:
    """Newest first (keyset on the id); `search` matches name, email or phone, case-insensitive."""
    term = validation.search(search)
    size = page_size(first)
    query = Person.filter(company_id=viewer.company_id)
    if term:
        query = query.filter(Q(name__icontains=term) | Q(email__icontains=term) | Q(phone__icontains=term))
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(size + 1)
    return rows[:size], len(rows) > size


async def notes_of(kind: LinkTargetKind, target_ids: list[int]) -> dict[int, list[Note]]:
    """Each detail view's notes, newest first, at most MAX_NOTES each, in one statement."""
    return await sql.first_per(Note, "t.target_id", target_ids, "t.created_at DESC, t.id DESC",
                               validation.MAX_NOTES, "AND t.target_kind = ?", kind.value)


async def links_of(conversation_ids: list[int]) -> dict[int, list[ConversationLink]]:
    """Each conversation's links, oldest first (at most MAX_LINKS: linking refuses more),
    in one statement."""
    return await sql.first_per(ConversationLink, "t.conversation_id", conversation_ids, "t.id",
                               validation.MAX_LINKS)
