"""The invoice PDF as a person gets it: rendered to PNG by poppler's pdftoppm, its text read
back by pdftotext: the member, the period, every line, the tax, the total and the usage
behind the lines, in English and in French (the member's own language, French by
default). The first page is kept in test-artifacts/invoice.png to look at.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ruche.server import billing, registry
from ruche.server.billing.pdf import invoice_pdf, render_invoice_pdf
from ruche.server.billing.pricing import Period
from ruche.server.people import accounts
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskSessionRow, InvoiceRow, VisitRow

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is missing: apt-get install poppler-utils")
    return found


@pytest.fixture
def invoices(tmp_path):
    """Zoë's November (monthly plan, overage, a stuck desk held back) and December (with an
    adjustment for a November day that arrived late)."""
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        site = registry.create_site(s, slug="lyon", name="Ruche Lyon Part-Dieu",
                                    timezone="Europe/Paris")  # fmt: skip
        s.flush()
        billing.set_site_billing(s, site.id, currency="EUR", rate="0.2")
        plan = registry.create_plan(s, name="Flex", site_ids=[site.id], schedule={"kind": "24/7"})
        member = registry.create_member(s, name="Zoë Ångström", email="zoe@example.org")
        s.flush()
        registry.create_membership(s, member_id=member.id, plan_id=plan.id, starts_at=at(1, 0))
        billing.add_price_version(
            s, site_id=site.id, plan_id=plan.id, valid_from=date(2026, 11, 1),
            terms={"kind": "monthly", "fee": "300.00", "included": "2", "unit": "day",
                   "overage": "25.00"},
            now=datetime(2026, 10, 1, tzinfo=UTC),
        )  # fmt: skip
        for seq, day in enumerate((3, 4, 5), start=1):
            s.add(VisitRow(site="lyon", member_id=member.id, entry_agent="door-a",
                           entry_seq=seq, entries=1, start=at(day, 9), end=at(day, 17, 30),
                           closed_by="exit"))  # fmt: skip
        s.add(DeskSessionRow(site="lyon", agent="pi-2", desk="d7", opened_seq=40,
                             start=at(9, 8), end=at(10, 9), closed_by="vacant", suspect=True,
                             reason="stuck_occupied", member_id=member.id,
                             attributed_by="badge", booking_id=None))  # fmt: skip
        billing.close_period(s, Period(2026, 11), now=datetime(2026, 12, 2, tzinfo=UTC))
        s.add(VisitRow(site="lyon", member_id=member.id, entry_agent="door-a", entry_seq=9,
                       entries=1, start=at(6, 10), end=at(6, 12), closed_by="exit"))  # fmt: skip
        billing.close_period(s, Period(2026, 12), now=datetime(2027, 1, 2, tzinfo=UTC))
    with sessions() as s:
        rows = {row.period: row for row in s.scalars(select(InvoiceRow))}
    rows["sessions"] = sessions
    yield rows
    engine.dispose()


def _text(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        [_poppler("pdftoppm"), "-png", "-r", "80", str(path), str(tmp_path / name)], check=True
    )
    pages = sorted(tmp_path.glob(f"{name}-*.png"))
    assert pages, "pdftoppm made no page"
    for page in pages:
        assert page.read_bytes().startswith(PNG_MAGIC)
        assert page.stat().st_size > 10_000  # a drawn page, not a blank one
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(pages[0], ARTIFACTS / f"{name}.png")
    out = subprocess.run(
        [_poppler("pdftotext"), "-raw", str(path), "-"], check=True, capture_output=True
    )
    # -raw: in drawing order, so a description wrapped in its cell reads on, unmixed.
    return " ".join(out.stdout.decode().split())


def test_the_pdf_holds_member_period_lines_and_total(invoices, tmp_path):
    row = invoices["2026-11"]
    text = _text(render_invoice_pdf(row, "en"), tmp_path, "invoice")

    for expected in (
        "Invoice",
        f"No. {row.number}",
        "Ruche Lyon Part-Dieu",
        "Zoë Ångström",
        "zoe@example.org",
        "2026-11 (1 November 2026 to 30 November 2026)",
        "Issue date 2 December 2026",
        row.key,
        # each line: description, quantity, unit, unit price, net
        "Monthly fee (Flex from 2026-11-01) 1 month 300.00 / month 300.00",
        "Included days used (Flex from 2026-11-01): 2 of 2 2 days 0.00 / day 0.00",
        "Overage days (Flex from 2026-11-01): 1 1 day 25.00 / day 25.00",
        "Subtotal 325.00",
        "Tax 20% on 325.00 65.00",
        "Total (EUR) €390.00",
        # held back, and the usage behind the lines
        "desk:lyon/pi-2/d7#40 desk sensor stuck occupied 09/11/2026, 10/11/2026",
        "05/11/2026 510 09:00 visit:lyon/door-a#3",
    ):
        assert expected in text, f"{expected!r} not in the PDF's text:\n{text}"


def test_an_adjustment_shows_with_its_usage(invoices, tmp_path):
    text = _text(render_invoice_pdf(invoices["2026-12"], "en"), tmp_path, "invoice-adjustment")
    assert "2026-12 (1 December 2026 to 31 December 2026)" in text
    assert (
        "Adjustment for 2026-11: Overage days (Flex from 2026-11-01): 2 "
        "(billed €25.00, now €50.00) 1 adjustment 25.00 25.00"
    ) in text
    assert "06/11/2026 120 10:00 visit:lyon/door-a#9" in text
    assert "Total (EUR) €390.00" in text  # 300 + 25 of overage, and 20 % tax


def test_in_french_every_label_and_amount_is_french(invoices, tmp_path):
    row = invoices["2026-11"]
    text = _text(render_invoice_pdf(row, "fr"), tmp_path, "invoice-fr")
    for expected in (
        "Facture",
        f"N° {row.number}",
        "Facturé à",
        "Période 2026-11 (du 1 novembre 2026 au 30 novembre 2026)",
        "Date d'émission 2 décembre 2026",
        "Forfait mensuel (Flex from 2026-11-01) 1 mois 300,00 / mois 300,00",
        "Jours au-delà du forfait (Flex from 2026-11-01) : 1 1 jour 25,00 / jour 25,00",
        "Total HT 325,00",
        "TVA 20 % sur 325,00 65,00",
        "Total TTC (EUR) 390,00 €",
        "capteur du bureau bloqué sur occupé 09/11/2026, 10/11/2026",
        "05/11/2026 510 09:00 visit:lyon/door-a#3",
    ):
        assert expected in text, f"{expected!r} not in the PDF's text:\n{text}"
    adjustment = _text(render_invoice_pdf(invoices["2026-12"], "fr"), tmp_path, "adjustment-fr")
    assert "Régularisation de 2026-11 : Jours au-delà du forfait" in adjustment
    assert "(facturé 25,00 €, désormais 50,00 €) 1 régularisation 25,00 25,00" in adjustment


def test_the_members_own_language_else_french(invoices, tmp_path):
    row, sessions = invoices["2026-11"], invoices["sessions"]
    with sessions() as s:
        assert _text(invoice_pdf(s, row), tmp_path, "default").startswith(
            "Ruche Lyon Part-Dieu - facture"
        ), "a member without an account reads French"
    with transaction(sessions) as s:
        accounts.create_person(
            s, email="zoe@example.org", role=Role.MEMBER, locale="en",
            member_id=row.member_id, now=datetime(2026, 12, 3, tzinfo=UTC),
        )  # fmt: skip
    with sessions() as s:
        assert "Total (EUR) €390.00" in _text(invoice_pdf(s, row), tmp_path, "english")


def test_the_same_invoice_gives_the_same_bytes(invoices):
    row = invoices["2026-11"]
    assert render_invoice_pdf(row) == render_invoice_pdf(row)
    assert render_invoice_pdf(row, "en") == render_invoice_pdf(row, "en")
