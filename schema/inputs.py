"""GraphQL input types of the contract."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import strawberry

from .types import ChannelKind


@strawberry.input
class CreateUserInput:
    name: str
    email: str
    is_admin: Optional[bool] = False


@strawberry.input
class MessengerConfigInput:
    page_id: str
    app_secret: str
    verify_token: str
    page_access_token: str


@strawberry.input
class TwilioConfigInput:
    account_sid: str
    auth_token: str
    from_number: str = strawberry.field(description="The WhatsApp sender number, e.g. +14155238886.")


@strawberry.input
class CustomConfigInput:
    callback_url: Optional[str] = strawberry.field(
        default=None,
        description="Where the server POSTs outbound messages for the partner to deliver; without it the "
                    "channel only receives.")


@strawberry.input(description="Set the config that matches `kind`: `messenger` for MESSENGER, `whatsapp` for "
                              "WHATSAPP, `custom` (optional) for CUSTOM.")
class InstallChannelInput:
    kind: ChannelKind
    name: str
    messenger: Optional[MessengerConfigInput] = None
    whatsapp: Optional[TwilioConfigInput] = None
    custom: Optional[CustomConfigInput] = None


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
    body: str
    sent_at: Optional[datetime] = None


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
