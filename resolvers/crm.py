"""Resolvers of the CRM side: persons, leads, deals, conversation links and notes."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from inbox import crm, notes
from inbox.errors import BadInput
from models import LinkTargetKind
from schema.crm import ConversationLink, Deal, Lead, Note, Person, PersonConnection, person_connection
from schema.ids import conversation_url, global_id, parse_person_cursor, pk_of
from schema.inputs import DealInput, LeadInput, LinkTargetInput, PersonInput


def _person_pk(value: Optional[strawberry.ID]) -> int | None:
    return pk_of(value, "Person") if value is not None else None


def _new_person(input: PersonInput) -> crm.NewPerson:
    return crm.NewPerson(input.name, input.email, input.phone)


def _new_lead(input: LeadInput) -> crm.NewLead:
    return crm.NewLead(input.title, _person_pk(input.person_id))


def _new_deal(input: DealInput) -> crm.NewDeal:
    return crm.NewDeal(input.title, input.value, input.currency, _person_pk(input.person_id))


def _link_target(input: LinkTargetInput) -> notes.Existing | crm.NewItem:
    """Exactly one field of LinkTargetInput (the @oneOf style), checked before anything changes."""
    given = {name: value for name, value in vars(input).items() if value is not None}
    if len(given) != 1:
        raise BadInput("set exactly one of personId, leadId, dealId, newPerson, newLead, newDeal")
    (name, value), = given.items()
    existing = {"person_id": (LinkTargetKind.PERSON, "Person"), "lead_id": (LinkTargetKind.LEAD, "Lead"),
                "deal_id": (LinkTargetKind.DEAL, "Deal")}
    if name in existing:
        kind, type_name = existing[name]
        return notes.Existing(kind, pk_of(value, type_name))
    return {"new_person": _new_person, "new_lead": _new_lead, "new_deal": _new_deal}[name](value)


async def persons(info: Info, search: Optional[str] = None, first: Optional[int] = 25,
                  after: Optional[str] = None) -> PersonConnection:
    after_pk = parse_person_cursor(after)
    rows, has_next = await crm.persons_page(info.context.viewer, search=search, first=first, after=after_pk)
    return person_connection(rows, has_next, has_previous=after_pk is not None)


async def link_conversation(info: Info, conversation_id: strawberry.ID,
                            target: LinkTargetInput) -> ConversationLink:
    pk = pk_of(conversation_id, "Conversation")
    settings = info.context.settings
    row = await notes.link(info.context.viewer, pk, _link_target(target),
                           conversation_url(settings.public_url, pk), settings.note_max_messages)
    return ConversationLink.of(row)


async def unlink_conversation(info: Info, link_id: strawberry.ID) -> strawberry.ID:
    pk = await notes.unlink(info.context.viewer, pk_of(link_id, "ConversationLink"))
    return strawberry.ID(global_id("ConversationLink", pk))


async def create_person(info: Info, input: PersonInput) -> Person:
    return Person.of(await crm.create(info.context.viewer, _new_person(input)))


async def create_lead(info: Info, input: LeadInput) -> Lead:
    return Lead.of(await crm.create(info.context.viewer, _new_lead(input)))


async def create_deal(info: Info, input: DealInput) -> Deal:
    return Deal.of(await crm.create(info.context.viewer, _new_deal(input)))


async def update_note(info: Info, id: strawberry.ID, content: str) -> Note:
    return Note.of(await notes.update_note(info.context.viewer, pk_of(id, "Note"), content))


async def delete_note(info: Info, id: strawberry.ID) -> strawberry.ID:
    pk = await notes.delete_note(info.context.viewer, pk_of(id, "Note"))
    return strawberry.ID(global_id("Note", pk))
