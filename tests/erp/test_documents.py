"""Invoice documents: PDFs in three templates (text extractable, fonts embedded, amounts in the tenant's
locale), Factur-X PDF/A-3 with CII XML valid against the official schemas, UBL 2.1, and the
customer's unguessable link."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader

UBL = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x1f\x6f\xeb" * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


async def issued_invoice(erp, make_tenant=None):
    await erp.call(
        "PATCH",
        "/settings",
        json={
            "company_name": "Muster GmbH",
            "address": "Hauptstraße 1\n10115 Berlin",
            "country": "DE",
            "tax_id": "DE136695976",
            "iban": "DE89370400440532013000",
            "bic": "COBADEFFXXX",
            "bank_details": "Commerzbank",
            "footer": "Muster GmbH · HRB 12345",
            "color": "#aa3300",
            "logo_url": "data:image/png;base64," + base64.b64encode(tiny_png()).decode(),
        },
    )
    vat = await erp.tax("USt 19%", "19")
    customer = await erp.customer(
        name="Käufer AG", address_line1="Rue 1", postal_code="75001", city="Paris", country="FR", tax_id="FR40303265045"
    )
    lines = [
        {
            "description": f"Leistung {i} \u2013 Beratung",
            "quantity": "1.5",
            "unit": "h",
            "unit_price": "1000",
            "tax_rate_ids": [vat["id"]],
        }
        for i in range(3)
    ]
    return await erp.issued(customer["id"], lines)


@pytest.mark.parametrize("template", ["classic", "modern", "minimal"])
async def test_pdf_templates_are_text_extractable_with_embedded_fonts(erp, template, kernel):
    await kernel.tenants.update_settings(erp.tenant.id, msgspec_patch(locale="de_DE"))
    invoice = await issued_invoice(erp)
    response = await erp.client.get(
        f"/api/v1/erp/invoices/{invoice['id']}/pdf",
        params={"template": template, "factur_x": "false"},
        headers=erp.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert invoice["number"] in text
    assert "Käufer AG" in text
    assert "Leistung 2 \u2013 Beratung" in text
    assert "5.355,00\xa0€" in text  # 4,500.00 + 19 % in the German format (babel: a no-break space)
    assert "DE89370400440532013000" in text
    assert "Muster GmbH · HRB 12345" in text
    fonts = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            descriptor = font.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            fonts.append("/FontFile2" in descriptor)
    assert fonts
    assert all(fonts), "every font is embedded"
    assert "/Image" in str(reader.pages[0]["/Resources"].get("/XObject", {}).values()) or template


def test_fonts_come_from_matplotlib_subset_once_into_the_cache(tmp_path):
    import hashlib
    from importlib.resources import files

    from inopsio_erp.documents import fonts

    # No font file is shipped inside the plugin: they are the matplotlib distribution's.
    assert not [p for p in files("inopsio_erp").rglob("*") if p.name.endswith((".ttf", ".otf"))]
    source = fonts.source_dir() / "DejaVuSerif.ttf"
    previous = fonts._cache_dir
    fonts.configure(tmp_path)
    try:
        regular, bold = fonts.family("serif")
        assert regular.parent == bold.parent == tmp_path
        assert hashlib.sha256(source.read_bytes()).hexdigest()[:16] in regular.name
        assert regular.stat().st_size < source.stat().st_size / 2  # a subset
        made = regular.stat().st_mtime_ns
        fonts.configure(tmp_path / "other")
        fonts.configure(tmp_path)  # a new process' view: nothing in memory, the file is reused
        assert fonts.font_path("DejaVuSerif.ttf") == regular
        assert regular.stat().st_mtime_ns == made
        assert not list(tmp_path.glob("*.tmp"))
    finally:
        fonts.configure(previous)


def msgspec_patch(**fields):
    from inopsio.tenancy.schemas import TenantSettingsPatch

    return TenantSettingsPatch(**fields)


async def test_factur_x_pdf_carries_valid_en16931_xml(erp):
    invoice = await issued_invoice(erp)
    response = await erp.client.get(f"/api/v1/erp/invoices/{invoice['id']}/pdf", headers=erp.headers)
    assert response.status_code == 200
    filename, xml = facturx.get_xml_from_pdf(response.content, check_xsd=False)
    assert filename == "factur-x.xml"
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"
    reader = PdfReader(io.BytesIO(response.content))
    catalog = reader.trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp  # PDF/A-3
    assert "fx:ConformanceLevel" in xmp
    root = etree.fromstring(xml)
    ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    assert root.findtext(".//ram:GrandTotalAmount", namespaces=ns) == "5355.00"
    assert root.findtext(".//ram:DuePayableAmount", namespaces=ns) == "5355.00"


async def test_cii_and_ubl_exports(erp):
    invoice = await issued_invoice(erp)
    cii = await erp.client.get(f"/api/v1/erp/invoices/{invoice['id']}/cii", headers=erp.headers)
    assert facturx.xml_check_xsd(cii.content, flavor="factur-x", level="en16931")
    ubl = await erp.client.get(f"/api/v1/erp/invoices/{invoice['id']}/ubl", headers=erp.headers)
    root = etree.fromstring(ubl.content)
    assert root.tag == f"{{{UBL['inv']}}}Invoice"
    assert root.findtext("cbc:ID", namespaces=UBL) == invoice["number"]
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=UBL) == "5355.00"
    assert root.findtext("cac:TaxTotal/cbc:TaxAmount", namespaces=UBL) == "855.00"
    lines = root.findall("cac:InvoiceLine", namespaces=UBL)
    assert len(lines) == 3
    assert sum(float(x.findtext("cbc:LineExtensionAmount", namespaces=UBL)) for x in lines) == 4500.0
    note = await erp.call("POST", f"/invoices/{invoice['id']}/credit-notes", 201, json={})
    credit = etree.fromstring(
        (await erp.client.get(f"/api/v1/erp/invoices/{note['id']}/ubl", headers=erp.headers)).content
    )
    assert credit.tag == f"{{{UBL['cn']}}}CreditNote"
    assert (
        credit.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=UBL) == invoice["number"]
    )
    cn_cii = await erp.client.get(f"/api/v1/erp/invoices/{note['id']}/cii", headers=erp.headers)
    assert facturx.xml_check_xsd(cn_cii.content, flavor="factur-x", level="en16931")


async def test_draft_has_no_document(erp):
    customer = await erp.customer()
    draft = await erp.draft(customer["id"])
    response = await erp.client.get(f"/api/v1/erp/invoices/{draft['id']}/pdf", headers=erp.headers)
    assert response.status_code == 409


async def test_customer_link_shows_the_invoice_its_pdf_and_a_pay_button(erp, client):
    await erp.call("PATCH", "/settings", json={"stripe_secret_key": "sk_test_x"})
    invoice = await issued_invoice(erp)
    path = invoice["public_url"].split("localhost:8000", 1)[-1] if "localhost" in invoice["public_url"] else None
    path = "/erp/pay/" + invoice["public_url"].rsplit("/erp/pay/", 1)[1]
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 40
    page = await client.get(path, headers={"X-Tenant": erp.tenant.slug})
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert invoice["number"] in page.text
    assert "Käufer AG" in page.text
    assert 'action="' + path + '/checkout"' in page.text
    assert 'id="pay"' in page.text
    pdf = await client.get(path + "/pdf", headers={"X-Tenant": erp.tenant.slug})
    assert pdf.status_code == 200
    assert invoice["number"] in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    for bad in ("/erp/pay/" + "x" * 43, path[:-1] + ("A" if path[-1] != "A" else "B")):
        assert (await client.get(bad, headers={"X-Tenant": erp.tenant.slug})).status_code == 404


async def test_customer_link_of_another_tenant_is_unknown(erp, make_tenant, client):
    invoice = await issued_invoice(erp)
    other = await make_tenant()
    path = "/erp/pay/" + invoice["public_url"].rsplit("/erp/pay/", 1)[1]
    response = await client.get(path, headers={"X-Tenant": other.slug})
    assert response.status_code == 404


async def test_escaped_customer_data_on_the_page(erp, client):
    customer = await erp.customer(name="<script>alert(1)</script>")
    invoice = await erp.issued(customer["id"], [{"description": "<b>x</b>", "unit_price": "1"}])
    path = "/erp/pay/" + invoice["public_url"].rsplit("/erp/pay/", 1)[1]
    page = await client.get(path, headers={"X-Tenant": erp.tenant.slug})
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text
