"""Outgoing mail: templated (Jinja2, HTML and text parts), sent by a job over SMTP (aiosmtplib)."""
