"""``/api/v1/erp/customers``, ``/api/v1/erp/products``, ``/api/v1/erp/tax-rates`` and ``/api/v1/erp/settings``."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select

from inopsio.deps import CurrentTenant, DbSession, KernelDep
from inopsio.errors import Problem
from inopsio_erp.catalog import services
from inopsio_erp.catalog.schemas import (
    CustomerIn,
    CustomerOut,
    CustomerPatch,
    ProductIn,
    ProductOut,
    TaxRateIn,
    TaxRateOut,
)
from inopsio_erp.company import SettingsIn, SettingsOut, get_settings, secret_box, settings_out
from inopsio_erp.models import Customer, Product, TaxRate
from inopsio_erp.validation import check_country, check_email, check_tax_id, field_problem

Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Offset = Annotated[int, QueryParameter(ge=0)]


def customer_out(c: Customer) -> CustomerOut:
    return CustomerOut(
        id=c.id,
        name=c.name,
        email=c.email,
        address_line1=c.address_line1,
        address_line2=c.address_line2,
        postal_code=c.postal_code,
        city=c.city,
        country=c.country,
        tax_id=c.tax_id,
        currency=c.currency,
        payment_terms_days=c.payment_terms_days,
        external_ref=c.external_ref,
        created_at=c.created_at,
    )


def tax_rate_out(r: TaxRate) -> TaxRateOut:
    return TaxRateOut(id=r.id, name=r.name, rate=r.rate, inclusive=r.inclusive, category=r.category, active=r.active)


def product_out(p: Product) -> ProductOut:
    return ProductOut(
        id=p.id,
        name=p.name,
        description=p.description,
        unit=p.unit,
        unit_price=p.unit_price,
        currency=p.currency,
        tax_rate_ids=[UUID(str(t)) for t in p.tax_rate_ids],
        active=p.active,
    )


class CustomerController(Controller):
    path = "/api/v1/erp/customers"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.customers.write"})
    async def create_customer(
        self, db_session: DbSession, tenant: CurrentTenant, data: JSONBody[CustomerIn]
    ) -> CustomerOut:
        return customer_out(await services.create_customer(db_session, tenant, data))

    @get("/", opt={"permission": "erp.customers.read"})
    async def list_customers(
        self,
        db_session: DbSession,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[CustomerOut]:
        return [customer_out(c) for c in await services.list_customers(db_session, q, limit, offset)]

    @get("/{customer_id:uuid}", opt={"permission": "erp.customers.read"})
    async def get_customer(self, db_session: DbSession, customer_id: FromPath[UUID]) -> CustomerOut:
        return customer_out(await services.get_customer(db_session, customer_id))

    @patch("/{customer_id:uuid}", opt={"permission": "erp.customers.write"})
    async def update_customer(
        self, db_session: DbSession, customer_id: FromPath[UUID], data: JSONBody[CustomerPatch]
    ) -> CustomerOut:
        return customer_out(await services.update_customer(db_session, customer_id, data))

    @delete("/{customer_id:uuid}", opt={"permission": "erp.customers.delete"})
    async def delete_customer(self, db_session: DbSession, customer_id: FromPath[UUID]) -> None:
        await services.delete_customer(db_session, customer_id)


class TaxRateController(Controller):
    path = "/api/v1/erp/tax-rates"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.products.write"})
    async def create_tax_rate(self, db_session: DbSession, data: JSONBody[TaxRateIn]) -> TaxRateOut:
        return tax_rate_out(await services.save_tax_rate(db_session, data))

    @get("/", opt={"permission": "erp.products.read"})
    async def list_tax_rates(self, db_session: DbSession) -> list[TaxRateOut]:
        rows = (await db_session.execute(select(TaxRate).order_by(TaxRate.name, TaxRate.id))).scalars()
        return [tax_rate_out(r) for r in rows]

    @get("/{tax_rate_id:uuid}", opt={"permission": "erp.products.read"})
    async def get_tax_rate(self, db_session: DbSession, tax_rate_id: FromPath[UUID]) -> TaxRateOut:
        return tax_rate_out(await services.get_tax_rate(db_session, tax_rate_id))

    @put("/{tax_rate_id:uuid}", opt={"permission": "erp.products.write"})
    async def update_tax_rate(
        self, db_session: DbSession, tax_rate_id: FromPath[UUID], data: JSONBody[TaxRateIn]
    ) -> TaxRateOut:
        # Lines keep a copy of their taxes: changing a rate never changes an issued invoice.
        return tax_rate_out(await services.save_tax_rate(db_session, data, tax_rate_id))

    @delete("/{tax_rate_id:uuid}", opt={"permission": "erp.products.delete"})
    async def delete_tax_rate(self, db_session: DbSession, tax_rate_id: FromPath[UUID]) -> None:
        await db_session.delete(await services.get_tax_rate(db_session, tax_rate_id))


class ProductController(Controller):
    path = "/api/v1/erp/products"
    tags = ["erp"]

    @post("/", opt={"permission": "erp.products.write"})
    async def create_product(
        self, db_session: DbSession, tenant: CurrentTenant, data: JSONBody[ProductIn]
    ) -> ProductOut:
        return product_out(await services.save_product(db_session, tenant, data))

    @get("/", opt={"permission": "erp.products.read"})
    async def list_products(self, db_session: DbSession, limit: Limit = 50, offset: Offset = 0) -> list[ProductOut]:
        query = select(Product).order_by(Product.name, Product.id).limit(limit).offset(offset)
        return [product_out(p) for p in (await db_session.execute(query)).scalars()]

    @get("/{product_id:uuid}", opt={"permission": "erp.products.read"})
    async def get_product(self, db_session: DbSession, product_id: FromPath[UUID]) -> ProductOut:
        return product_out(await services.get_product(db_session, product_id))

    @put("/{product_id:uuid}", opt={"permission": "erp.products.write"})
    async def update_product(
        self, db_session: DbSession, tenant: CurrentTenant, product_id: FromPath[UUID], data: JSONBody[ProductIn]
    ) -> ProductOut:
        return product_out(await services.save_product(db_session, tenant, data, product_id))

    @delete("/{product_id:uuid}", opt={"permission": "erp.products.delete"})
    async def delete_product(self, db_session: DbSession, product_id: FromPath[UUID]) -> None:
        await db_session.delete(await services.get_product(db_session, product_id))


class SettingsController(Controller):
    path = "/api/v1/erp/settings"
    tags = ["erp"]

    @get("/", opt={"permission": "erp.invoices.read"})
    async def get_erp_settings(self, db_session: DbSession) -> SettingsOut:
        return settings_out(await get_settings(db_session))

    @patch("/", opt={"permission": "erp.settings.write"})
    async def update_erp_settings(
        self, kernel: KernelDep, db_session: DbSession, data: JSONBody[SettingsIn]
    ) -> SettingsOut:
        row = await get_settings(db_session)
        values = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if "country" in values:
            values["country"] = check_country(values["country"])
        if "email" in values:
            values["email"] = check_email(values["email"])
        if "tax_id" in values:
            values["tax_id"] = check_tax_id(values["tax_id"], values.get("country", row.country))
        if values.get("logo_url") and not values["logo_url"].startswith(("https://", "/", "data:image/png;base64,")):
            raise field_problem("/logo_url", "an https:// URL, a path on this site or a data:image/png URL")
        if values.get("stripe_api_base") and kernel.settings.environment == "production":
            raise Problem(422, "validation-error", "Another Stripe API address is for tests only.")
        box = secret_box(kernel.settings)
        for secret in ("stripe_secret_key", "stripe_webhook_secret"):
            if secret in values:
                values[secret] = box.encrypt(values[secret]) if values[secret] else ""
        for key, value in values.items():
            setattr(row, key, value)
        await db_session.flush()
        return settings_out(row)
