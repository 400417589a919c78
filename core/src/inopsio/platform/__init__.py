"""The platform operator API: tenants across the installation, their quotas and usage."""
