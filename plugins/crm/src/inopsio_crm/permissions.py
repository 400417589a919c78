"""The CRM's permissions and which built-in roles get them by default (owners get everything)."""

from __future__ import annotations

from inopsio.identity.rbac import Permission

EVERYONE = ("admin", "manager", "member", "viewer")
WRITERS = ("admin", "manager", "member")
MANAGERS = ("admin", "manager")

#: Seeing every lead of the tenant; without it a member sees their own leads and unassigned ones.
READ_ALL_LEADS = "crm.leads.read_all"

PERMISSIONS = (
    Permission(name="crm.leads.read", description="See leads (own and unassigned ones)", roles=EVERYONE),
    Permission(name=READ_ALL_LEADS, description="See every lead, whoever owns it", roles=MANAGERS),
    Permission(name="crm.leads.write", description="Create and edit leads, add notes", roles=WRITERS),
    Permission(name="crm.leads.delete", description="Delete, restore and merge leads", roles=MANAGERS),
    Permission(name="crm.leads.assign", description="Assign leads and set the round-robin rule", roles=MANAGERS),
    Permission(name="crm.leads.import", description="Import leads from CSV files", roles=MANAGERS),
    Permission(name="crm.leads.export", description="Export leads as CSV or XLSX", roles=MANAGERS),
    Permission(name="crm.custom_fields.write", description="Define the tenant's custom lead fields", roles=("admin",)),
    Permission(name="crm.contacts.read", description="See contacts and companies", roles=EVERYONE),
    Permission(name="crm.contacts.write", description="Create and edit contacts and companies", roles=WRITERS),
    Permission(name="crm.contacts.delete", description="Delete contacts and companies", roles=MANAGERS),
    Permission(name="crm.deals.read", description="See deals and pipeline metrics", roles=EVERYONE),
    Permission(name="crm.deals.write", description="Create, edit and move deals", roles=WRITERS),
    Permission(name="crm.deals.delete", description="Delete deals", roles=MANAGERS),
    Permission(name="crm.pipelines.read", description="See pipelines and their stages", roles=EVERYONE),
    Permission(name="crm.pipelines.write", description="Create pipelines, edit their stages", roles=MANAGERS),
    Permission(name="crm.pipelines.delete", description="Delete pipelines and stages", roles=("admin",)),
)
