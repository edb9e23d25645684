"""A month billed, in Chromium: the manager of Lyon previews last month, closes it (after
ticking the confirmation) and downloads Ada's invoice as a PDF, in French; Ada signs in on
her phone and finds the same invoice (number and total), the days behind it on her usage
page (her badge-in at the front door at 08:57, desk d3 occupied 09:02-12:40), and her
data as one JSON file. Every page passes axe, at desktop and phone sizes, without
scrolling sideways.

Last month's visits and desk session are stored as the occupancy refresh stores them
(with the tap event that opened the first visit), as the billing tests do; no MQTT is
needed to bill a month that has ended.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import serve
from playwright.sync_api import Page

from ruche.server import billing, registry
from ruche.server.api.app import create_app
from ruche.server.billing.pricing import Period
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskSessionRow, StoredEventRow, VisitRow
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = "correct horse battery"
TODAY = datetime.now(UTC).astimezone(PARIS).date()
MONTH = Period(TODAY.year - (TODAY.month == 1), (TODAY.month - 2) % 12 + 1)
MANAGER, ADA = "lou@example.org", "ada@example.org"
FLEX = {"kind": "monthly", "fee": "300.00", "included": "2", "unit": "day", "overage": "25.00"}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(MONTH.year, MONTH.month, day, hour, minute, tzinfo=PARIS)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Lyon with last month's usage of Ada's, served on 127.0.0.1: its base URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('invoices') / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    now, hashed = datetime.now(UTC), hash_password(PASSWORD)
    with transaction(sessions) as s:
        lyon = registry.create_site(s, slug="lyon", name="Ruche Lyon", timezone="Europe/Paris")
        s.flush()
        billing.set_site_billing(s, lyon.id, currency="EUR", rate="0.2")
        registry.create_door(s, site_id=lyon.id, slug="front", name="Front door")
        plan = registry.create_plan(s, name="Flex", site_ids=[lyon.id], schedule={"kind": "24/7"})
        ada = registry.create_member(s, name="Ada Lovelace", email=ADA)
        s.flush()
        registry.create_membership(s, member_id=ada.id, plan_id=plan.id,
                                   starts_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        billing.add_price_version(s, site_id=lyon.id, plan_id=plan.id,
                                  valid_from=Period(MONTH.year - 1, 1).first_day, terms=FLEX,
                                  now=datetime(2025, 12, 1, tzinfo=UTC))  # fmt: skip
        s.add(StoredEventRow(site="lyon", agent="door-pi", seq=1, channel="tap",
                             device="front", kind="tap", ts=at(3, 8, 57),
                             received_at=at(3, 8, 57), payload="{}"))  # fmt: skip
        for seq, day, (hour, minute) in ((1, 3, (8, 57)), (2, 4, (9, 0)), (3, 5, (9, 0))):
            s.add(VisitRow(site="lyon", member_id=ada.id, entry_agent="door-pi", entry_seq=seq,
                           entries=1, start=at(day, hour, minute), end=at(day, 17, 30),
                           closed_by="exit"))  # fmt: skip
        s.add(DeskSessionRow(site="lyon", agent="desk-pi", desk="d3", opened_seq=7,
                             start=at(3, 9, 2), end=at(3, 12, 40), closed_by="vacant",
                             suspect=False, reason=None, member_id=ada.id,
                             attributed_by="badge", booking_id=None))  # fmt: skip
        for person in (
            accounts.create_person(s, email=MANAGER, role=Role.MANAGER, site_id=lyon.id, now=now),
            accounts.create_person(s, email=ADA, role=Role.MEMBER, member_id=ada.id, now=now),
        ):
            person.password_hash = hashed
    ports = RecordingPorts()
    try:
        yield from serve(create_app(sessions=sessions, commands=ports, listener=ports))
    finally:
        engine.dispose()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/signin")
    page.locator("#signin-email").fill(email)
    page.locator("#signin-password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form[action='/signin'] button[type=submit]").click()


def fits(page: Page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"


def pdf_text(path: Path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils")
    out = subprocess.run([tool, "-raw", str(path), "-"], check=True, capture_output=True)
    return re.sub(r"\s+", " ", out.stdout.decode())


def test_a_month_closed_by_the_manager_is_the_members_invoice(site, browse, audit, offline):
    number, total = manager_closes_the_month(site, browse, audit)
    member_finds_the_invoice(site, browse, audit, number, total)
    assert offline.blocked == []


def manager_closes_the_month(site: str, browse, audit) -> tuple[str, str]:
    """The manager's part: preview, close, the PDF in French; Ada's invoice number and total."""
    month = f"/manage/invoices?site=lyon&month={MONTH}"
    # The manager previews the month: what closing would bill, VAT included.
    staff = browse("desktop", locale="fr-FR")
    sign_in(staff, site, MANAGER)
    staff.goto(site + month)
    preview = staff.locator("section.card", has_text="Ada Lovelace")
    assert "Forfait mensuel (Flex" in preview.inner_text()
    assert "390,00\xa0€" in preview.locator("tr.total").inner_text()
    audit(staff, "invoices-preview-fr-desktop")

    # Closing asks for the box to be ticked (the browser will not send the form without it).
    close = staff.get_by_role("button", name="Clôturer le mois et émettre les factures")
    staff.get_by_label(re.compile("^J'ai vérifié ce mois")).check()
    with staff.expect_navigation():
        close.click()
    assert staff.get_by_role("status").inner_text() == (
        "Le mois est clôturé\xa0: ses factures sont émises."
    )
    row = staff.locator("table.ledger tbody tr", has_text="Ada Lovelace")
    number = row.locator("td").nth(0).inner_text()
    total = row.locator("td").nth(2).inner_text()
    assert number == f"lyon-{MONTH}-0001"
    assert total == "390,00\xa0€"
    audit(staff, "invoices-closed-fr-desktop")

    # Her invoice as a PDF, in French (she reads French).
    with staff.expect_download() as download:
        staff.get_by_role("link", name=f"Télécharger {number}").click()
    saved = Path(download.value.path())
    assert saved.read_bytes().startswith(b"%PDF")
    text = pdf_text(saved)
    assert f"Facture N° {number}" in text
    assert "Total TTC (EUR) 390,00 €" in text
    assert "Jours au-delà du forfait" in text

    # The same page on a phone, after the close.
    staff_phone = browse("phone", locale="fr-FR")
    sign_in(staff_phone, site, MANAGER)
    staff_phone.goto(site + month)
    fits(staff_phone)
    audit(staff_phone, "invoices-closed-fr-phone")

    return number, total


def member_finds_the_invoice(site: str, browse, audit, number: str, total: str) -> None:
    """Ada's part: the same invoice, the days behind it, the evidence, her data."""
    # Ada, on her phone: the same invoice, its days and the evidence behind them.
    page = browse("phone", locale="fr-FR")
    sign_in(page, site, ADA)
    page.goto(site + "/my/invoices")
    mine = page.locator("table.ledger tbody tr", has_text=number)
    assert mine.locator("td").nth(2).inner_text() == total
    fits(page)
    audit(page, "my-invoices-fr-phone")
    with page.expect_navigation():
        page.get_by_role("link", name=number, exact=True).click()
    assert page.inner_text("h1") == f"Facture {number}"
    assert total in page.locator("dl.facts").inner_text()
    fits(page)
    audit(page, "my-invoice-fr-phone")
    with page.expect_navigation():
        page.get_by_role("link", name=re.compile("^Voir les justificatifs")).click()
    days = page.locator("ol.usage-days > li")
    assert days.count() == 3
    first = days.nth(0).inner_text()
    assert "Badge à 08:57 à Front door" in first
    assert "Bureau d3 occupé 09:02\u201312:40" in first
    assert "(à vous par votre badge au bureau)" in first
    fits(page)
    audit(page, "my-usage-fr-phone")

    # Her data, as one file to keep.
    page.goto(site + "/my/data")
    audit(page, "my-data-fr-phone")
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger mes données (JSON)").click()
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert [invoice["number"] for invoice in data["invoices"]] == [number]
    assert "password_hash" not in data["people"][0]

    # The usage page at desktop size too.
    desk = browse("desktop", locale="fr-FR")
    sign_in(desk, site, ADA)
    desk.goto(site + f"/my/usage?month={MONTH}")
    audit(desk, "my-usage-fr-desktop")
