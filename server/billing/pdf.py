"""An issued invoice as a PDF a person would accept, with reportlab.

Drawn only from what was stored at issue (the canonical document, the usage behind its
lines, the names as they were), so the same invoice gives the same PDF, byte for byte
(`invariant`: no creation date or random id inside): seller and member, number, key,
period and issue date, the lines with quantity, unit, unit price and net, the tax per
rate, the total in the currency, what was held back, and for each line the usage
behind it (days, minutes, sessions).
"""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.doctemplate import BaseDocTemplate

from ruche.server.billing.documents import DocumentLine, UsageDay
from ruche.server.billing.invoices import document_of, usage_of
from ruche.server.billing.money import Currency
from ruche.server.billing.pricing import Period
from ruche.server.storage.models import InvoiceRow

__all__ = ["render_invoice_pdf"]

_FONTS = (
    # DejaVu (Debian's fonts-dejavu-core) covers more scripts; reportlab's own Vera is
    # always there and covers Western European names.
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (
        Path(reportlab.__file__).parent / "fonts" / "Vera.ttf",
        Path(reportlab.__file__).parent / "fonts" / "VeraBd.ttf",
    ),
)
_REGULAR, _BOLD = "RucheSans", "RucheSans-Bold"
_GREY = colors.HexColor("#666666")
_RULE = colors.HexColor("#bbbbbb")
_SHADE = colors.HexColor("#f0f0f0")


def _register_fonts() -> None:
    if _REGULAR in pdfmetrics.getRegisteredFontNames():
        return
    regular, bold = next((r, b) for r, b in _FONTS if r.is_file() and b.is_file())
    pdfmetrics.registerFont(TTFont(_REGULAR, str(regular)))
    pdfmetrics.registerFont(TTFont(_BOLD, str(bold)))
    # So that <b> in a paragraph means this bold face.
    pdfmetrics.registerFontFamily(
        _REGULAR, normal=_REGULAR, bold=_BOLD, italic=_REGULAR, boldItalic=_BOLD
    )


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=_REGULAR, fontSize=9, leading=12)
    return {
        "base": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5, textColor=_GREY),
        "title": ParagraphStyle("title", parent=base, fontName=_BOLD, fontSize=20, leading=24),
        "h2": ParagraphStyle(
            "h2", parent=base, fontName=_BOLD, fontSize=11, leading=14, spaceBefore=8
        ),
        "bold": ParagraphStyle("bold", parent=base, fontName=_BOLD),
        "right": ParagraphStyle("right", parent=base, alignment=TA_RIGHT),
        "right_bold": ParagraphStyle("right_bold", parent=base, fontName=_BOLD, alignment=TA_RIGHT),
        "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=7.5, leading=9.5),
    }


def _esc(text: object) -> str:
    """Text for a Paragraph, whose markup is XML-like."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _percent(rate: str) -> str:
    return f"{(Decimal(rate) * 100).normalize():f} %"


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _price(text: str, minor_units: int) -> str:
    """A price with at least the currency's digits (`300` -> `300.00`, `0.045` stays)."""
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f"{value:.{max(minor_units, digits)}f}"


def _unit_price(line: DocumentLine, minor_units: int) -> str:
    price, per, unit = _price(line.unit_price, minor_units), line.per, line.unit
    if line.adjustment:
        return price
    if per == 1:
        return f"{price} / {unit}"
    return f"{price} / {per} {unit}s"


def _grid(rows: list[list[Any]], widths: list[float], *, header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style: list[Any] = [
        ("FONTNAME", (0, 0), (-1, -1), _REGULAR),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, _RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [
            ("BACKGROUND", (0, 0), (-1, 0), _SHADE),
            ("FONTNAME", (0, 0), (-1, 0), _BOLD),
        ]
    table.setStyle(TableStyle(style))
    return table


def _story(row: InvoiceRow) -> list[Flowable]:
    doc = document_of(row)
    usage = {u.day: u for u in usage_of(row)}
    tz = ZoneInfo(doc.timezone)
    currency = doc.currency
    minor = Currency.of(currency).minor_units
    s = _styles()
    period = Period.parse(doc.period)
    issued = row.issued_at.astimezone(tz).date()
    width = A4[0] - 40 * mm

    story: list[Flowable] = [
        Paragraph("Invoice", s["title"]),
        Paragraph(f"No. {_esc(row.number)}", s["bold"]),
        Spacer(1, 6 * mm),
    ]
    parties = Table(
        [
            [Paragraph("From", s["small"]), Paragraph("Bill to", s["small"])],
            [
                Paragraph(f"<b>{_esc(row.site_name)}</b><br/>site {_esc(doc.site)}", s["base"]),
                Paragraph(
                    f"<b>{_esc(row.member_name)}</b><br/>{_esc(row.member_email)}<br/>"
                    f"member no. {row.member_id}",
                    s["base"],
                ),
            ],
        ],
        colWidths=[width / 2, width / 2],
    )
    parties.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), _REGULAR),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    story += [parties, Spacer(1, 5 * mm)]
    details = [
        ["Invoice number", row.number],
        [
            "Period",
            f"{period} ({_long_date(period.first_day)} to {_long_date(period.last_day)})",
        ],
        ["Issue date", _long_date(issued)],
        ["Currency", currency],
    ]
    facts = Table(
        [[Paragraph(k, s["small"]), Paragraph(_esc(v), s["base"])] for k, v in details]
        + [[Paragraph("Invoice key", s["small"]), Paragraph(row.key, s["mono"])]],
        colWidths=[35 * mm, width - 35 * mm],
    )
    facts.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    story += [facts, Spacer(1, 6 * mm)]

    lines = doc.lines
    table: list[list[Any]] = [
        [
            "#",
            "Description",
            Paragraph("Quantity", s["right_bold"]),
            "Unit",
            Paragraph("Unit price", s["right_bold"]),
            Paragraph(f"Net ({currency})", s["right_bold"]),
        ]
    ]
    for number, line in enumerate(lines, start=1):
        table.append(
            [
                str(number),
                Paragraph(_esc(line.description), s["base"]),
                Paragraph(line.quantity, s["right"]),
                line.unit,
                Paragraph(_esc(_unit_price(line, minor)), s["right"]),
                Paragraph(line.net, s["right"]),
            ]
        )
    if not lines:
        table.append(["", Paragraph("No charges this period.", s["base"]), "", "", "", ""])
    story.append(_grid(table, [8 * mm, width - 102 * mm, 20 * mm, 20 * mm, 30 * mm, 24 * mm]))

    totals: list[list[Any]] = [
        [Paragraph("Subtotal", s["right"]), Paragraph(doc.subtotal, s["right"])]
    ]
    totals += [
        [
            Paragraph(f"Tax {_percent(t.rate)} on {t.base}", s["right"]),
            Paragraph(t.tax, s["right"]),
        ]
        for t in doc.taxes
    ]
    totals.append(
        [
            Paragraph(f"Total ({currency})", s["right_bold"]),
            Paragraph(f"{doc.total} {currency}", s["right_bold"]),
        ]
    )
    summary = Table(totals, colWidths=[width - 40 * mm, 40 * mm])
    summary.setStyle(
        TableStyle(
            [
                ("LINEABOVE", (0, -1), (-1, -1), 0.75, colors.black),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    story += [Spacer(1, 2 * mm), KeepTogether([summary])]

    held = doc.held_back
    if held:
        story.append(Paragraph("Not billed: held back for review", s["h2"]))
        story.append(
            Paragraph(
                "These sessions are not on this invoice. Once reviewed, any charge comes as an "
                "adjustment on a later invoice.",
                s["small"],
            )
        )
        rows: list[list[Any]] = [["Session", "Reason", "Days"]]
        rows += [
            [
                Paragraph(_esc(h.id), s["base"]),
                h.reason.replace("_", " "),
                Paragraph(", ".join(d.isoformat() for d in h.days), s["base"]),
            ]
            for h in held
        ]
        story.append(_grid(rows, [width - 80 * mm, 35 * mm, 45 * mm]))

    behind = [(n, line) for n, line in enumerate(lines, start=1) if line.days]
    if behind:
        story.append(Paragraph("Usage behind each line", s["h2"]))
        story.append(
            Paragraph(
                "Billable minutes per local day, rounded down; overlapping visits and desk "
                "sessions count once, and breaks under 15 minutes count as presence.",
                s["small"],
            )
        )
    for number, line in behind:
        rows = [["Day", Paragraph("Minutes", s["right_bold"]), "First in", "Sessions"]]
        for day in line.days:
            used = usage.get(day)
            rows.append(
                [
                    day.isoformat(),
                    Paragraph(str(used.minutes) if used else "", s["right"]),
                    _first_in(used, tz),
                    Paragraph(_esc(", ".join(used.sessions)) if used else "", s["small"]),
                ]
            )
        story.append(
            KeepTogether(
                [
                    Spacer(1, 2 * mm),
                    Paragraph(f"Line {number}: {_esc(line.description)}", s["bold"]),
                    _grid(rows, [24 * mm, 20 * mm, 18 * mm, width - 62 * mm]),
                ]
            )
        )
    return story


def _first_in(used: UsageDay | None, tz: ZoneInfo) -> str:
    if not used:
        return ""
    return f"{used.first_presence.astimezone(tz):%H:%M}"


def _footer(row: InvoiceRow) -> Any:  # noqa: ANN401 - reportlab's page callback type
    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(_REGULAR, 7.5)
        canvas.setFillColor(_GREY)
        canvas.drawString(20 * mm, 12 * mm, f"{row.site_name} - invoice {row.number}")
        canvas.drawRightString(A4[0] - 20 * mm, 12 * mm, f"page {doc.page}")
        canvas.restoreState()

    return draw


def render_invoice_pdf(row: InvoiceRow) -> bytes:
    """The invoice as PDF bytes, the same every time for the same stored invoice."""
    _register_fonts()
    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=f"Invoice {row.number}",
        author=row.site_name,
        subject=f"{row.member_name}, {row.period}",
        creator="Ruche",
        invariant=True,
    )
    footer = _footer(row)
    pdf.build(_story(row), onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
