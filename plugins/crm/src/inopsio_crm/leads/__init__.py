"""Leads: capture, validation, duplicates and merging, custom fields, timeline, list and assignment."""
