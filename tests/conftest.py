"""Inopsio's own tests use the fixtures every plugin author gets from ``inopsio.testing``."""
