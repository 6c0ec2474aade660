"""The GraphQL types of the CRM side: persons, leads, deals, the notes on them, and
the links from conversations to them."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional, Union

import strawberry
from strawberry.types import Info

import models
from inbox import notes, validation

from .cost import max_items
from .ids import global_id, person_cursor
from .types import Conversation, Node, PageInfo


async def _notes(info: Info, kind: models.LinkTargetKind, target_id: int) -> list["Note"]:
    return [Note.of(row) for row in await info.context.loaders.notes.load((kind, target_id))]


# Notes of a person, lead or deal: the latest, newest first.
_NOTES = dict(description=f"Newest first; the latest {validation.MAX_NOTES}.",
              metadata=max_items(validation.MAX_NOTES))


async def _person(info: Info, person_id: int | None) -> Optional["Person"]:
    if person_id is None:
        return None
    row = await info.context.loaders.person.load(person_id)
    return Person.of(row) if row else None


@strawberry.type
class Person(Node):
    name: str
    email: Optional[str]
    phone: Optional[str]
    row: strawberry.Private[models.Person]

    @classmethod
    def of(cls, row: models.Person) -> "Person":
        return cls(id=global_id("Person", row.id), name=row.name, email=row.email, phone=row.phone, row=row)

    @strawberry.field(**_NOTES)
    async def notes(self, info: Info) -> list["Note"]:
        return await _notes(info, models.LinkTargetKind.PERSON, self.row.id)


@strawberry.type
class Lead(Node):
    title: str
    row: strawberry.Private[models.Lead]

    @classmethod
    def of(cls, row: models.Lead) -> "Lead":
        return cls(id=global_id("Lead", row.id), title=row.title, row=row)

    @strawberry.field
    async def person(self, info: Info) -> Optional[Person]:
        return await _person(info, self.row.person_id)

    @strawberry.field(**_NOTES)
    async def notes(self, info: Info) -> list["Note"]:
        return await _notes(info, models.LinkTargetKind.LEAD, self.row.id)


@strawberry.type
class Deal(Node):
    title: str
    value: Optional[float]
    currency: Optional[str]
    row: strawberry.Private[models.Deal]

    @classmethod
    def of(cls, row: models.Deal) -> "Deal":
        return cls(id=global_id("Deal", row.id), title=row.title, value=row.value, currency=row.currency, row=row)

    @strawberry.field
    async def person(self, info: Info) -> Optional[Person]:
        return await _person(info, self.row.person_id)

    @strawberry.field(**_NOTES)
    async def notes(self, info: Info) -> list["Note"]:
        return await _notes(info, models.LinkTargetKind.DEAL, self.row.id)


LinkTarget = Annotated[Union[Person, Lead, Deal], strawberry.union("LinkTarget")]

TYPES = {models.LinkTargetKind.PERSON: Person, models.LinkTargetKind.LEAD: Lead, models.LinkTargetKind.DEAL: Deal}


async def _target(info: Info, kind: models.LinkTargetKind, target_id: int) -> LinkTarget:
    loaders = info.context.loaders
    loader = {models.LinkTargetKind.PERSON: loaders.person, models.LinkTargetKind.LEAD: loaders.lead,
              models.LinkTargetKind.DEAL: loaders.deal}[kind]
    return TYPES[kind].of(await loader.load(target_id))


@strawberry.type
class ConversationLink(Node):
    created_at: datetime
    row: strawberry.Private[models.ConversationLink]

    @classmethod
    def of(cls, row: models.ConversationLink) -> "ConversationLink":
        return cls(id=global_id("ConversationLink", row.id), created_at=row.created_at, row=row)

    @strawberry.field
    async def conversation(self, info: Info) -> Conversation:
        return Conversation.of(await info.context.loaders.conversation.load(self.row.conversation_id))

    @strawberry.field
    async def target(self, info: Info) -> LinkTarget:
        return await _target(info, self.row.target_kind, self.row.target_id)


async def _note_content(root: "Note", info: Info) -> str:
    return notes.note_text(root.row.content, await info.context.loaders.note_lines.load(root.row.id))


@strawberry.type(description="A note in a person's, lead's or deal's detail view.")
class Note(Node):
    content: str = strawberry.field(
        resolver=_note_content,
        description="HTML-safe plain text: markup arrives escaped as character references; lines end with \\n.")
    created_at: datetime
    updated_at: datetime
    row: strawberry.Private[models.Note]

    @classmethod
    def of(cls, row: models.Note) -> "Note":
        return cls(id=global_id("Note", row.id), created_at=row.created_at, updated_at=row.updated_at, row=row)

    @strawberry.field(description="Set on notes the inbox writes with a conversation's history.")
    async def conversation(self, info: Info) -> Optional[Conversation]:
        """Null once the conversation is deleted, or for a viewer without access to its channel."""
        if self.row.conversation_id is None:
            return None
        row = await info.context.loaders.visible_conversation.load(self.row.conversation_id)
        return Conversation.of(row) if row is not None else None

    @strawberry.field
    async def target(self, info: Info) -> LinkTarget:
        return await _target(info, self.row.target_kind, self.row.target_id)


@strawberry.type
class PersonEdge:
    cursor: str
    node: Person


@strawberry.type
class PersonConnection:
    edges: list[PersonEdge]
    page_info: PageInfo


def person_connection(rows: list[models.Person], has_next: bool, has_previous: bool) -> PersonConnection:
    edges = [PersonEdge(cursor=person_cursor(row.id), node=Person.of(row)) for row in rows]
    return PersonConnection(edges=edges, page_info=PageInfo.of(edges, has_next, has_previous))
