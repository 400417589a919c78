"""The ERP plugin's emails (invoice, reminder, payment confirmation): their templates, which the kernel
renders as ``erp/<name>`` (``templates/erp/mail/<name>.{subject.txt,txt,html}``, registered through
``register_mail_templates``); their links come from ``inopsio.tenancy.addresses.tenant_url``.

Every ERP mail goes through ``kernel.mail.queue`` in the transaction of the change it reports, so a
rolled-back change mails nothing and a committed one mails once.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates" / "erp" / "mail"
