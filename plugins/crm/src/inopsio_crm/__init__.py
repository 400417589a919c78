"""Inopsio CRM: leads (validation, duplicates, custom fields, timeline), assignment, contacts, companies, deals."""

__version__ = "0.1.0"
