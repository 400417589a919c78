"""Test support for Inopsio and its plugins: fixtures (``inopsio.testing.plugin``, loaded by pytest
automatically) and the tenant isolation conformance check (``inopsio.testing.conformance``)."""
