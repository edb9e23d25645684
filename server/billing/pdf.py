"""An issued invoice as a PDF a person would accept, with reportlab.

Drawn only from what was stored at issue (the canonical document, the usage behind its
lines, the names as they were), so the same invoice gives the same PDF, byte for byte
(`invariant`: no creation date or random id inside): seller and member, number, key,
period and issue date, the lines with quantity, unit, unit price and net, the tax per
rate, the total in the currency, what was held back, and for each line the usage
behind it (days, minutes, sessions).

In French or English (`Wording`): every label through the gettext catalogues, amounts,
numbers and dates by Babel; `invoice_pdf` picks the member's own language (their
person's setting), French when they have none. The mentions French rules ask of an
invoice stay in both: seller and buyer, number, issue date, period, each line's
quantity, unit price and net, the tax per rate and the total.
"""

from __future__ import annotations

import io
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
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.billing.documents import UsageDay
from ruche.server.billing.invoices import document_of, usage_of
from ruche.server.billing.pricing import Period
from ruche.server.billing.wording import Wording, invoice_locale
from ruche.server.i18n import DEFAULT_LOCALE, N_
from ruche.server.storage.models import InvoiceRow, PersonRow

__all__ = ["invoice_pdf", "member_locale", "render_invoice_pdf"]

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


def _story(row: InvoiceRow, words: Wording) -> list[Flowable]:
    doc = document_of(row)
    usage = {u.day: u for u in usage_of(row)}
    tz = ZoneInfo(doc.timezone)
    currency = doc.currency
    _ = words.text
    s = _styles()
    period = Period.parse(doc.period)
    issued = row.issued_at.astimezone(tz).date()
    width = A4[0] - 40 * mm

    story: list[Flowable] = [
        Paragraph(_esc(_("Invoice")), s["title"]),
        Paragraph(_esc(_("No. %(number)s", number=row.number)), s["bold"]),
        Spacer(1, 6 * mm),
    ]
    site_text = _esc(_("site %(site)s", site=doc.site))
    member_text = _esc(_("member no. %(member)s", member=row.member_id))
    parties = Table(
        [
            [Paragraph(_esc(_("From")), s["small"]), Paragraph(_esc(_("Bill to")), s["small"])],
            [
                Paragraph(f"<b>{_esc(row.site_name)}</b><br/>{site_text}", s["base"]),
                Paragraph(
                    f"<b>{_esc(row.member_name)}</b><br/>{_esc(row.member_email)}<br/>"
                    f"{member_text}",
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
        [_("Invoice number"), row.number],
        [_("Period"), words.period(period)],
        [_("Issue date"), words.date(issued)],
        [_("Currency"), currency],
    ]
    facts = Table(
        [[Paragraph(_esc(k), s["small"]), Paragraph(_esc(v), s["base"])] for k, v in details]
        + [[Paragraph(_esc(_("Invoice key")), s["small"]), Paragraph(row.key, s["mono"])]],
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
            _("Description"),
            Paragraph(_esc(_("Quantity")), s["right_bold"]),
            _("Unit"),
            Paragraph(_esc(_("Unit price")), s["right_bold"]),
            Paragraph(_esc(_("Net (%(currency)s)", currency=currency)), s["right_bold"]),
        ]
    ]
    for number, line in enumerate(lines, start=1):
        table.append(
            [
                str(number),
                Paragraph(_esc(words.description(line.description)), s["base"]),
                Paragraph(_esc(words.decimal(line.quantity)), s["right"]),
                Paragraph(_esc(words.unit(line.unit, line.quantity)), s["base"]),
                Paragraph(_esc(words.unit_price(line)), s["right"]),
                Paragraph(_esc(words.price(line.net)), s["right"]),
            ]
        )
    if not lines:
        table.append(["", Paragraph(_esc(_("No charges this period.")), s["base"]), "", "", "", ""])
    # The unit column holds "régularisation" unbroken, the quantity "Quantité".
    story.append(_grid(table, [8 * mm, width - 110 * mm, 20 * mm, 28 * mm, 30 * mm, 24 * mm]))

    totals: list[list[Any]] = [
        [
            Paragraph(_esc(_("Subtotal")), s["right"]),
            Paragraph(_esc(words.price(doc.subtotal)), s["right"]),
        ]
    ]
    totals += [
        [
            Paragraph(
                _esc(
                    _(
                        "Tax %(rate)s on %(base)s",
                        rate=words.percent(t.rate),
                        base=words.price(t.base),
                    )
                ),
                s["right"],
            ),
            Paragraph(_esc(words.price(t.tax)), s["right"]),
        ]
        for t in doc.taxes
    ]
    totals.append(
        [
            Paragraph(_esc(_("Total (%(currency)s)", currency=currency)), s["right_bold"]),
            Paragraph(_esc(words.money(doc.total)), s["right_bold"]),
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
        story.append(Paragraph(_esc(_("Not billed: held back for review")), s["h2"]))
        story.append(
            Paragraph(
                _esc(
                    _(
                        "These sessions are not on this invoice. Once reviewed, any charge"
                        " comes as an adjustment on a later invoice."
                    )
                ),
                s["small"],
            )
        )
        rows: list[list[Any]] = [[_("Session"), _("Reason"), _("Days")]]
        rows += [
            [
                Paragraph(_esc(h.id), s["base"]),
                Paragraph(_esc(words.reason(h.reason)), s["base"]),
                Paragraph(_esc(", ".join(words.date(d, "short") for d in h.days)), s["base"]),
            ]
            for h in held
        ]
        story.append(_grid(rows, [width - 80 * mm, 35 * mm, 45 * mm]))

    behind = [(n, line) for n, line in enumerate(lines, start=1) if line.days]
    if behind:
        story.append(Paragraph(_esc(_("Usage behind each line")), s["h2"]))
        story.append(
            Paragraph(
                _esc(
                    _(
                        "Billable minutes per local day, rounded down; overlapping visits and"
                        " desk sessions count once, and breaks under 15 minutes count as"
                        " presence."
                    )
                ),
                s["small"],
            )
        )
    for number, line in behind:
        rows = [
            [
                _("Day"),
                Paragraph(_esc(_("Minutes")), s["right_bold"]),
                _("First in"),
                _("Sessions"),
            ]
        ]
        for day in line.days:
            used = usage.get(day)
            rows.append(
                [
                    words.date(day, "short"),
                    Paragraph(words.decimal(str(used.minutes)) if used else "", s["right"]),
                    _first_in(used, words),
                    Paragraph(_esc(", ".join(used.sessions)) if used else "", s["small"]),
                ]
            )
        title = _("Line %(number)s: %(description)s", number=number,
                  description=words.description(line.description))  # fmt: skip
        story.append(
            KeepTogether(
                [
                    Spacer(1, 2 * mm),
                    Paragraph(_esc(title), s["bold"]),
                    _grid(rows, [24 * mm, 20 * mm, 18 * mm, width - 62 * mm]),
                ]
            )
        )
    return story


def _first_in(used: UsageDay | None, words: Wording) -> str:
    if not used:
        return ""
    return words.formats.time(used.first_presence)


def _footer(row: InvoiceRow, words: Wording) -> Any:  # noqa: ANN401 - reportlab's page callback type
    left = words.text(N_("%(site)s - invoice %(number)s"), site=row.site_name, number=row.number)

    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(_REGULAR, 7.5)
        canvas.setFillColor(_GREY)
        canvas.drawString(20 * mm, 12 * mm, left)
        canvas.drawRightString(
            A4[0] - 20 * mm, 12 * mm, words.text(N_("page %(page)s"), page=doc.page)
        )
        canvas.restoreState()

    return draw


def member_locale(session: Session, member_id: int) -> str:
    """The language a member reads their invoices in: their person's setting, else French."""
    setting = session.scalar(select(PersonRow.locale).where(PersonRow.member_id == member_id))
    return invoice_locale(setting)


def invoice_pdf(session: Session, row: InvoiceRow) -> bytes:
    """The invoice as PDF bytes in its member's language (`member_locale`)."""
    return render_invoice_pdf(row, member_locale(session, row.member_id))


def render_invoice_pdf(row: InvoiceRow, locale: str = DEFAULT_LOCALE) -> bytes:
    """The invoice as PDF bytes in `locale`, the same every time for the same stored
    invoice and language."""
    _register_fonts()
    document = document_of(row)
    words = Wording(locale, document.timezone, document.currency)
    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=words.text(N_("Invoice %(number)s"), number=row.number),
        author=row.site_name,
        subject=f"{row.member_name}, {row.period}",
        creator="Ruche",
        lang=locale,
        invariant=True,
    )
    footer = _footer(row, words)
    pdf.build(_story(row, words), onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
