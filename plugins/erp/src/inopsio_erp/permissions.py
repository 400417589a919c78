"""The ERP plugin's permissions and the built-in roles that get each by default."""

from __future__ import annotations

from inopsio.identity.rbac import Permission

ALL_STAFF = ("admin", "manager", "member", "viewer")
WRITERS = ("admin", "manager", "member")
MANAGERS = ("admin", "manager")

PERMISSIONS = (
    Permission(name="erp.invoices.read", description="Read invoices and credit notes", roles=ALL_STAFF),
    Permission(name="erp.invoices.write", description="Write draft invoices and recurring templates", roles=WRITERS),
    Permission(name="erp.invoices.issue", description="Issue and send invoices, issue credit notes", roles=MANAGERS),
    Permission(name="erp.invoices.void", description="Void issued invoices", roles=("admin",)),
    Permission(name="erp.payments.read", description="Read payments", roles=ALL_STAFF),
    Permission(name="erp.payments.write", description="Record payments received", roles=MANAGERS),
    Permission(name="erp.payments.refund", description="Record and make refunds", roles=("admin",)),
    Permission(name="erp.customers.read", description="Read customers", roles=ALL_STAFF),
    Permission(name="erp.customers.write", description="Create and edit customers", roles=WRITERS),
    Permission(name="erp.customers.delete", description="Delete customers without invoices", roles=MANAGERS),
    Permission(name="erp.products.read", description="Read the catalogue and tax rates", roles=ALL_STAFF),
    Permission(name="erp.products.write", description="Edit the catalogue and tax rates", roles=MANAGERS),
    Permission(name="erp.products.delete", description="Delete products and tax rates", roles=MANAGERS),
    Permission(name="erp.settings.write", description="Edit invoicing settings and payment keys", roles=("admin",)),
    Permission(name="erp.reports.read", description="Read receivables and revenue reports", roles=MANAGERS),
)
