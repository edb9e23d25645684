"""`ruche billing close`, `export` and `pdf` in a real process, on a SQLite file.

The period is last month by the real clock (the command closes with the time it is
run), so it has always ended.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from ruche.server import billing, registry
from ruche.server.billing.pricing import Period
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.models import InvoiceRow, VisitRow

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
_THIS_MONTH = (datetime.now(UTC) - timedelta(days=1)).date().replace(day=1)
PERIOD = Period.of(_THIS_MONTH - timedelta(days=1))
NEXT = Period.of(_THIS_MONTH + timedelta(days=40))


def ruche(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruche", *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def at(day: int, hour: int) -> datetime:
    return datetime(PERIOD.year, PERIOD.month, day, hour, tzinfo=PARIS)


@pytest.fixture
def db(tmp_path):
    """Lyon with Ada on a day-pass plan (15.00 a day, 20 % tax): three days used; and Dan,
    who came in once without any membership."""
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    with transaction(make_sessions(engine)) as s:
        site = registry.create_site(s, slug="lyon", name="Ruche Lyon", timezone="Europe/Paris")
        s.flush()
        billing.set_site_billing(s, site.id, currency="EUR", rate="0.2")
        plan = registry.create_plan(s, name="Pass", site_ids=[site.id], schedule={"kind": "24/7"})
        ada = registry.create_member(s, name="Ada", email="ada@example.org")
        dan = registry.create_member(s, name="Dan", email="dan@example.org")
        s.flush()
        registry.create_membership(s, member_id=ada.id, plan_id=plan.id, starts_at=at(1, 0))
        billing.add_price_version(s, site_id=site.id, plan_id=plan.id,
                                  valid_from=date(2000, 1, 1),
                                  terms={"kind": "day_pass", "price": "15.00"},
                                  now=datetime(2000, 1, 1, tzinfo=UTC))  # fmt: skip
        for seq, (who, day) in enumerate(((ada, 3), (ada, 4), (ada, 10), (dan, 5)), start=1):
            s.add(VisitRow(site="lyon", member_id=who.id, entry_agent="pi", entry_seq=seq,
                           entries=1, start=at(day, 9), end=at(day, 12),
                           closed_by="exit"))  # fmt: skip
    yield url
    engine.dispose()


def _invoices(url: str) -> int:
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as s:
            return s.scalar(select(func.count()).select_from(InvoiceRow)) or 0
    finally:
        engine.dispose()


def test_close_then_close_again(db):
    done = ruche("billing", "close", "--period", str(PERIOD), "--database", db)
    assert done.returncode == 0, done.stderr
    number = f"lyon-{PERIOD}-0001"
    assert done.stdout.splitlines() == [
        f"lyon: closed {PERIOD}, 1 invoices issued (total 54.00 EUR)",
        f"  {number}  Ada <ada@example.org>  54.00 EUR",
    ]
    assert "not billed: member 2 at lyon (no membership at lyon)" in done.stderr

    again = ruche("billing", "close", "--period", str(PERIOD), "--site", "lyon", "--database", db)
    assert again.returncode == 0, again.stderr
    assert f"lyon: {PERIOD} was already closed on " in again.stdout
    assert "1 invoices, nothing new" in again.stdout
    assert _invoices(db) == 1


def test_export_and_pdf(db, tmp_path):
    assert ruche("billing", "close", "--period", str(PERIOD), "--database", db).returncode == 0

    out = tmp_path / "lines.csv"
    done = ruche("billing", "export", "--period", str(PERIOD), "--out", str(out), "--database", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 3 lines of 1 invoices for {PERIOD} to {out}"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["description"][:19], r["net"], r["tax"], r["total"]) for r in rows] == [
        (f"Day pass {PERIOD}-03", "15.00", "3.00", "18.00"),
        (f"Day pass {PERIOD}-04", "15.00", "3.00", "18.00"),
        (f"Day pass {PERIOD}-10", "15.00", "3.00", "18.00"),
    ]
    assert {r["member_email"] for r in rows} == {"ada@example.org"}

    as_json = tmp_path / "lines.json"
    done = ruche("billing", "export", "--period", str(PERIOD), "--format", "json",
                 "--out", str(as_json), "--database", db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    exported = json.loads(as_json.read_text())
    assert [i["total"] for i in exported["invoices"]] == ["54.00"]
    assert len(exported["lines"]) == 3

    pdf = tmp_path / "ada.pdf"
    done = ruche("billing", "pdf", "--invoice", f"lyon-{PERIOD}-0001", "--out", str(pdf),
                 "--database", db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"wrote invoice lyon-{PERIOD}-0001 (Ada, {PERIOD}, 54.00 EUR) to {pdf}"
    )
    assert pdf.read_bytes().startswith(b"%PDF-")


def test_refusals_are_one_line_each(db, tmp_path):
    for args, message in (
        (("close", "--period", "2026/11"), "a period is written YYYY-MM, such as '2026-11'"),
        (("close", "--period", "2026-13"), "no such month 2026-13"),
        (("close", "--period", str(NEXT)), f"{NEXT} has not ended at lyon yet"),
        (("close", "--period", str(PERIOD), "--site", "nice"), "Site 'nice' does not exist"),
        (("pdf", "--invoice", "nope", "--out", str(tmp_path / "x.pdf")),
         "Invoice 'nope' does not exist"),
    ):  # fmt: skip
        done = ruche("billing", *args, "--database", db)
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith("ruche: error: ")
        assert message in done.stderr
        assert "Traceback" not in done.stderr
    assert _invoices(db) == 0
