"""Customers, products and tax rates of the current tenant: validation and persistence."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.errors import Problem
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp.catalog.schemas import CustomerIn, CustomerPatch, ProductIn, TaxRateIn
from inopsio_erp.company import get_settings
from inopsio_erp.models import Customer, Invoice, Product, TaxRate
from inopsio_erp.validation import check_amount, check_country, check_currency, check_email, check_tax_id, field_problem


def _not_found(what: str) -> Problem:
    return Problem(404, "not-found", f"No such {what}.")


async def get_customer(session: AsyncSession, customer_id: UUID) -> Customer:
    customer = await session.get(Customer, (session.info["tenant_id"], customer_id))
    if customer is None:
        raise _not_found("customer")
    return customer


def _clean_customer(values: dict[str, Any]) -> dict[str, Any]:
    if "country" in values:
        values["country"] = check_country(values["country"])
    if "email" in values:
        values["email"] = check_email(values["email"])
    if "currency" in values:
        values["currency"] = check_currency(values["currency"])
    if "name" in values:
        values["name"] = values["name"].strip()
        if not values["name"]:
            raise field_problem("/name", "a customer needs a name")
    return values


async def create_customer(session: AsyncSession, tenant: TenantInfo, data: CustomerIn) -> Customer:
    values = msgspec.structs.asdict(data)
    if values["currency"] is None:
        values["currency"] = tenant.settings.currency
    if values["payment_terms_days"] is None:
        values["payment_terms_days"] = (await get_settings(session)).default_payment_terms_days
    values = _clean_customer(values)
    values["tax_id"] = check_tax_id(values["tax_id"], values["country"])
    customer = Customer(**values)
    session.add(customer)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise field_problem("/external_ref", "a customer with this external reference exists", status=409) from None
    return customer


async def update_customer(session: AsyncSession, customer_id: UUID, data: CustomerPatch) -> Customer:
    customer = await get_customer(session, customer_id)
    values = _clean_customer({k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET})
    if "tax_id" in values or "country" in values:
        values["tax_id"] = check_tax_id(values.get("tax_id", customer.tax_id), values.get("country", customer.country))
    for key, value in values.items():
        setattr(customer, key, value)
    await session.flush()
    return customer


async def delete_customer(session: AsyncSession, customer_id: UUID) -> None:
    customer = await get_customer(session, customer_id)
    invoices = await session.scalar(select(func.count()).select_from(Invoice).where(Invoice.customer_id == customer_id))
    if invoices:
        raise Problem(409, "customer-has-invoices", "A customer with invoices cannot be deleted.")
    await session.delete(customer)


async def list_customers(session: AsyncSession, search: str | None, limit: int, offset: int) -> Sequence[Customer]:
    query = select(Customer).order_by(Customer.name, Customer.id).limit(limit).offset(offset)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Customer.name.ilike(pattern) | Customer.email.ilike(pattern))
    return (await session.execute(query)).scalars().all()


async def get_tax_rate(session: AsyncSession, tax_rate_id: UUID) -> TaxRate:
    rate = await session.get(TaxRate, (session.info["tenant_id"], tax_rate_id))
    if rate is None:
        raise _not_found("tax rate")
    return rate


async def tax_rates_by_id(session: AsyncSession, ids: Sequence[UUID]) -> dict[UUID, TaxRate]:
    if not ids:
        return {}
    rows = (await session.execute(select(TaxRate).where(TaxRate.id.in_(set(ids))))).scalars()
    return {r.id: r for r in rows}


async def save_tax_rate(session: AsyncSession, data: TaxRateIn, tax_rate_id: UUID | None = None) -> TaxRate:
    check_amount(data.rate, "/rate", maximum=Decimal(100))
    rate = TaxRate() if tax_rate_id is None else await get_tax_rate(session, tax_rate_id)
    for key, value in msgspec.structs.asdict(data).items():
        setattr(rate, key, value)
    if tax_rate_id is None:
        session.add(rate)
    await session.flush()
    return rate


async def get_product(session: AsyncSession, product_id: UUID) -> Product:
    product = await session.get(Product, (session.info["tenant_id"], product_id))
    if product is None:
        raise _not_found("product")
    return product


async def save_product(
    session: AsyncSession, tenant: TenantInfo, data: ProductIn, product_id: UUID | None = None
) -> Product:
    product = Product() if product_id is None else await get_product(session, product_id)
    check_amount(data.unit_price, "/unit_price")
    values = msgspec.structs.asdict(data)
    values["currency"] = check_currency(values["currency"] or tenant.settings.currency)
    known = await tax_rates_by_id(session, data.tax_rate_ids)
    for i, rate_id in enumerate(data.tax_rate_ids):
        if rate_id not in known:
            raise field_problem(f"/tax_rate_ids/{i}", "no such tax rate")
    values["tax_rate_ids"] = [str(r) for r in data.tax_rate_ids]
    for key, value in values.items():
        setattr(product, key, value)
    if product_id is None:
        session.add(product)
    await session.flush()
    return product
