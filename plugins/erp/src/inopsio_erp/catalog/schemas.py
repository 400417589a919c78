"""What the API speaks about customers, products and tax rates (msgspec), separate from the models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated
from uuid import UUID

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Short = Annotated[str, msgspec.Meta(max_length=200)]
Terms = Annotated[int, msgspec.Meta(ge=0, le=365)]
#: Decimal amounts are checked by the services (msgspec bounds only numbers): non-negative, bounded.
Price = Decimal
Rate = Decimal
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    email: Annotated[str, msgspec.Meta(max_length=320)] = ""
    address_line1: Short = ""
    address_line2: Short = ""
    postal_code: Annotated[str, msgspec.Meta(max_length=20)] = ""
    city: Annotated[str, msgspec.Meta(max_length=100)] = ""
    country: Annotated[str, msgspec.Meta(max_length=2)] = ""
    tax_id: Annotated[str, msgspec.Meta(max_length=50)] = ""
    #: ISO 4217; the tenant's currency when omitted.
    currency: str | None = None
    #: Days from issue to due date; the invoicing settings' default when omitted.
    payment_terms_days: Terms | None = None
    external_ref: Short | None = None


class CustomerPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: Name | Unset = UNSET
    email: Annotated[str, msgspec.Meta(max_length=320)] | Unset = UNSET
    address_line1: Short | Unset = UNSET
    address_line2: Short | Unset = UNSET
    postal_code: Annotated[str, msgspec.Meta(max_length=20)] | Unset = UNSET
    city: Annotated[str, msgspec.Meta(max_length=100)] | Unset = UNSET
    country: Annotated[str, msgspec.Meta(max_length=2)] | Unset = UNSET
    tax_id: Annotated[str, msgspec.Meta(max_length=50)] | Unset = UNSET
    currency: str | Unset = UNSET
    payment_terms_days: Terms | Unset = UNSET


class CustomerOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    email: str
    address_line1: str
    address_line2: str
    postal_code: str
    city: str
    country: str
    tax_id: str
    currency: str
    payment_terms_days: int
    external_ref: str | None
    created_at: dt.datetime


class TaxRateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    rate: Rate
    inclusive: bool = False
    category: Annotated[str, msgspec.Meta(pattern=r"^(S|Z|E|AE|K|G|O|L|M)$")] = "S"
    active: bool = True


class TaxRateOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    rate: Decimal
    inclusive: bool
    category: str
    active: bool


class ProductIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    description: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    unit: Annotated[str, msgspec.Meta(max_length=20)] = ""
    unit_price: Price
    currency: str | None = None
    tax_rate_ids: Annotated[list[UUID], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    active: bool = True


class ProductOut(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    description: str
    unit: str
    unit_price: Decimal
    currency: str
    tax_rate_ids: list[UUID]
    active: bool
