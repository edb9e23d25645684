"""Booked-vs-used views and utilisation through the API, on SQLite and PostgreSQL.

Events are stored as the ingestion stores them (`ingest.event_row` of the decoded wire
message), `refresh_site` derives sessions, visits and no-shows, then the app answers.
Every figure is checked against a hand computation. The day is Monday 2026-11-23 in
Paris (UTC+1): business hours 08:00-19:00 local, 11 hours.

| desk (zone) | occupied (local) | booked (local) |
|---|---|---|
| d1 (open space) | 09:00-11:30 | 10:00-12:00, Ada |
| d2 (open space) | - | 09:00-12:00, Bob: a no-show |
| d3 (room) | 11:00-11:20, 18:00-20:00 | - |

Ada is in from 08:55 to 12:00 and Eve from 09:30 to 10:30 (door taps): two people at most.
On Tuesday d3's sensor is stuck occupied from 06:00 to 19:30 (13.5 hours: suspect).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from ruche.broker import Presence, PresenceState, Tap, Topic, badge_token, decode, encode
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.api.app import create_app
from ruche.server.occupancy.batch import event_row
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.server.storage.models import StoredEventRow
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
MONDAY = date(2026, 11, 23)
TUESDAY = date(2026, 11, 24)
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
H = 3600.0
MONDAY_URL = "from=2026-11-23&to=2026-11-24"


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS).astimezone(UTC)


@dataclass
class Api:
    client: TestClient
    ids: dict[str, int]
    secrets: dict[str, str]

    def get(self, who: str, url: str) -> Any:
        return self.client.get(url, headers={"Authorization": f"Bearer {self.secrets[who]}"})

    def ok(self, who: str, url: str) -> Any:
        response = self.get(who, url)
        assert response.status_code == 200, response.text
        return response.json()

    def utilisation(self, query: str, who: str = "manager") -> Any:
        return self.ok(who, f"/sites/{self.ids['site']}/utilisation?{query}")


def _store_events(sessions: Any) -> None:
    seqs = itertools.count(1)
    rows: list[StoredEventRow] = []

    def store(topic: Topic, payload: Any) -> None:
        raw = encode(payload)
        rows.append(StoredEventRow(**event_row(decode(str(topic), raw), local(TUESDAY, 23), raw)))

    def sit(desk: str, start: datetime, end: datetime) -> None:
        topic = Topic.presence("lyon", "pi-1", desk)
        occupied = PresenceState.OCCUPIED
        store(topic, Presence(seq=next(seqs), ts=start, mono=1.0, state=occupied))
        beat = start + timedelta(minutes=5)
        while beat < end:
            store(topic, Presence(seq=next(seqs), ts=beat, mono=1.0, state=occupied,
                                  heartbeat=True))  # fmt: skip
            beat += timedelta(minutes=5)
        store(topic, Presence(seq=next(seqs), ts=end, mono=1.0, state=PresenceState.VACANT))

    def tap(who: str, when: datetime, reader: str) -> int:
        seq = next(seqs)
        token = badge_token(KEY, who.encode())
        tap = Tap(seq=seq, ts=when, mono=1.0, token=token, reader=reader, request_id="r")
        store(Topic.tap("lyon", "pi-1", "front"), tap)
        return seq

    sit("d1", local(MONDAY, 9), local(MONDAY, 11, 30))
    sit("d3", local(MONDAY, 11), local(MONDAY, 11, 20))
    sit("d3", local(MONDAY, 18), local(MONDAY, 20))
    sit("d3", local(TUESDAY, 6), local(TUESDAY, 19, 30))
    taps = [
        ("ada", local(MONDAY, 8, 55), "in"),
        ("eve", local(MONDAY, 9, 30), "in"),
        ("eve", local(MONDAY, 10, 30), "out"),
        ("ada", local(MONDAY, 12), "out"),
    ]
    decided = [(who, when, tap(who, when, reader)) for who, when, reader in taps]
    with transaction(sessions) as s:
        s.add_all(rows)
        for _, when, seq in decided:
            audit.append(s, audit.AuditEntry(
                kind=AuditKind.DECISION, source=AuditSource.ONLINE, site="lyon", agent="pi-1",
                door="front", allowed=True, reason="schedule", decided_at=when,
                received_at=when, agent_seq=seq))  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def api(request, tmp_path) -> Iterator[Api]:
    url = (
        f"sqlite:///{tmp_path / 'ruche.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        key = registry.create_site_key(s, KEY)
        site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris",
                                    key_id=key.id)  # fmt: skip
        other = registry.create_site(s, slug="nice", name="Nice", timezone="Europe/Paris")
        agent = registry.create_agent(s, site_id=site.id, slug="pi-1")
        registry.create_door(s, site_id=site.id, slug="front", agent_id=agent.id)
        open_space = registry.create_zone(s, site_id=site.id, name="open space")
        room = registry.create_zone(s, site_id=site.id, name="room")
        s.flush()
        desks = {
            slug: registry.create_desk(s, zone_id=zone.id, slug=slug, agent_id=agent.id)
            for slug, zone in (("d1", open_space), ("d2", open_space), ("d3", room))
        }
        members = {}
        for name in ("ada", "bob", "eve"):
            members[name] = registry.create_member(s, name=name, email=f"{name}@example.org")
            s.flush()
            registry.enrol_badge(s, members[name].id, key, name.encode())
        s.flush()
        for name in ("ada", "bob"):  # so that they may book on Monday
            registry.add_day_pass(s, member_id=members[name].id, site_id=site.id, day=MONDAY)
        ada_booking = registry.book(s, member_id=members["ada"].id, site_id=site.id,
                                    desk_id=desks["d1"].id, starts_at=local(MONDAY, 10),
                                    ends_at=local(MONDAY, 12))  # fmt: skip
        bob_booking = registry.book(s, member_id=members["bob"].id, site_id=site.id,
                                    desk_id=desks["d2"].id, starts_at=local(MONDAY, 9),
                                    ends_at=local(MONDAY, 12))  # fmt: skip
        cancelled = registry.book(s, member_id=members["bob"].id, site_id=site.id,
                                  desk_id=desks["d3"].id, starts_at=local(MONDAY, 14),
                                  ends_at=local(MONDAY, 16))  # fmt: skip
        registry.cancel_booking(s, cancelled.id)
        _, admin = registry.create_api_key(s, role=Role.ADMIN, name="root")
        _, manager = registry.create_api_key(s, role=Role.MANAGER, name="m", site_id=site.id)
        _, stranger = registry.create_api_key(s, role=Role.MANAGER, name="n", site_id=other.id)
        _, member = registry.create_api_key(s, role=Role.MEMBER, name="a",
                                            member_id=members["ada"].id)  # fmt: skip
        s.flush()
        ids = {
            "site": site.id,
            "open space": open_space.id,
            "room": room.id,
            **{slug: desk.id for slug, desk in desks.items()},
            "ada_booking": ada_booking.id,
            "bob_booking": bob_booking.id,
        }
    _store_events(sessions)
    with transaction(sessions) as s:
        result = refresh_site(s, "lyon", now=local(TUESDAY, 23))
    assert result.released == (ids["bob_booking"],)
    assert result.visits == 2
    recorder = RecordingPorts()
    app = create_app(sessions=sessions, commands=recorder, listener=recorder)
    secrets = {"admin": admin, "manager": manager, "stranger": stranger, "member": member}
    with TestClient(app) as client:
        yield Api(client, ids, secrets)
    engine.dispose()


def figures(**expected: float | int | None) -> dict[str, float | int | None]:
    """A full set of figures: zero unless given, shares computed."""
    out: dict[str, float | int | None] = dict.fromkeys(
        ["opening_s", "capacity_s", "occupied_s", "after_hours_s", "suspect_s", "booked_s",
         "booked_used_s", "used_unbooked_s"], 0.0)  # fmt: skip
    out |= {"peak_desks": 0, "peak_people": None, "bookings": 0, "no_shows": 0}
    out |= expected
    capacity, bookings = out["capacity_s"], out["bookings"]
    out["occupied_share"] = out["occupied_s"] / capacity if capacity else None  # type: ignore[operator]
    out["no_show_rate"] = out["no_shows"] / bookings if bookings else None  # type: ignore[operator]
    return out


def approx(found: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: found[k] for k in expected} == pytest.approx(expected)


class TestUtilisation:
    """The figures of a hand-computed day, per site, zone, desk and hour."""

    def test_site_day(self, api):
        body = api.utilisation(MONDAY_URL)
        assert (body["bucket"], body["by"], body["timezone"]) == ("day", "site", "Europe/Paris")
        assert body["opening_hours"] == {"kind": "business_hours"}
        [series] = body["series"]
        assert (series["level"], series["id"], series["key"]) == ("site", api.ids["site"], "lyon")
        [bucket] = series["buckets"]
        assert bucket["start"] == "2026-11-23T00:00:00+01:00"
        assert bucket["end"] == "2026-11-24T00:00:00+01:00"
        expected = figures(
            desks=3,
            opening_s=11 * H,
            capacity_s=33 * H,
            occupied_s=2.5 * H + H / 3 + H,  # d1 09:00-11:30, d3 11:00-11:20 and 18:00-19:00
            after_hours_s=H,  # d3 19:00-20:00
            booked_s=5 * H,  # d1 10-12, d2 9-12; the cancelled one is not counted
            booked_used_s=1.5 * H,  # d1 10:00-11:30
            used_unbooked_s=H + H / 3 + H,  # d1 09-10, d3 both
            peak_desks=2,  # d1 and d3 at 11:00
            peak_people=2,  # Ada and Eve 09:30-10:30
            bookings=2,
            no_shows=1,
        )
        approx(bucket, expected)
        approx(series["total"], expected)

    def test_zones(self, api):
        body = api.utilisation(f"{MONDAY_URL}&by=zone")
        by_key = {s["key"]: s for s in body["series"]}
        assert {k: s["id"] for k, s in by_key.items()} == {
            "open space": api.ids["open space"],
            "room": api.ids["room"],
        }
        open_space = figures(
            desks=2, opening_s=11 * H, capacity_s=22 * H, occupied_s=2.5 * H, booked_s=5 * H,
            booked_used_s=1.5 * H, used_unbooked_s=H, peak_desks=1, bookings=2, no_shows=1,
        )  # fmt: skip
        approx(by_key["open space"]["total"], open_space)
        approx(by_key["room"]["total"], figures(
            desks=1, opening_s=11 * H, capacity_s=11 * H, occupied_s=H + H / 3,
            after_hours_s=H, used_unbooked_s=H + H / 3, peak_desks=1))  # fmt: skip

    def test_desk_hours(self, api):
        body = api.utilisation(f"{MONDAY_URL}&by=desk&bucket=hour")
        assert [s["key"] for s in body["series"]] == ["d1", "d2", "d3"]
        d1 = body["series"][0]
        assert d1["id"] == api.ids["d1"]
        assert len(d1["buckets"]) == 24
        occupied = [b["occupied_s"] for b in d1["buckets"]]
        assert occupied[8:13] == [0.0, H, H, H / 2, 0.0]
        opening = [b["opening_s"] for b in d1["buckets"]]
        assert opening == [0.0] * 8 + [H] * 11 + [0.0] * 5
        assert d1["buckets"][10]["booked_used_s"] == H
        assert d1["buckets"][10]["bookings"] == 1

    def test_suspect_sessions_apart(self, api):
        body = api.utilisation("from=2026-11-24&to=2026-11-25")
        total = body["series"][0]["total"]
        expected = figures(
            desks=3, opening_s=11 * H, capacity_s=33 * H, suspect_s=11 * H, peak_people=0
        )
        approx(total, expected)
        assert total["occupied_share"] == 0.0

    def test_weeks_and_dst_hours(self, api):
        weeks = api.utilisation("from=2026-11-18&to=2026-11-30&bucket=week")
        starts = [b["start"] for b in weeks["series"][0]["buckets"]]
        assert starts == ["2026-11-18T00:00:00+01:00", "2026-11-23T00:00:00+01:00"]
        assert weeks["series"][0]["buckets"][1]["occupied_s"] == pytest.approx(3.5 * H + H / 3)
        dst = api.utilisation("from=2026-03-29&to=2026-03-30&bucket=hour")
        buckets = dst["series"][0]["buckets"]
        assert len(buckets) == 23
        assert [b["start"][11:] for b in buckets[1:3]] == ["01:00:00+01:00", "03:00:00+02:00"]

    def test_opening_hours_of_the_site(self, api):
        site = f"/sites/{api.ids['site']}"
        hours = {"kind": "custom", "days": {"mon": ["09:00-12:00"]}}
        auth = {"Authorization": f"Bearer {api.secrets['manager']}"}
        response = api.client.patch(site, json={"opening_hours": hours}, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["opening_hours"] == hours
        body = api.utilisation(MONDAY_URL)
        assert body["opening_hours"] == hours
        approx(body["series"][0]["total"], {
            "opening_s": 3 * H, "capacity_s": 9 * H,
            "occupied_s": 2.5 * H + H / 3, "after_hours_s": 2 * H,
        })  # fmt: skip

    def test_a_new_site_open_24_7(self, api):
        body = {"slug": "lille", "name": "Lille", "timezone": "Europe/Paris",
                "opening_hours": {"kind": "24/7"}}  # fmt: skip
        auth = {"Authorization": f"Bearer {api.secrets['admin']}"}
        response = api.client.post("/sites", json=body, headers=auth)
        assert response.status_code == 201, response.text
        site = response.json()
        assert site["opening_hours"] == {"kind": "24/7"}
        url = f"/sites/{site['id']}/utilisation?{MONDAY_URL}"
        [series] = api.ok("admin", url)["series"]
        approx(series["total"], figures(desks=0, opening_s=24 * H, peak_people=0))


class TestBookedVersusUsed:
    """Bookings nobody used, and desk time nobody booked."""

    def test_unused_bookings(self, api):
        body = api.ok("manager", f"/sites/{api.ids['site']}/bookings/unused?{MONDAY_URL}")
        assert [b["id"] for b in body["data"]] == [api.ids["bob_booking"]]
        assert body["data"][0]["status"] == "no_show"
        empty = api.ok(
            "admin", f"/sites/{api.ids['site']}/bookings/unused?from=2026-11-24&to=2026-11-25"
        )
        assert empty["data"] == []  # fmt: skip

    def test_unbooked_sessions(self, api):
        body = api.ok("manager", f"/sites/{api.ids['site']}/desk-sessions/unbooked?{MONDAY_URL}")
        found = [(s["desk"], s["start"], s["end"], s["suspect"]) for s in body["data"]]
        assert found == [
            ("d3", "2026-11-23T10:00:00Z", "2026-11-23T10:20:00Z", False),
            ("d3", "2026-11-23T17:00:00Z", "2026-11-23T19:00:00Z", False),
        ]
        assert body["total"] == 2


ENDPOINTS = [
    f"utilisation?{MONDAY_URL}",
    f"bookings/unused?{MONDAY_URL}",
    f"desk-sessions/unbooked?{MONDAY_URL}",
]


class TestRoles:
    """A site's manager and admins read the reports; members and other sites' managers do not."""

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_who_may_read(self, api, endpoint):
        url = f"/sites/{api.ids['site']}/{endpoint}"
        assert api.get("manager", url).status_code == 200
        assert api.get("admin", url).status_code == 200
        for who in ("member", "stranger"):
            response = api.get(who, url)
            assert response.status_code == 403
            assert response.json()["detail"]
        assert api.client.get(url).status_code == 401
        assert api.get("admin", f"/sites/9999/{endpoint}").status_code == 404


class TestBadInput:
    """Bad ranges and buckets are a 422 saying what was wrong."""

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("from=2026-11-23&to=2026-11-23", "must be before"),
            ("from=2026-11-24&to=2026-11-23", "must be before"),
            ("from=2026-11-01&to=2026-12-05&bucket=hour", "too long a range for hour buckets"),
            ("from=2026-01-01&to=2027-06-01", "too long a range for day buckets"),
            (f"{MONDAY_URL}&bucket=month", "bucket"),
            (f"{MONDAY_URL}&by=floor", "by"),
            ("to=2026-11-24", "from"),
            ("from=2026-11-31&to=2026-12-01", "from"),
        ],
    )
    def test_utilisation(self, api, query, says):
        response = api.get("manager", f"/sites/{api.ids['site']}/utilisation?{query}")
        assert response.status_code == 422
        assert says in response.json()["detail"]

    @pytest.mark.parametrize("endpoint", ["bookings/unused", "desk-sessions/unbooked"])
    def test_lists(self, api, endpoint):
        url = f"/sites/{api.ids['site']}/{endpoint}"
        response = api.get("manager", f"{url}?from=2026-11-24&to=2026-11-23")
        assert response.status_code == 422
        assert "must be before" in response.json()["detail"]
        response = api.get("manager", f"{url}?from=2026-01-01&to=2027-06-01")
        assert response.status_code == 422
        assert "at most 366 days" in response.json()["detail"]

    def test_bad_opening_hours(self, api):
        response = api.client.patch(
            f"/sites/{api.ids['site']}",
            json={"opening_hours": {"kind": "custom", "days": {"mon": ["19:00-08:00"]}}},
            headers={"Authorization": f"Bearer {api.secrets['admin']}"},
        )
        assert response.status_code == 422
        assert "ends before it starts" in response.json()["detail"]
