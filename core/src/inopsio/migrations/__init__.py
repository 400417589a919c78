"""Alembic environment shared by the kernel and every plugin (one branch each)."""
