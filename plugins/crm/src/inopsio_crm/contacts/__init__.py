"""Contacts and companies, and turning a lead into them (with a deal) in one step."""
