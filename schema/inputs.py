"""GraphQL input types of the contract."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import strawberry

from channels import providers

from .types import AttachmentKind, ChannelKind


@strawberry.input
class CreateUserInput:
    name: str
    email: str
    is_admin: Optional[bool] = False


def _install_channel_input() -> type:
    """InstallChannelInput: kind, name, and one optional field per messaging app for its
    config (each app's module declares the field and its input type)."""
    annotations: dict = {"kind": ChannelKind, "name": str}
    namespace: dict = {"__annotations__": annotations, "__module__": __name__}
    for app in providers():
        if app.config_input is not None:
            annotations[app.input_field] = Optional[app.config_input]
            namespace[app.input_field] = None
    fields = ", ".join(f"`{app.input_field}`{'' if app.config_required else ' (optional)'} for {app.kind.value}"
                       for app in providers() if app.config_input)
    return strawberry.input(type("InstallChannelInput", (), namespace),
                            description=f"Set the config that matches `kind`: {fields}.")


InstallChannelInput = _install_channel_input()


@strawberry.input
class AttachmentInput:
    kind: AttachmentKind
    url: str = strawberry.field(description="An http(s) URL the messaging app can fetch.")
    name: Optional[str] = None


@strawberry.input(description="A WhatsApp template approved in Twilio's Content API; the only reply allowed on "
                              "WhatsApp once its window is CLOSED.")
class TemplateInput:
    content_sid: str = strawberry.field(description="The Content SID, e.g. HX1234...")
    variables: Optional[list[str]] = strawberry.field(
        default=None, description="Values of the template's placeholders {{1}}, {{2}}, ... in order.")


@strawberry.input
class ReceivedSenderInput:
    external_id: str
    name: str
    avatar_url: Optional[str] = None


@strawberry.input(description="An inbound message pushed by a partner integration (CUSTOM channel).")
class ReceiveMessageInput:
    external_message_id: str = strawberry.field(
        description="The messaging app's id of the message: a second delivery of the same id changes nothing.")
    sender: ReceivedSenderInput
    body: str = strawberry.field(description="May be empty when attachments are given.")
    sent_at: Optional[datetime] = None
    attachments: Optional[list[AttachmentInput]] = None


@strawberry.input
class PersonInput:
    name: str
    email: Optional[str] = None
    phone: Optional[str] = None


@strawberry.input
class LeadInput:
    title: str
    person_id: Optional[strawberry.ID] = None


@strawberry.input
class DealInput:
    title: str
    value: Optional[float] = None
    currency: Optional[str] = None
    person_id: Optional[strawberry.ID] = None


@strawberry.input(description="Exactly one field must be set: an existing item, or a new one made from the "
                              "conversation.")
class LinkTargetInput:
    person_id: Optional[strawberry.ID] = None
    lead_id: Optional[strawberry.ID] = None
    deal_id: Optional[strawberry.ID] = None
    new_person: Optional[PersonInput] = None
    new_lead: Optional[LeadInput] = None
    new_deal: Optional[DealInput] = None
