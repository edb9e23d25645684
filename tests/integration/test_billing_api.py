"""Billing through the REST API, on a real SQLite database: prices, closing, invoices,
exports, PDFs and usage, and who may see what.

Two sites, Lyon and Paris, each with a member on a pay-as-you-go plan (0.05 a minute,
at least 5.00 a day, 20 % tax): Ada at Lyon, Bob at Paris. Keys for an admin, Lyon's
manager, Ada and Bob. The month billed, March 2025, ended long ago.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskSessionRow, VisitRow
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
PERIOD = "2025-03"
GO = {"kind": "pay_as_you_go", "per_minute": "0.05", "minimum_charge": "5", "daily_cap": "30"}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=PARIS)


@dataclass
class World:
    client: TestClient
    ids: dict[str, int]
    secrets: dict[str, str]

    def call(self, who: str, method: str, url: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.secrets[who]}"}
        return self.client.request(method, url, headers=headers, **kwargs)

    def price(self, who: str, site: str, **body: Any) -> Any:
        body = {"plan_id": self.ids[f"{site}_plan"], "valid_from": "2025-01-01", "terms": GO} | body
        return self.call(who, "POST", f"/sites/{self.ids[site]}/price-versions", json=body)

    def close(self, who: str, **body: Any) -> Any:
        return self.call(who, "POST", "/billing/close", json={"period": PERIOD} | body)


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    ids: dict[str, int] = {}
    secrets: dict[str, str] = {}
    with transaction(sessions) as s:
        for site_name, who, seq in (("lyon", "ada", 1), ("paris", "bob", 2)):
            site = registry.create_site(s, slug=site_name, name=f"Ruche {site_name.title()}",
                                        timezone="Europe/Paris")  # fmt: skip
            plan = registry.create_plan(s, name=f"Go {site_name}", site_ids=[site.id],
                                        schedule={"kind": "24/7"})  # fmt: skip
            member = registry.create_member(s, name=who.title(), email=f"{who}@example.org")
            s.flush()
            registry.create_membership(s, member_id=member.id, plan_id=plan.id,
                                       starts_at=datetime(2025, 1, 1, tzinfo=UTC))  # fmt: skip
            s.add(VisitRow(site=site_name, member_id=member.id, entry_agent="pi",
                           entry_seq=seq, entries=1, start=at(10, 9), end=at(10, 12),
                           closed_by="exit"))  # fmt: skip
            ids |= {site_name: site.id, f"{site_name}_plan": plan.id, who: member.id}
        s.add(DeskSessionRow(site="lyon", agent="pi", desk="d1", opened_seq=7, start=at(11, 9),
                             end=at(11, 9, 40), closed_by="vacant", suspect=False, reason=None,
                             member_id=ids["ada"], attributed_by="badge",
                             booking_id=None))  # fmt: skip
        secrets["admin"] = registry.create_api_key(s, role=Role.ADMIN)[1]
        secrets["manager"] = registry.create_api_key(s, role=Role.MANAGER, site_id=ids["lyon"])[1]
        for who in ("ada", "bob"):
            secrets[who] = registry.create_api_key(s, role=Role.MEMBER, member_id=ids[who])[1]
    app = create_app(sessions=sessions, commands=RecordingPorts(), listener=RecordingPorts())
    with TestClient(app) as client:
        yield World(client, ids, secrets)
    engine.dispose()


@pytest.fixture
def closed(world):
    """Both sites priced, with 20 % tax, and March closed by the admin."""
    for site in ("lyon", "paris"):
        done = world.call("admin", "PUT", f"/sites/{world.ids[site]}/billing",
                          json={"currency": "EUR", "tax_rate": "0.2"})  # fmt: skip
        assert done.status_code == 200, done.text
        assert world.price("admin", site).status_code == 201
    done = world.close("admin")
    assert done.status_code == 200, done.text
    return world, {i["member_id"]: i for i in done.json()["invoices"]}


def _status(response: Any, code: int, detail: str = "") -> None:
    assert response.status_code == code, f"{response.status_code} {response.text}"
    if code >= 400:
        assert detail in response.json()["detail"]


class TestPrices:
    def test_a_manager_prices_their_site_only(self, world):
        done = world.price("manager", "lyon", label="Go 2025", tax_rate="0.1")
        _status(done, 201)
        assert done.json() | {"id": 0, "created_at": None} == {
            "id": 0, "plan_id": world.ids["lyon_plan"], "site_id": world.ids["lyon"],
            "label": "Go 2025", "valid_from": "2025-01-01",
            "terms": GO | {"monthly_cap": None}, "tax_rate": "0.1", "created_at": None,
        }  # fmt: skip
        _status(world.price("manager", "paris"), 403, "site")
        _status(world.price("ada", "lyon"), 403, "member")
        listed = world.call("manager", "GET", f"/sites/{world.ids['lyon']}/price-versions")
        assert [v["label"] for v in listed.json()["data"]] == ["Go 2025"]

    def test_bad_prices_are_422_or_409_saying_why(self, world):
        _status(world.price("admin", "lyon", terms=GO | {"per_minute": 0.05}), 422, "per_minute")
        _status(world.price("admin", "lyon", terms={"kind": "yearly"}), 422, "terms")
        _status(world.price("admin", "lyon", terms=GO | {"minimum_charge": "50"}), 422, "daily cap")
        _status(world.price("admin", "lyon", plan_id=world.ids["paris_plan"]), 422,
                "does not cover site lyon")  # fmt: skip
        _status(world.price("admin", "lyon", plan_id=999), 404, "Plan")
        _status(world.price("admin", "lyon"), 201)
        _status(world.price("admin", "lyon"), 409, "one version per day")

    def test_site_billing_settings(self, world):
        lyon = f"/sites/{world.ids['lyon']}/billing"
        assert world.call("manager", "GET", lyon).json() == {
            "site_id": world.ids["lyon"], "currency": "EUR", "tax_rate": "0",
            "closed_through": None,
        }  # fmt: skip
        _status(world.call("manager", "PUT", lyon, json={"currency": "CHF"}), 200)
        _status(world.call("manager", "PUT", lyon, json={"currency": "XYZ"}), 422, "XYZ")
        _status(world.call("ada", "GET", lyon), 403)
        assert world.price("manager", "lyon").status_code == 201
        _status(world.call("manager", "PUT", lyon, json={"currency": "EUR"}), 409, "fixed")


class TestClose:
    def test_roles_and_idempotence(self, world):
        for site in ("lyon", "paris"):
            assert world.price("admin", site).status_code == 201
        _status(world.close("ada"), 403)
        _status(world.close("manager", site_id=world.ids["paris"]), 403)

        done = world.close("manager")  # a manager's own site by default
        _status(done, 200)
        body = done.json()
        assert [(s["site"], s["issued_now"], s["invoices"]) for s in body["sites"]] == [
            ("lyon", True, 1)
        ]
        assert body["skipped"] == []
        again = world.close("admin")  # every site: Lyon's found, Paris's issued
        assert [(s["site"], s["issued_now"]) for s in again.json()["sites"]] == [
            ("lyon", False),
            ("paris", True),
        ]
        assert again.json()["invoices"][0] == body["invoices"][0]

    def test_bad_periods(self, world):
        _status(world.close("admin", period="2025-13"), 422, "no such month")
        _status(world.close("admin", period="March"), 422, "period")
        _status(world.close("admin", period="2999-12"), 422, "has not ended")


class TestInvoices:
    def test_a_member_sees_their_own_with_the_sessions_behind_each_line(self, closed):
        world, invoices = closed
        ada = invoices[world.ids["ada"]]
        mine = world.call("ada", "GET", "/invoices").json()
        assert [i["id"] for i in mine["data"]] == [ada["id"]]
        detail = world.call("ada", "GET", f"/invoices/{ada['id']}").json()
        assert [(x["description"], x["net"], x["sessions"]) for x in detail["lines"]] == [
            ("2025-03-10: 180 min", "9.00", ["visit:lyon/pi#1"]),
            ("2025-03-11: 40 min, minimum charge", "5.00", ["desk:lyon/pi/d1#7"]),
        ]
        assert (detail["subtotal"], detail["tax"], detail["total"]) == ("14.00", "2.80", "16.80")
        bob = invoices[world.ids["bob"]]
        _status(world.call("ada", "GET", f"/invoices/{bob['id']}"), 403)
        _status(world.call("ada", "GET", f"/invoices?member_id={world.ids['bob']}"), 403)
        _status(world.call("ada", "GET", "/invoices/999"), 404, "does not exist")

    def test_a_manager_sees_their_sites(self, closed):
        world, invoices = closed
        listed = world.call("manager", "GET", f"/invoices?period={PERIOD}").json()
        assert [i["member_id"] for i in listed["data"]] == [world.ids["ada"]]
        bob = invoices[world.ids["bob"]]
        _status(world.call("manager", "GET", f"/invoices/{bob['id']}"), 403)
        _status(world.call("manager", "GET", f"/invoices?site_id={world.ids['paris']}"), 403)
        assert len(world.call("admin", "GET", "/invoices").json()["data"]) == 2

    def test_pdf(self, closed):
        world, invoices = closed
        ada = invoices[world.ids["ada"]]
        done = world.call("ada", "GET", f"/invoices/{ada['id']}/pdf")
        _status(done, 200)
        assert done.headers["content-type"] == "application/pdf"
        assert done.content.startswith(b"%PDF-")
        assert f"invoice-{ada['number']}.pdf" in done.headers["content-disposition"]
        _status(world.call("bob", "GET", f"/invoices/{ada['id']}/pdf"), 403)


class TestExport:
    def test_csv_for_a_manager(self, closed):
        world, invoices = closed
        ada = invoices[world.ids["ada"]]
        done = world.call("manager", "GET", f"/billing/export?period={PERIOD}")
        _status(done, 200)
        assert done.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(done.text)))
        assert [
            (r["invoice_key"], r["member_id"], r["period"], r["description"], r["quantity"],
             r["unit_price"], r["net"], r["tax"], r["total"], r["currency"])
            for r in rows
        ] == [
            (ada["key"], str(world.ids["ada"]), PERIOD, "2025-03-10: 180 min", "180", "0.05",
             "9.00", "1.80", "10.80", "EUR"),
            (ada["key"], str(world.ids["ada"]), PERIOD, "2025-03-11: 40 min, minimum charge",
             "1", "5", "5.00", "1.00", "6.00", "EUR"),
        ]  # fmt: skip

    def test_json_for_an_admin_and_none_for_members(self, closed):
        world, _ = closed
        done = world.call("admin", "GET", f"/billing/export?period={PERIOD}&format=json")
        _status(done, 200)
        assert done.headers["content-type"] == "application/json"
        body = done.json()
        assert [(i["site"], i["total"]) for i in body["invoices"]] == [
            ("lyon", "16.80"),
            ("paris", "10.80"),
        ]
        assert [line["site"] for line in body["lines"]] == ["lyon", "lyon", "paris"]
        _status(world.call("ada", "GET", f"/billing/export?period={PERIOD}"), 403)
        _status(world.call("admin", "GET", "/billing/export?period=2025-3"), 422)
        _status(world.call("admin", "GET", f"/billing/export?period={PERIOD}&format=pdf"), 422)


class TestUsage:
    def test_a_member_reads_their_own_usage_per_day(self, world):
        done = world.call("ada", "GET", f"/billing/usage?period={PERIOD}")
        _status(done, 200)
        assert done.json()["sites"] == [
            {
                "site_id": world.ids["lyon"], "site": "lyon", "timezone": "Europe/Paris",
                "days": [
                    {"day": "2025-03-10", "minutes": 180, "first_presence": "2025-03-10T08:00:00Z",
                     "sessions": ["visit:lyon/pi#1"]},
                    {"day": "2025-03-11", "minutes": 40, "first_presence": "2025-03-11T08:00:00Z",
                     "sessions": ["desk:lyon/pi/d1#7"]},
                ],
                "held_back": [],
            }
        ]  # fmt: skip
        _status(world.call("ada", "GET", f"/billing/usage?period={PERIOD}&member_id="
                           f"{world.ids['bob']}"), 403)  # fmt: skip
        ada_usage = f"/billing/usage?period={PERIOD}&member_id={world.ids['ada']}"
        manager = world.call("manager", "GET", ada_usage)
        assert [d["minutes"] for d in manager.json()["sites"][0]["days"]] == [180, 40]
        _status(world.call("admin", "GET", f"/billing/usage?period={PERIOD}"), 422, "member_id")
