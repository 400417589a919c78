"""What the API speaks about payments and refunds (msgspec)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

ManualMethod = Literal["bank_transfer", "cash", "cheque", "other"]


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    amount: Decimal
    method: ManualMethod = "bank_transfer"
    #: The day the money arrived; today when omitted.
    received_on: dt.date | None = None
    reference: Annotated[str, msgspec.Meta(max_length=200)] = ""
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class RefundIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The whole refundable rest of the payment when omitted.
    amount: Decimal | None = None
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class PaymentOut(msgspec.Struct, kw_only=True):
    id: UUID
    invoice_id: UUID
    kind: str
    method: str
    amount: Decimal
    currency: str
    received_on: dt.date
    reference: str
    note: str
    provider_ref: str | None
    refund_of_id: UUID | None
    created_at: dt.datetime
