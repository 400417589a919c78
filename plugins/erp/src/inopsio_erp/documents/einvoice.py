"""E-invoices: Factur-X / ZUGFeRD (EN 16931 profile: CII XML embedded in a PDF/A-3 by the ``factur-x``
package) and UBL 2.1 (Invoice or CreditNote).

The invoice discount is already spread over the lines by the totals engine, so each line's net
amount is after every discount and no document-level allowance is written; every line carries its
first tax (EN 16931 has one VAT category per line) and the header carries the full tax breakdown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import facturx
from lxml import etree

from inopsio_erp.documents.model import InvoiceDocument, Party
from inopsio_erp.documents.pdf import render_pdf
from inopsio_erp.totals import minor_unit

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
EN16931 = "urn:cen.eu:en16931:2017"
#: UN/ECE Recommendation 20 unit codes for the units people type most; anything else is "one" (C62).
UNIT_CODES = {
    "h": "HUR",
    "hour": "HUR",
    "hours": "HUR",
    "day": "DAY",
    "days": "DAY",
    "kg": "KGM",
    "m": "MTR",
    "pc": "H87",
}


def _amount(value: Decimal, currency: str) -> str:
    return f"{value.quantize(minor_unit(currency)):f}"


def _number(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


def _line_tax(line_taxes: tuple[dict[str, Any], ...]) -> tuple[str, Decimal | None]:
    if not line_taxes:
        return "E", Decimal(0)
    first = line_taxes[0]
    return str(first.get("category") or "S"), Decimal(first["rate"])


def _net_unit_price(net: Decimal, quantity: Decimal, unit_price: Decimal) -> Decimal:
    if quantity == 0:
        return unit_price
    return (net / quantity).quantize(Decimal("0.0001"))


def _sub(parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib)
    if text is not None:
        element.text = text
    return element


def _cii_party(parent: etree._Element, tag: str, party: Party) -> None:
    node = _sub(parent, RAM, tag)
    _sub(node, RAM, "Name", party.name or "-")
    address = _sub(node, RAM, "PostalTradeAddress")
    if party.postal_code:
        _sub(address, RAM, "PostcodeCode", party.postal_code)
    for i, line in enumerate(party.address_lines[:3]):
        _sub(address, RAM, ("LineOne", "LineTwo", "LineThree")[i], line)
    if party.city:
        _sub(address, RAM, "CityName", party.city)
    _sub(address, RAM, "CountryID", party.country or "ZZ")
    if party.email:
        uri = _sub(node, RAM, "URIUniversalCommunication")
        _sub(uri, RAM, "URIID", party.email, schemeID="EM")
    if party.tax_id:
        registration = _sub(node, RAM, "SpecifiedTaxRegistration")
        _sub(registration, RAM, "ID", party.tax_id, schemeID="VA")


def _date(parent: etree._Element, tag: str, value: Any) -> None:
    holder = _sub(parent, RAM, tag)
    _sub(holder, UDT, "DateTimeString", value.strftime("%Y%m%d"), format="102")


def cii_xml(doc: InvoiceDocument) -> bytes:
    """The invoice as UN/CEFACT Cross Industry Invoice (D16B), Factur-X EN 16931 profile."""
    cur = doc.currency
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap={"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT})
    context = _sub(root, RSM, "ExchangedDocumentContext")
    guideline = _sub(context, RAM, "GuidelineSpecifiedDocumentContextParameter")
    _sub(guideline, RAM, "ID", EN16931)
    document = _sub(root, RSM, "ExchangedDocument")
    _sub(document, RAM, "ID", doc.number)
    _sub(document, RAM, "TypeCode", "381" if doc.kind == "credit_note" else "380")
    issued = _sub(document, RAM, "IssueDateTime")
    _sub(issued, UDT, "DateTimeString", doc.issue_date.strftime("%Y%m%d"), format="102")
    if doc.notes:
        note = _sub(document, RAM, "IncludedNote")
        _sub(note, RAM, "Content", doc.notes)
    transaction = _sub(root, RSM, "SupplyChainTradeTransaction")
    for line in doc.lines:
        item = _sub(transaction, RAM, "IncludedSupplyChainTradeLineItem")
        line_doc = _sub(item, RAM, "AssociatedDocumentLineDocument")
        _sub(line_doc, RAM, "LineID", str(line.position))
        product = _sub(item, RAM, "SpecifiedTradeProduct")
        _sub(product, RAM, "Name", line.description)
        agreement = _sub(item, RAM, "SpecifiedLineTradeAgreement")
        price = _sub(agreement, RAM, "NetPriceProductTradePrice")
        _sub(price, RAM, "ChargeAmount", _number(_net_unit_price(line.net, line.quantity, line.unit_price)))
        delivery = _sub(item, RAM, "SpecifiedLineTradeDelivery")
        _sub(delivery, RAM, "BilledQuantity", _number(line.quantity), unitCode=UNIT_CODES.get(line.unit.lower(), "C62"))
        settlement = _sub(item, RAM, "SpecifiedLineTradeSettlement")
        category, rate = _line_tax(line.taxes)
        tax = _sub(settlement, RAM, "ApplicableTradeTax")
        _sub(tax, RAM, "TypeCode", "VAT")
        _sub(tax, RAM, "CategoryCode", category)
        if rate is not None:
            _sub(tax, RAM, "RateApplicablePercent", _number(rate))
        summation = _sub(settlement, RAM, "SpecifiedTradeSettlementLineMonetarySummation")
        _sub(summation, RAM, "LineTotalAmount", _amount(line.net, cur))
    agreement = _sub(transaction, RAM, "ApplicableHeaderTradeAgreement")
    _cii_party(agreement, "SellerTradeParty", doc.seller)
    _cii_party(agreement, "BuyerTradeParty", doc.buyer)
    _sub(transaction, RAM, "ApplicableHeaderTradeDelivery")
    settlement = _sub(transaction, RAM, "ApplicableHeaderTradeSettlement")
    _sub(settlement, RAM, "PaymentReference", doc.number)
    _sub(settlement, RAM, "InvoiceCurrencyCode", cur)
    if doc.iban:
        means = _sub(settlement, RAM, "SpecifiedTradeSettlementPaymentMeans")
        _sub(means, RAM, "TypeCode", "58")
        account = _sub(means, RAM, "PayeePartyCreditorFinancialAccount")
        _sub(account, RAM, "IBANID", doc.iban.replace(" ", ""))
    breakdown = list(doc.tax_breakdown) or [
        {"category": "E", "rate": "0", "base": str(sum((x.net for x in doc.lines), Decimal(0))), "amount": "0"}
    ]
    for entry in breakdown:
        tax = _sub(settlement, RAM, "ApplicableTradeTax")
        _sub(tax, RAM, "CalculatedAmount", _amount(Decimal(entry["amount"]), cur))
        _sub(tax, RAM, "TypeCode", "VAT")
        if entry.get("category", "S") == "E":
            _sub(tax, RAM, "ExemptionReason", "Exempt")
        _sub(tax, RAM, "BasisAmount", _amount(Decimal(entry["base"]), cur))
        _sub(tax, RAM, "CategoryCode", entry.get("category") or "S")
        _sub(tax, RAM, "RateApplicablePercent", _number(Decimal(entry["rate"])))
    if doc.due_date and doc.kind == "invoice":
        terms = _sub(settlement, RAM, "SpecifiedTradePaymentTerms")
        _date(terms, "DueDateDateTime", doc.due_date)
    net = doc.total - doc.tax - doc.included_tax
    summary = _sub(settlement, RAM, "SpecifiedTradeSettlementHeaderMonetarySummation")
    _sub(summary, RAM, "LineTotalAmount", _amount(net, cur))
    _sub(summary, RAM, "TaxBasisTotalAmount", _amount(net, cur))
    _sub(summary, RAM, "TaxTotalAmount", _amount(doc.tax + doc.included_tax, cur), currencyID=cur)
    _sub(summary, RAM, "GrandTotalAmount", _amount(doc.total, cur))
    _sub(summary, RAM, "TotalPrepaidAmount", _amount(doc.paid, cur))
    due = doc.balance if doc.kind == "invoice" else doc.total
    _sub(summary, RAM, "DuePayableAmount", _amount(due, cur))
    if doc.kind == "credit_note" and doc.credited_number:
        reference = _sub(settlement, RAM, "InvoiceReferencedDocument")
        _sub(reference, RAM, "IssuerAssignedID", doc.credited_number)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def facturx_pdf(doc: InvoiceDocument) -> bytes:
    """The PDF with its CII XML embedded as a Factur-X PDF/A-3 (XSD-checked while it is built)."""
    xml = cii_xml(doc)
    title = ("Credit note " if doc.kind == "credit_note" else "Invoice ") + doc.number
    metadata = {
        "author": doc.seller.name,
        "keywords": "Factur-X, Invoice",
        "title": title,
        "subject": f"{title} for {doc.buyer.name}",
    }
    result: bytes = facturx.generate_from_binary(
        render_pdf(doc), xml, flavor="factur-x", level="en16931", check_xsd=True, pdf_metadata=metadata, lang=doc.locale
    )
    return result


def _ubl_party(parent: etree._Element, tag: str, party: Party) -> None:
    holder = _sub(parent, CAC, tag)
    node = _sub(holder, CAC, "Party")
    if party.email:
        _sub(node, CBC, "EndpointID", party.email, schemeID="EM")
    name = _sub(node, CAC, "PartyName")
    _sub(name, CBC, "Name", party.name or "-")
    address = _sub(node, CAC, "PostalAddress")
    if party.address_lines:
        _sub(address, CBC, "StreetName", party.address_lines[0])
    if len(party.address_lines) > 1:
        _sub(address, CBC, "AdditionalStreetName", party.address_lines[1])
    if party.city:
        _sub(address, CBC, "CityName", party.city)
    if party.postal_code:
        _sub(address, CBC, "PostalZone", party.postal_code)
    country = _sub(address, CAC, "Country")
    _sub(country, CBC, "IdentificationCode", party.country or "ZZ")
    if party.tax_id:
        scheme = _sub(node, CAC, "PartyTaxScheme")
        _sub(scheme, CBC, "CompanyID", party.tax_id)
        tax_scheme = _sub(scheme, CAC, "TaxScheme")
        _sub(tax_scheme, CBC, "ID", "VAT")
    legal = _sub(node, CAC, "PartyLegalEntity")
    _sub(legal, CBC, "RegistrationName", party.name or "-")


def _ubl_category(parent: etree._Element, tag: str, category: str, rate: Decimal | None) -> None:
    node = _sub(parent, CAC, tag)
    _sub(node, CBC, "ID", category)
    if rate is not None:
        _sub(node, CBC, "Percent", _number(rate))
    if category == "E" and tag == "TaxCategory":
        _sub(node, CBC, "TaxExemptionReason", "Exempt")
    scheme = _sub(node, CAC, "TaxScheme")
    _sub(scheme, CBC, "ID", "VAT")


def ubl_xml(doc: InvoiceDocument) -> bytes:
    """The invoice as an OASIS UBL 2.1 Invoice (a credit note as a UBL CreditNote), EN 16931 customisation."""
    cur = doc.currency
    credit = doc.kind == "credit_note"
    ns = UBL_CREDIT_NOTE if credit else UBL_INVOICE
    root = etree.Element(f"{{{ns}}}{'CreditNote' if credit else 'Invoice'}", nsmap={None: ns, "cac": CAC, "cbc": CBC})
    _sub(root, CBC, "UBLVersionID", "2.1")
    _sub(root, CBC, "CustomizationID", EN16931)
    _sub(root, CBC, "ID", doc.number)
    _sub(root, CBC, "IssueDate", doc.issue_date.isoformat())
    if doc.due_date and not credit:
        _sub(root, CBC, "DueDate", doc.due_date.isoformat())
    _sub(root, CBC, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", "381" if credit else "380")
    if doc.notes:
        _sub(root, CBC, "Note", doc.notes)
    _sub(root, CBC, "DocumentCurrencyCode", cur)
    if credit and doc.credited_number:
        billing = _sub(root, CAC, "BillingReference")
        reference = _sub(billing, CAC, "InvoiceDocumentReference")
        _sub(reference, CBC, "ID", doc.credited_number)
    _ubl_party(root, "AccountingSupplierParty", doc.seller)
    _ubl_party(root, "AccountingCustomerParty", doc.buyer)
    if doc.iban and not credit:
        means = _sub(root, CAC, "PaymentMeans")
        _sub(means, CBC, "PaymentMeansCode", "58")
        _sub(means, CBC, "PaymentID", doc.number)
        account = _sub(means, CAC, "PayeeFinancialAccount")
        _sub(account, CBC, "ID", doc.iban.replace(" ", ""))
    tax_total = _sub(root, CAC, "TaxTotal")
    _sub(tax_total, CBC, "TaxAmount", _amount(doc.tax + doc.included_tax, cur), currencyID=cur)
    breakdown = list(doc.tax_breakdown) or [
        {"category": "E", "rate": "0", "base": str(sum((x.net for x in doc.lines), Decimal(0))), "amount": "0"}
    ]
    for entry in breakdown:
        subtotal = _sub(tax_total, CAC, "TaxSubtotal")
        _sub(subtotal, CBC, "TaxableAmount", _amount(Decimal(entry["base"]), cur), currencyID=cur)
        _sub(subtotal, CBC, "TaxAmount", _amount(Decimal(entry["amount"]), cur), currencyID=cur)
        _ubl_category(subtotal, "TaxCategory", entry.get("category") or "S", Decimal(entry["rate"]))
    net = doc.total - doc.tax - doc.included_tax
    totals = _sub(root, CAC, "LegalMonetaryTotal")
    _sub(totals, CBC, "LineExtensionAmount", _amount(net, cur), currencyID=cur)
    _sub(totals, CBC, "TaxExclusiveAmount", _amount(net, cur), currencyID=cur)
    _sub(totals, CBC, "TaxInclusiveAmount", _amount(doc.total, cur), currencyID=cur)
    _sub(totals, CBC, "PrepaidAmount", _amount(doc.paid, cur), currencyID=cur)
    _sub(totals, CBC, "PayableAmount", _amount(doc.balance if not credit else doc.total, cur), currencyID=cur)
    for line in doc.lines:
        node = _sub(root, CAC, "CreditNoteLine" if credit else "InvoiceLine")
        _sub(node, CBC, "ID", str(line.position))
        unit = UNIT_CODES.get(line.unit.lower(), "C62")
        _sub(node, CBC, "CreditedQuantity" if credit else "InvoicedQuantity", _number(line.quantity), unitCode=unit)
        _sub(node, CBC, "LineExtensionAmount", _amount(line.net, cur), currencyID=cur)
        item = _sub(node, CAC, "Item")
        _sub(item, CBC, "Name", line.description[:200] or "-")
        category, rate = _line_tax(line.taxes)
        _ubl_category(item, "ClassifiedTaxCategory", category, rate)
        price = _sub(node, CAC, "Price")
        _sub(
            price,
            CBC,
            "PriceAmount",
            _number(_net_unit_price(line.net, line.quantity, line.unit_price)),
            currencyID=cur,
        )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
