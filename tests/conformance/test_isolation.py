"""Tenant isolation for every tenant-owned table of every installed plugin (see inopsio.testing.conformance)."""

from inopsio.testing.conformance import test_every_loaded_tenant_table_is_checked, test_tenant_isolation  # noqa: F401
