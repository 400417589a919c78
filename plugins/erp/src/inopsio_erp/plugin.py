"""Hook implementations of the ERP plugin: it only points at its models, routes, jobs and handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inopsio import hookimpl
from inopsio_erp import models
from inopsio_erp.events import EVENT_TYPES
from inopsio_erp.permissions import PERMISSIONS

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


@hookimpl
def register_models(register: Any) -> None:
    for model in (
        models.ErpSettings,
        models.Customer,
        models.Product,
        models.TaxRate,
        models.NumberCounter,
        models.RecurringTemplate,
        models.Invoice,
        models.InvoiceLine,
        models.Payment,
        models.StripeEvent,
    ):
        register(model)


@hookimpl
async def on_startup(kernel: Any) -> None:
    from inopsio_erp.documents import fonts

    # The PDFs' font subsets are made once and kept with the installation's data.
    fonts.configure(Path(kernel.settings.data_dir) / "cache" / "erp-fonts")


@hookimpl
def register_migrations(register: Any) -> None:
    register(MIGRATIONS, "erp")


@hookimpl
def register_routes(register: Any) -> None:
    from inopsio_erp.catalog.controllers import (
        CustomerController,
        ProductController,
        SettingsController,
        TaxRateController,
    )
    from inopsio_erp.documents.controllers import invoice_cii, invoice_pdf, invoice_ubl
    from inopsio_erp.invoices.controllers import InvoiceController, RecurringController
    from inopsio_erp.pages import customers_page, invoice_page, invoices_page, new_invoice_page, receivables_card
    from inopsio_erp.payments.controllers import InvoicePaymentController, PaymentController
    from inopsio_erp.public import (
        public_card_payment,
        public_checkout,
        public_invoice_page,
        public_invoice_pdf,
        public_invoice_status,
    )
    from inopsio_erp.reports import ageing_report, revenue_report
    from inopsio_erp.stripe_gateway.controllers import create_invoice_checkout, stripe_webhook

    for handler in (
        CustomerController,
        ProductController,
        TaxRateController,
        SettingsController,
        InvoiceController,
        RecurringController,
        InvoicePaymentController,
        PaymentController,
        create_invoice_checkout,
        stripe_webhook,
        invoice_pdf,
        invoice_cii,
        invoice_ubl,
        public_invoice_page,
        public_invoice_pdf,
        public_checkout,
        public_card_payment,
        public_invoice_status,
        ageing_report,
        revenue_report,
        invoices_page,
        new_invoice_page,
        invoice_page,
        customers_page,
        receivables_card,
    ):
        register(handler)


@hookimpl
def register_jobs(register: Any) -> None:
    from inopsio_erp.jobs import tenant_daily

    # Every day at 05:10 UTC, once for each tenant with the ERP on; each run uses the tenant's own date.
    register(
        tenant_daily,
        name="erp.tenant_daily",
        cron={"hour": {5}, "minute": {10}, "second": 0},
        per_tenant=True,
        max_tries=5,
        timeout=600,
        retry_delay=30,
    )


@hookimpl
def register_permissions(register: Any) -> None:
    for permission in PERMISSIONS:
        register(permission)


@hookimpl
def register_event_types(register: Any) -> None:
    for event_type in EVENT_TYPES:
        register(event_type)


@hookimpl
def register_event_handlers(register: Any) -> None:
    from inopsio_erp.handlers import invoice_from_won_deal

    # The CRM's event, by name only: without the CRM installed this handler simply never runs.
    register("crm.deal.won", invoice_from_won_deal, name="erp.invoice_from_deal", max_attempts=8)


@hookimpl
def register_workflow_nodes(register: Any) -> None:
    from inopsio_erp.nodes import NODE_TYPES

    for node in NODE_TYPES:
        register(node)


@hookimpl
async def seed_demo_data(tenant: Any, session: Any) -> None:
    from inopsio_erp.demo import seed

    await seed(tenant, session)


@hookimpl
def register_mail_templates(register: Any) -> None:
    from inopsio_erp.mailer import TEMPLATES

    register(TEMPLATES)


@hookimpl
def register_web_assets(register: Any) -> None:
    from inopsio.web import WebAssets

    here = Path(__file__).resolve().parent
    register(WebAssets(templates=here / "templates" / "erp", static=here / "static"))


@hookimpl
def register_menu(register: Any) -> None:
    from inopsio.web import MenuEntry

    register(MenuEntry(label="Invoices", href="/erp/invoices", section="ERP", permission="erp.invoices.read", order=10))
    register(
        MenuEntry(label="Customers", href="/erp/customers", section="ERP", permission="erp.customers.read", order=20)
    )


@hookimpl
def register_dashboard_cards(register: Any) -> None:
    from inopsio.web import DashboardCard

    register(
        DashboardCard(
            name="erp.receivables",
            title="Receivables",
            href="/erp/cards/receivables",
            link="/erp/invoices?status=overdue",
            permission="erp.invoices.read",
        )
    )
