"""Tenant isolation for every tenant-owned table of every installed plugin (see inopsio.testing.conformance)."""

from inopsio.testing.conformance import test_tenant_isolation  # noqa: F401
