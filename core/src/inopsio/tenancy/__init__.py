"""Tenants: the table, resolution of the tenant for a request, per-tenant settings and modules."""
