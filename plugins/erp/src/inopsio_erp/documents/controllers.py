"""``/api/v1/erp/invoices/{id}/pdf``, ``.../cii`` and ``.../ubl``: the issued invoice as documents."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal
from uuid import UUID

from litestar import Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.deps import CurrentTenant, DbSession
from inopsio.errors import Problem
from inopsio.tenancy.schemas import TenantInfo
from inopsio_erp.documents.einvoice import cii_xml, facturx_pdf, ubl_xml
from inopsio_erp.documents.model import InvoiceDocument, load_document
from inopsio_erp.documents.pdf import render_pdf
from inopsio_erp.invoices import services as invoices

Template = Annotated[Literal["classic", "modern", "minimal"] | None, QueryParameter()]


async def document_for(
    session: AsyncSession, tenant: TenantInfo, invoice_id: UUID, template: str | None = None
) -> InvoiceDocument:
    invoice = await invoices.get_invoice(session, invoice_id)
    if invoice.status == "draft":
        raise Problem(409, "invoice-not-issued", "A draft has no document yet: issue it first.")
    return await load_document(session, tenant, invoice, template=template)


async def pdf_response(doc: InvoiceDocument, *, factur_x: bool = True, inline: bool = False) -> Response[bytes]:
    # Rendering is CPU work (tens of milliseconds): off the event loop, so other requests go on.
    content = await asyncio.to_thread(facturx_pdf if factur_x else render_pdf, doc)
    disposition = "inline" if inline else "attachment"
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'{disposition}; filename="{doc.number}.pdf"'},
    )


@get("/api/v1/erp/invoices/{invoice_id:uuid}/pdf", opt={"permission": "erp.invoices.read"}, tags=["erp"])
async def invoice_pdf(
    db_session: DbSession,
    tenant: CurrentTenant,
    invoice_id: FromPath[UUID],
    template: Template = None,
    factur_x: Annotated[bool, QueryParameter(query="factur_x")] = True,
) -> Response[bytes]:
    """The PDF: a Factur-X PDF/A-3 with its EN 16931 XML embedded (``factur_x=false``: a plain PDF)."""
    doc = await document_for(db_session, tenant, invoice_id, template)
    return await pdf_response(doc, factur_x=factur_x)


@get("/api/v1/erp/invoices/{invoice_id:uuid}/cii", opt={"permission": "erp.invoices.read"}, tags=["erp"])
async def invoice_cii(db_session: DbSession, tenant: CurrentTenant, invoice_id: FromPath[UUID]) -> Response[bytes]:
    """The UN/CEFACT Cross Industry Invoice XML (Factur-X EN 16931 profile)."""
    doc = await document_for(db_session, tenant, invoice_id)
    return Response(cii_xml(doc), media_type="application/xml")


@get("/api/v1/erp/invoices/{invoice_id:uuid}/ubl", opt={"permission": "erp.invoices.read"}, tags=["erp"])
async def invoice_ubl(db_session: DbSession, tenant: CurrentTenant, invoice_id: FromPath[UUID]) -> Response[bytes]:
    """The OASIS UBL 2.1 Invoice (or CreditNote) XML."""
    doc = await document_for(db_session, tenant, invoice_id)
    return Response(ubl_xml(doc), media_type="application/xml")
