"""Invoice PDFs with fpdf2 (pure Python, no system libraries): three templates (classic, modern,
minimal) with the tenant's branding, embedded DejaVu fonts (subsets of matplotlib's files, see
``fonts``: text stays extractable, Latin, Greek and Cyrillic print), amounts formatted with babel in
the tenant's locale."""

from __future__ import annotations

import io
from decimal import Decimal

from babel.numbers import format_decimal
from fpdf import FPDF, FontFace, XPos, YPos

from inopsio_erp import formatting
from inopsio_erp.documents import fonts
from inopsio_erp.documents.model import InvoiceDocument, Party

TEMPLATES = ("classic", "modern", "minimal")


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def _quantity(value: Decimal, locale: str) -> str:
    return format_decimal(value.normalize(), locale=locale.replace("-", "_"))


class InvoicePdf(FPDF):
    def __init__(self, doc: InvoiceDocument) -> None:
        super().__init__(format="A4", unit="mm")
        self.doc = doc
        regular, bold = fonts.family("serif" if doc.template == "classic" else "sans")
        self.add_font("Body", "", regular)
        self.add_font("Body", "B", bold)
        self.set_auto_page_break(auto=True, margin=22)
        self.set_margins(18, 18, 18)
        self.accent = _rgb(doc.color) if doc.template != "minimal" else (40, 40, 40)
        title = "Credit note" if doc.kind == "credit_note" else "Invoice"
        self.set_title(f"{title} {doc.number}")
        self.set_author(doc.seller.name)
        self.set_subject(f"{title} {doc.number} for {doc.buyer.name}")
        self.set_creator("Inopsio ERP")
        self.set_lang(doc.locale.replace("_", "-"))

    def money(self, amount: Decimal) -> str:
        return formatting.money(amount, self.doc.currency, self.doc.locale)

    def footer(self) -> None:
        self.set_y(-16)
        self.set_font("Body", "", 7.5)
        self.set_text_color(110, 110, 110)
        parts = [self.doc.footer] if self.doc.footer else []
        bank = " · ".join(
            x
            for x in (
                self.doc.bank_details.replace("\n", " "),
                self.doc.iban and f"IBAN {self.doc.iban}",
                self.doc.bic and f"BIC {self.doc.bic}",
            )
            if x
        )
        if bank:
            parts.append(bank)
        parts.append(f"{self.doc.number} · {self.page_no()}/{{nb}}")
        self.multi_cell(0, 3.6, "\n".join(parts), align="C")


def _party_lines(party: Party) -> list[str]:
    lines = [party.name, *party.address_lines]
    place = " ".join(x for x in (party.postal_code, party.city) if x)
    if place:
        lines.append(place)
    if party.country:
        lines.append(party.country)
    if party.tax_id:
        lines.append(f"VAT/Tax ID: {party.tax_id}")
    return [line for line in lines if line]


def _header(pdf: InvoicePdf) -> None:
    doc = pdf.doc
    title = "CREDIT NOTE" if doc.kind == "credit_note" else "INVOICE"
    if doc.template == "modern":
        pdf.set_fill_color(*pdf.accent)
        pdf.rect(0, 0, pdf.w, 34, style="F")
        pdf.set_text_color(255, 255, 255)
        pdf.set_xy(18, 11)
        pdf.set_font("Body", "B", 20)
        pdf.cell(100, 10, title)
        pdf.set_font("Body", "", 10)
        pdf.set_xy(18, 21)
        pdf.cell(100, 6, doc.seller.name)
        if doc.logo_png:
            pdf.image(io.BytesIO(doc.logo_png), x=pdf.w - 18 - 30, y=7, h=20, keep_aspect_ratio=True, w=30)
        pdf.set_text_color(30, 30, 30)
        pdf.set_y(42)
    elif doc.template == "classic":
        if doc.logo_png:
            pdf.image(io.BytesIO(doc.logo_png), x=pdf.w - 18 - 40, y=14, w=40, h=20, keep_aspect_ratio=True)
        pdf.set_text_color(*pdf.accent)
        pdf.set_font("Body", "B", 22)
        pdf.cell(0, 12, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_draw_color(*pdf.accent)
        pdf.set_line_width(0.6)
        pdf.line(18, pdf.get_y() + 2, pdf.w - 18, pdf.get_y() + 2)
        pdf.set_text_color(30, 30, 30)
        pdf.set_y(pdf.get_y() + 8)
    else:
        pdf.set_text_color(30, 30, 30)
        pdf.set_font("Body", "", 16)
        pdf.cell(0, 10, title.title(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_y(pdf.get_y() + 4)


def _parties_and_facts(pdf: InvoicePdf) -> None:
    doc = pdf.doc
    top = pdf.get_y()
    pdf.set_font("Body", "B", 8)
    pdf.set_text_color(120, 120, 120)
    pdf.cell(85, 5, "FROM", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(30, 30, 30)
    pdf.set_font("Body", "", 9.5)
    pdf.multi_cell(85, 4.6, "\n".join(_party_lines(doc.seller)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font("Body", "B", 8)
    pdf.set_text_color(120, 120, 120)
    pdf.cell(85, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(30, 30, 30)
    pdf.set_font("Body", "", 9.5)
    pdf.multi_cell(85, 4.6, "\n".join(_party_lines(doc.buyer)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    facts = [("Number", doc.number), ("Date", formatting.date(doc.issue_date, doc.locale))]
    if doc.kind == "credit_note" and doc.credited_number:
        facts.append(("Credits invoice", doc.credited_number))
    elif doc.due_date:
        facts.append(("Due", formatting.date(doc.due_date, doc.locale)))
    facts.append(("Currency", doc.currency))
    pdf.set_y(top)
    for label, value in facts:
        pdf.set_x(120)
        pdf.set_font("Body", "B", 9)
        pdf.cell(30, 5.5, label)
        pdf.set_font("Body", "", 9)
        pdf.cell(0, 5.5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 8)


def _lines(pdf: InvoicePdf) -> None:
    doc = pdf.doc
    minimal = doc.template == "minimal"
    heading = FontFace(
        emphasis="BOLD",
        color=(255, 255, 255) if doc.template == "modern" else (30, 30, 30),
        fill_color=pdf.accent if doc.template == "modern" else (None if minimal else (235, 235, 235)),
    )
    pdf.set_font("Body", "", 8.5)
    pdf.set_fill_color(255, 255, 255)
    pdf.set_draw_color(200, 200, 200)
    pdf.set_line_width(0.2)
    with pdf.table(
        cell_fill_color=(246, 247, 249) if doc.template == "modern" else None,
        cell_fill_mode="ROWS" if doc.template == "modern" else "NONE",
        col_widths=(8, 70, 18, 26, 18, 18, 28),
        text_align=("RIGHT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        headings_style=heading,
        borders_layout="HORIZONTAL_LINES" if not minimal else "NONE",
        line_height=5,
        padding=1.2,
        first_row_as_headings=True,
    ) as table:
        table.row(("#", "Description", "Qty", "Unit price", "Disc.", "Tax", "Amount"))
        for line in doc.lines:
            quantity = _quantity(line.quantity, doc.locale) + (f" {line.unit}" if line.unit else "")
            taxes = ", ".join(
                f"{Decimal(t['rate']).normalize():f} %" + (" incl." if t.get("inclusive") else "") for t in line.taxes
            )
            table.row(
                (
                    str(line.position),
                    line.description,
                    quantity,
                    formatting.unit_price(line.unit_price, doc.currency, doc.locale),
                    line.discount,
                    taxes,
                    pdf.money(line.amount),
                )
            )
    pdf.ln(4)


def _totals(pdf: InvoicePdf) -> None:
    doc = pdf.doc
    rows: list[tuple[str, str, bool]] = [("Subtotal", pdf.money(doc.subtotal), False)]
    if doc.discount:
        rows.append(("Discount", "-" + pdf.money(doc.discount), False))
    for tax in doc.tax_breakdown:
        label = f"{tax['name']} ({Decimal(tax['rate']).normalize():f} %"
        label += ", included)" if tax.get("inclusive") else ")"
        rows.append((label, pdf.money(Decimal(tax["amount"])), False))
    rows.append(("Total", pdf.money(doc.total), True))
    if doc.kind == "invoice" and doc.paid:
        rows.append(("Paid", "-" + pdf.money(doc.paid), False))
        rows.append(("Balance due", pdf.money(doc.balance), True))
    if pdf.get_y() > pdf.h - 70:
        pdf.add_page()
    for label, value, strong in rows:
        pdf.set_x(105)
        pdf.set_font("Body", "B" if strong else "", 10 if strong else 9)
        if strong and doc.template != "minimal":
            pdf.set_text_color(*pdf.accent)
        pdf.cell(55, 6, label)
        pdf.cell(0, 6, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(30, 30, 30)
    pdf.ln(6)


def _notes(pdf: InvoicePdf) -> None:
    doc = pdf.doc
    pdf.set_font("Body", "", 9)
    if doc.notes:
        pdf.multi_cell(0, 4.6, doc.notes, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)
    if doc.kind == "invoice" and (doc.iban or doc.bank_details):
        pdf.set_font("Body", "B", 9)
        pdf.cell(0, 5, "Payment", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Body", "", 9)
        details = [doc.bank_details] if doc.bank_details else []
        if doc.iban:
            details.append(f"IBAN {doc.iban}" + (f" · BIC {doc.bic}" if doc.bic else ""))
        details.append(f"Reference: {doc.number}")
        pdf.multi_cell(0, 4.6, "\n".join(details), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice as a PDF (any template in :data:`TEMPLATES`)."""
    if doc.template not in TEMPLATES:
        raise ValueError(f"unknown template {doc.template!r}")
    pdf = InvoicePdf(doc)
    pdf.alias_nb_pages()
    pdf.add_page()
    _header(pdf)
    _parties_and_facts(pdf)
    _lines(pdf)
    _totals(pdf)
    _notes(pdf)
    return bytes(pdf.output())
