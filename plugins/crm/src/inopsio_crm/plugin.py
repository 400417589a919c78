"""Hook implementations of the CRM: they only point at its models, routes, events, jobs and nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inopsio import hookimpl
from inopsio.web import DashboardCard, MenuEntry, WebAssets
from inopsio_crm.contacts.controllers import CompanyController, ContactController, convert_lead
from inopsio_crm.contacts.models import Company, Contact
from inopsio_crm.contacts.pages import companies_page, company_page, contact_page, contacts_page
from inopsio_crm.demo import seed
from inopsio_crm.events import EVENT_TYPES
from inopsio_crm.jobs import import_leads, purge_deleted_leads
from inopsio_crm.leads.controllers import (
    CustomFieldController,
    LeadController,
    get_assignment_rule,
    set_assignment_rule,
)
from inopsio_crm.leads.import_pages import import_page, import_step_page
from inopsio_crm.leads.models import AssignmentRule, CustomField, Lead, LeadActivity, LeadImport, LeadTerm
from inopsio_crm.leads.transfer_controllers import ImportController, export_leads
from inopsio_crm.nodes import NODE_TYPES
from inopsio_crm.pages import board_page, lead_page, leads_page, pipeline_card, pipeline_page
from inopsio_crm.permissions import PERMISSIONS
from inopsio_crm.pipeline.controllers import DealController, PipelineController, StageController
from inopsio_crm.pipeline.models import Deal, DealStageChange, Pipeline, Stage
from inopsio_crm.pipeline.services import add_pipeline

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


@hookimpl
def register_models(register: Any) -> None:
    for model in (
        Lead,
        LeadActivity,
        LeadTerm,
        CustomField,
        AssignmentRule,
        Company,
        Contact,
        Pipeline,
        Stage,
        Deal,
        DealStageChange,
        LeadImport,
    ):
        register(model)


@hookimpl
def register_migrations(register: Any) -> None:
    register(MIGRATIONS, "crm")


@hookimpl
def register_permissions(register: Any) -> None:
    for permission in PERMISSIONS:
        register(permission)


@hookimpl
def register_event_types(register: Any) -> None:
    for event_type in EVENT_TYPES:
        register(event_type)


@hookimpl
def register_routes(register: Any) -> None:
    for handler in (
        LeadController,
        CustomFieldController,
        get_assignment_rule,
        set_assignment_rule,
        CompanyController,
        ContactController,
        convert_lead,
        PipelineController,
        StageController,
        DealController,
        ImportController,
        export_leads,
        leads_page,
        lead_page,
        import_page,
        import_step_page,
        companies_page,
        company_page,
        contacts_page,
        contact_page,
        pipeline_page,
        board_page,
        pipeline_card,
    ):
        register(handler)


@hookimpl
def register_jobs(register: Any, settings: Any) -> None:
    register(import_leads, name="crm.import_leads", max_tries=3, timeout=1800, retry_delay=5)
    # Hourly, once for each tenant with the CRM on.
    register(
        purge_deleted_leads,
        name="crm.purge_deleted_leads",
        max_tries=3,
        timeout=600,
        cron={"minute": {23}, "second": 0},
        per_tenant=True,
    )


@hookimpl
async def on_tenant_created(tenant: Any, session: Any) -> None:
    """Every new tenant starts with one sales pipeline of five stages."""
    await add_pipeline(session, "Sales")


@hookimpl
def register_workflow_nodes(register: Any) -> None:
    for node_type in NODE_TYPES:
        register(node_type)


@hookimpl
async def seed_demo_data(tenant: Any, session: Any) -> None:
    """A few hundred deterministic leads, companies, contacts and deals for ``inopsio serve --demo``."""
    await seed(tenant, session)


@hookimpl
def register_web_assets(register: Any) -> None:
    here = Path(__file__).resolve().parent
    register(WebAssets(templates=here / "templates", static=here / "static"))


@hookimpl
def register_menu(register: Any) -> None:
    register(
        MenuEntry(label="Leads", href="/crm/leads", section="CRM", permission="crm.leads.read", icon="users", order=10)
    )
    register(
        MenuEntry(
            label="Contacts", href="/crm/contacts", section="CRM", permission="crm.contacts.read", icon="user", order=12
        )
    )
    register(
        MenuEntry(
            label="Companies",
            href="/crm/companies",
            section="CRM",
            permission="crm.contacts.read",
            icon="building",
            order=14,
        )
    )
    register(
        MenuEntry(
            label="Pipeline", href="/crm/pipeline", section="CRM", permission="crm.deals.read", icon="kanban", order=20
        )
    )


@hookimpl
def register_dashboard_cards(register: Any) -> None:
    register(
        DashboardCard(
            name="crm.pipeline",
            title="Pipeline",
            href="/crm/cards/pipeline",
            link="/crm/pipeline",
            permission="crm.deals.read",
        )
    )
