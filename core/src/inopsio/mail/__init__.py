"""Outgoing mail: templated (Jinja2, HTML and text parts, attachments), written to the tenant's outbox
in the caller's transaction and sent after commit by a job over SMTP (aiosmtplib)."""

from inopsio.mail.service import Attachment

__all__ = ["Attachment"]
