"""The REST API through FastAPI's TestClient, on real SQLite and PostgreSQL databases.

The app's own ports (CommandSender, RegistryListener) are recording implementations:
what reaches MQTT from them is tested with the real broker elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Lockdown, Unlock, badge_token
from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import ApiKeyRow, AuditRow, BadgeRow, DoorRow
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

T0 = datetime(2030, 3, 11, 9, 0, tzinfo=UTC)
UID = "04A224B2C35E80"


@dataclass
class Api:
    client: TestClient
    sessions: sessionmaker[Session]
    recorder: RecordingPorts
    ids: dict[str, int]
    secrets: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def call(self, who: str, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.auth(who), **kwargs)


@pytest.fixture
def api(db_url):
    """A migrated database with a site (zone, two desks, an agent, a door), two members
    and an admin key, behind the app."""
    run_migrations(db_url)
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
        zone = registry.create_zone(s, site_id=site.id, name="open space")
        agent = registry.create_agent(s, site_id=site.id, slug="pi-1")
        d1 = registry.create_desk(s, zone_id=zone.id, slug="d1", agent_id=agent.id)
        d2 = registry.create_desk(s, zone_id=zone.id, slug="d2")
        door = registry.create_door(s, site_id=site.id, slug="front", agent_id=agent.id)
        ada = registry.create_member(s, name="Ada", email="ada@example.org")
        bob = registry.create_member(s, name="Bob", email="bob@example.org")
        _, admin = registry.create_api_key(s, role=Role.ADMIN, name="root")
        _, member = registry.create_api_key(s, role=Role.MEMBER, name="ada", member_id=ada.id)
        ids = {
            "site": site.id,
            "zone": zone.id,
            "agent": agent.id,
            "d1": d1.id,
            "d2": d2.id,
            "door": door.id,
            "ada": ada.id,
            "bob": bob.id,
        }
    recorder = RecordingPorts()
    app = create_app(sessions=sessions, commands=recorder, listener=recorder)
    with TestClient(app) as client:
        yield Api(client, sessions, recorder, ids, {"admin": admin, "ada": member})
    engine.dispose()


def _booking(api: Api, start: datetime, hours: float = 1, **extra: Any) -> dict[str, Any]:
    return {
        "site_id": api.ids["site"],
        "desk_id": api.ids["d1"],
        "member_id": api.ids["ada"],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=hours)).isoformat(),
        **extra,
    }


class TestHealth:
    """GET /healthz answers without a key."""

    def test_ok(self, api):
        response = api.client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestOpenApi:
    """The OpenAPI document declares the bearer scheme and every route's error answers."""

    def test_security_and_errors(self, api):
        spec = api.client.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["ApiKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
        }
        booking = spec["paths"]["/bookings"]["post"]
        assert {"401", "403", "404", "409", "422", "201"} <= set(booking["responses"])
        assert booking["security"] == [{"ApiKey": []}]
        assert "security" not in spec["paths"]["/healthz"]["get"]


class TestSites:
    """Sites and their holidays round-trip; bad input is a 4xx saying why."""

    def test_round_trip(self, api):
        created = api.call(
            "admin", "POST", "/sites", json={"slug": "paris", "name": "Paris", "timezone": "UTC"}
        )
        assert created.status_code == 201, created.text
        site = created.json()
        assert api.call("admin", "GET", f"/sites/{site['id']}").json() == site
        patched = api.call(
            "admin", "PATCH", f"/sites/{site['id']}", json={"timezone": "Europe/Paris"}
        )
        assert patched.json()["timezone"] == "Europe/Paris"
        assert patched.json()["name"] == "Paris"
        assert "paris" in api.recorder.changed
        page = api.call("admin", "GET", "/sites", params={"limit": 1, "offset": 1}).json()
        assert page["total"] == 2
        assert [s["slug"] for s in page["data"]] == ["paris"]
        assert api.call("admin", "DELETE", f"/sites/{site['id']}").status_code == 204
        assert api.call("admin", "GET", f"/sites/{site['id']}").status_code == 404

    def test_refusals(self, api):
        bad_tz = api.call(
            "admin", "POST", "/sites", json={"slug": "x", "name": "X", "timezone": "Mars/Base"}
        )
        assert bad_tz.status_code == 422
        assert "Mars/Base" in bad_tz.json()["detail"]
        dup = api.call(
            "admin", "POST", "/sites", json={"slug": "lyon", "name": "L", "timezone": "UTC"}
        )
        assert dup.status_code == 409
        assert "already exists" in dup.json()["detail"]
        bad_slug = api.call(
            "admin", "POST", "/sites", json={"slug": "a/b", "name": "X", "timezone": "UTC"}
        )
        assert bad_slug.status_code == 422
        assert bad_slug.json()["errors"][0]["loc"] == ["body", "slug"]
        in_use = api.call("admin", "DELETE", f"/sites/{api.ids['site']}")
        assert in_use.status_code == 409

    def test_holidays(self, api):
        url = f"/sites/{api.ids['site']}/holidays"
        added = api.call("admin", "POST", url, json={"day": "2030-05-01", "name": "May Day"})
        assert added.status_code == 201
        assert api.recorder.changed == ["lyon"]
        assert api.call("admin", "POST", url, json={"day": "2030-05-01"}).status_code == 409
        assert api.call("admin", "GET", url).json()["data"] == [
            {"site_id": api.ids["site"], "day": "2030-05-01", "name": "May Day"}
        ]
        assert api.call("admin", "DELETE", f"{url}/2030-05-01").status_code == 204
        assert api.call("admin", "DELETE", f"{url}/2030-05-01").status_code == 404


class TestFloor:
    """Zones, desks, agents and doors round-trip, within their site."""

    def test_round_trip(self, api):
        site = api.ids["site"]
        zone = api.call("admin", "POST", f"/sites/{site}/zones", json={"name": "room"}).json()
        agent = api.call("admin", "POST", f"/sites/{site}/agents", json={"slug": "pi-2"}).json()
        desk = api.call(
            "admin",
            "POST",
            f"/sites/{site}/desks",
            json={"zone_id": zone["id"], "slug": "d9", "agent_id": agent["id"], "x": 1, "y": 2},
        ).json()
        assert desk["site_id"] == site
        moved = api.call("admin", "PATCH", f"/desks/{desk['id']}", json={"agent_id": None, "x": 5})
        assert moved.json() | {"agent_id": None, "x": 5} == moved.json()
        assert moved.json()["y"] == 2
        door = api.call(
            "admin", "POST", f"/sites/{site}/doors", json={"slug": "back", "agent_id": agent["id"]}
        ).json()
        assert door["locked_down"] is False
        renamed = api.call("admin", "PATCH", f"/doors/{door['id']}", json={"name": "Back door"})
        assert renamed.json()["name"] == "Back door"
        assert renamed.json()["agent_id"] == agent["id"]
        zones = api.call("admin", "GET", f"/sites/{site}/zones").json()
        assert [z["name"] for z in zones["data"]] == ["open space", "room"]
        desks = api.call("admin", "GET", f"/sites/{site}/desks", params={"zone_id": zone["id"]})
        assert [d["slug"] for d in desks.json()["data"]] == ["d9"]
        assert api.call("admin", "DELETE", f"/agents/{agent['id']}").status_code == 204
        assert api.call("admin", "GET", f"/doors/{door['id']}").json()["agent_id"] is None
        for url in (f"/desks/{desk['id']}", f"/doors/{door['id']}", f"/zones/{zone['id']}"):
            assert api.call("admin", "DELETE", url).status_code == 204

    def test_desk_in_another_sites_zone(self, api):
        other = api.call(
            "admin", "POST", "/sites", json={"slug": "paris", "name": "P", "timezone": "UTC"}
        ).json()
        response = api.call(
            "admin",
            "POST",
            f"/sites/{other['id']}/desks",
            json={"zone_id": api.ids["zone"], "slug": "d1"},
        )
        assert response.status_code == 422
        assert "not at site" in response.json()["detail"]


class TestMembersPlansMemberships:
    """Members, plans and memberships round-trip; plan changes tell the listener."""

    def test_round_trip(self, api):
        member = api.call(
            "admin", "POST", "/members", json={"name": "Cy", "email": "Cy@Example.org"}
        ).json()
        assert member["email"] == "cy@example.org"
        off = api.call("admin", "PATCH", f"/members/{member['id']}", json={"active": False})
        assert off.json()["active"] is False
        assert api.recorder.changed == ["lyon"]
        plan = api.call(
            "admin",
            "POST",
            "/plans",
            json={
                "name": "Flex",
                "site_ids": [api.ids["site"]],
                "schedule": {"kind": "custom", "days": {"tue": ["13:00-18:00", "08:00-12:00"]}},
            },
        ).json()
        assert plan["schedule"]["days"]["tue"] == ["08:00-12:00", "13:00-18:00"]
        patched = api.call(
            "admin", "PATCH", f"/plans/{plan['id']}", json={"schedule": {"kind": "24/7"}}
        )
        assert patched.json()["schedule"] == {"kind": "24/7"}
        assert patched.json()["site_ids"] == [api.ids["site"]]
        membership = api.call(
            "admin",
            "POST",
            "/memberships",
            json={"member_id": member["id"], "plan_id": plan["id"], "starts_at": T0.isoformat()},
        ).json()
        assert membership["ends_at"] is None
        ended = api.call(
            "admin",
            "PATCH",
            f"/memberships/{membership['id']}",
            json={"ends_at": (T0 + timedelta(days=30)).isoformat()},
        )
        assert ended.json()["ends_at"] == "2030-04-10T09:00:00Z"
        in_use = api.call("admin", "DELETE", f"/plans/{plan['id']}")
        assert in_use.status_code == 409
        assert api.recorder.changed.count("lyon") == 5

    def test_bad_schedule(self, api):
        response = api.call(
            "admin",
            "POST",
            "/plans",
            json={"name": "x", "schedule": {"kind": "custom", "days": {"mon": ["18:00-08:00"]}}},
        )
        assert response.status_code == 422
        assert "ends before it starts" in response.json()["detail"]


class TestBadges:
    """Enrolment keeps only the token: the UID is never echoed; revocation is final."""

    def test_enrol_disable_revoke(self, api):
        url = f"/members/{api.ids['ada']}/badges"
        enrolled = api.call(
            "admin", "POST", url, json={"site_id": api.ids["site"], "uid": UID, "label": "blue"}
        )
        assert enrolled.status_code == 201, enrolled.text
        assert UID.lower() not in enrolled.text.lower()
        badge = enrolled.json()
        assert set(badge) == {"id", "member_id", "key_id", "status", "label", "created_at"}
        assert api.recorder.changed == ["lyon"]
        with transaction(api.sessions) as s:
            stored = s.get(BadgeRow, badge["id"])
            assert stored is not None
            key = registry.site_key_of(s, api.ids["site"])
            assert stored.token == badge_token(key.key, bytes.fromhex(UID))
        listed = api.call("admin", "GET", url)
        assert UID.lower() not in listed.text.lower()
        again = api.call("admin", "POST", url, json={"site_id": api.ids["site"], "uid": UID})
        assert again.status_code == 409
        for status in ("disabled", "active", "revoked"):
            changed = api.call("admin", "PATCH", f"/badges/{badge['id']}", json={"status": status})
            assert changed.json()["status"] == status
        back = api.call("admin", "PATCH", f"/badges/{badge['id']}", json={"status": "active"})
        assert back.status_code == 409
        assert "revoked" in back.json()["detail"]

    def test_bad_uid(self, api):
        response = api.call(
            "admin",
            "POST",
            f"/members/{api.ids['ada']}/badges",
            json={"site_id": api.ids["site"], "uid": "not-hex"},
        )
        assert response.status_code == 422
        assert "not-hex" not in response.json()["detail"]


class TestBookings:
    """Bookings are created, listed and cancelled; an overlap is a 409 that says so."""

    def test_create_conflict_cancel(self, api):
        with transaction(api.sessions) as s:  # Ada may book at Lyon that day
            registry.add_day_pass(s, member_id=api.ids["ada"], site_id=api.ids["site"],
                                  day=T0.date())  # fmt: skip
        created = api.call("ada", "POST", "/bookings", json=_booking(api, T0, grace_before=10))
        assert created.status_code == 201, created.text
        booking = created.json()
        assert booking["status"] == "booked"
        assert booking["member_id"] == api.ids["ada"]
        assert api.recorder.changed == ["lyon"]
        clash = api.call(
            "admin", "POST", "/bookings", json=_booking(api, T0 + timedelta(minutes=30))
        )
        assert clash.status_code == 409
        assert "already booked" in clash.json()["detail"]
        touching = api.call(
            "admin", "POST", "/bookings", json=_booking(api, T0 + timedelta(hours=1))
        )
        assert touching.status_code == 201
        mine = api.call("ada", "GET", "/bookings").json()
        assert [b["id"] for b in mine["data"]] == [booking["id"], touching.json()["id"]]
        cancelled = api.call("ada", "POST", f"/bookings/{booking['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        assert api.recorder.changed == ["lyon"] * 3
        assert api.call("ada", "POST", f"/bookings/{booking['id']}/cancel").status_code == 409
        rebooked = api.call("admin", "POST", "/bookings", json=_booking(api, T0))
        assert rebooked.status_code == 201
        booked = api.call("admin", "GET", "/bookings", params={"status": "booked"}).json()
        assert booked["total"] == 2

    def test_bad_times(self, api):
        naive = _booking(api, T0) | {"starts_at": "2030-03-11T09:00:00"}
        response = api.call("ada", "POST", "/bookings", json=naive)
        assert response.status_code == 422
        assert "starts_at" in response.json()["detail"]
        backwards = api.call("ada", "POST", "/bookings", json=_booking(api, T0, hours=-1))
        assert backwards.status_code == 422
        assert "end after it starts" in backwards.json()["detail"]
        both = api.call("ada", "POST", "/bookings", json=_booking(api, T0, zone_id=api.ids["zone"]))
        assert both.status_code == 422
        far = _booking(api, T0) | {"ends_at": "9999-12-31T23:59:59-12:00"}
        assert api.call("ada", "POST", "/bookings", json=far).status_code == 422

    def test_admin_must_say_whose(self, api):
        body = _booking(api, T0)
        del body["member_id"]
        response = api.call("admin", "POST", "/bookings", json=body)
        assert response.status_code == 422
        assert "member_id" in response.json()["detail"]


class TestDayPasses:
    """Day passes round-trip and tell the listener."""

    def test_round_trip(self, api):
        body = {"member_id": api.ids["ada"], "site_id": api.ids["site"], "day": "2030-03-12"}
        created = api.call("admin", "POST", "/day-passes", json=body)
        assert created.status_code == 201
        assert api.call("admin", "POST", "/day-passes", json=body).status_code == 409
        assert api.call("ada", "GET", "/day-passes").json()["data"] == [created.json()]
        url = f"/day-passes/{created.json()['id']}"
        assert api.call("admin", "DELETE", url).status_code == 204
        assert api.recorder.changed == ["lyon", "lyon"]


class TestRemoteUnlock:
    """A remote unlock is audited with who asked, then sent to the door's agent."""

    def test_unlock(self, api):
        response = api.call("admin", "POST", f"/doors/{api.ids['door']}/unlock", json={"ms": 3000})
        assert response.status_code == 202, response.text
        assert api.recorder.commands == [("lyon", "pi-1", Unlock(door="front", ms=3000))]
        with transaction(api.sessions) as s:
            row = s.get(AuditRow, response.json()["audit_id"])
            assert row is not None
            assert (row.kind, row.source, row.site, row.agent, row.door) == (
                "remote_unlock",
                "api",
                "lyon",
                "pi-1",
                "front",
            )
            assert row.actor is not None
            assert "root" in row.actor

    def test_refusals(self, api):
        assert api.call("admin", "POST", "/doors/999/unlock", json={}).status_code == 404
        too_long = api.call("admin", "POST", f"/doors/{api.ids['door']}/unlock", json={"ms": 10**9})
        assert too_long.status_code == 422
        door = api.call(
            "admin", "POST", f"/sites/{api.ids['site']}/doors", json={"slug": "no-agent"}
        ).json()
        orphan = api.call("admin", "POST", f"/doors/{door['id']}/unlock", json={})
        assert orphan.status_code == 409
        assert "no agent" in orphan.json()["detail"]
        api.call("admin", "POST", f"/doors/{api.ids['door']}/lockdown")
        locked = api.call("admin", "POST", f"/doors/{api.ids['door']}/unlock", json={})
        assert locked.status_code == 409
        assert "locked down" in locked.json()["detail"]
        assert not any(isinstance(c, Unlock) for _, _, c in api.recorder.commands)


class TestLockdown:
    """Lockdown of a door or a site: registry, command to the agents, listener, audit."""

    def test_door(self, api):
        url = f"/doors/{api.ids['door']}/lockdown"
        locked = api.call("admin", "POST", url)
        assert locked.status_code == 200
        assert locked.json()["door_ids"] == [api.ids["door"]]
        assert api.recorder.commands == [("lyon", "pi-1", Lockdown(door="front", active=True))]
        assert api.recorder.changed == ["lyon"]
        with transaction(api.sessions) as s:
            door = s.get(DoorRow, api.ids["door"])
            assert door is not None
            assert door.locked_down
        api.recorder.clear()
        lifted = api.call("admin", "DELETE", url)
        assert lifted.json()["locked_down"] is False
        assert api.recorder.commands == [("lyon", "pi-1", Lockdown(door="front", active=False))]
        assert api.call("admin", "GET", f"/doors/{api.ids['door']}").json()["locked_down"] is False

    def test_site(self, api):
        site = api.ids["site"]
        agent2 = api.call("admin", "POST", f"/sites/{site}/agents", json={"slug": "pi-2"}).json()
        api.call(
            "admin", "POST", f"/sites/{site}/doors", json={"slug": "b", "agent_id": agent2["id"]}
        )
        api.call("admin", "POST", f"/sites/{site}/doors", json={"slug": "c"})
        api.recorder.clear()
        locked = api.call("admin", "POST", f"/sites/{site}/lockdown")
        assert len(locked.json()["door_ids"]) == 3
        assert api.recorder.commands == [
            ("lyon", "pi-1", Lockdown(door=None, active=True)),
            ("lyon", "pi-2", Lockdown(door=None, active=True)),
        ]
        assert api.recorder.changed == ["lyon"]
        doors = api.call("admin", "GET", f"/sites/{site}/doors").json()["data"]
        assert all(d["locked_down"] for d in doors)
        audit = api.call("admin", "GET", "/audit").json()["data"]
        assert (audit[0]["kind"], audit[0]["door"], audit[0]["reason"]) == (
            "lockdown",
            None,
            "lockdown",
        )
        api.call("admin", "DELETE", f"/sites/{site}/lockdown")
        doors = api.call("admin", "GET", f"/sites/{site}/doors").json()["data"]
        assert not any(d["locked_down"] for d in doors)


class TestAudit:
    """Audit queries filter by door, member and time, page by cursor; verify walks the chain."""

    def test_query_and_verify(self, api):
        door = api.ids["door"]
        for _ in range(3):
            api.call("admin", "POST", f"/doors/{door}/unlock", json={"ms": 100})
        first = api.call("admin", "GET", "/audit", params={"door": door, "limit": 2}).json()
        assert [r["id"] for r in first["data"]] == [3, 2]
        rest = api.call(
            "admin", "GET", "/audit", params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
        assert [r["id"] for r in rest["data"]] == [1]
        assert rest["next_cursor"] is None
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert api.call("admin", "GET", "/audit", params={"since": later}).json()["data"] == []
        assert api.call("admin", "GET", "/audit", params={"member": api.ids["ada"]}).json() == {
            "data": [],
            "next_cursor": None,
        }
        verified = api.call("admin", "GET", "/audit/verify").json()
        assert verified == {"ok": True, "checked": 3, "bad_id": None, "problem": None}

    def test_naive_since(self, api):
        response = api.call("admin", "GET", "/audit", params={"since": "2030-01-01T00:00:00"})
        assert response.status_code == 422
        assert "since" in response.json()["detail"]


class TestApiKeys:
    """An admin makes keys whose secret is shown once, lists them without it, revokes them."""

    def test_round_trip(self, api):
        created = api.call(
            "admin",
            "POST",
            "/api-keys",
            json={"name": "desk", "role": "manager", "site_id": api.ids["site"]},
        )
        assert created.status_code == 201
        key = created.json()
        secret = key.pop("secret")
        assert secret.startswith("ruche_")
        api.secrets["desk"] = secret
        me = api.call("desk", "GET", "/me").json()
        assert me == key
        listed = api.call("admin", "GET", "/api-keys")
        assert secret not in listed.text
        assert listed.json()["total"] == 3
        with transaction(api.sessions) as s:
            assert all(secret not in row.hash for row in s.scalars(select(ApiKeyRow)))
        revoked = api.call("admin", "DELETE", f"/api-keys/{key['id']}")
        assert revoked.json()["revoked_at"] is not None
        assert api.call("desk", "GET", "/me").status_code == 401

    def test_scope_rules(self, api):
        response = api.call("admin", "POST", "/api-keys", json={"role": "manager"})
        assert response.status_code == 422
        assert "needs a site" in response.json()["detail"]


class TestBadInput:
    """Malformed requests get a 4xx with a message, never a 500."""

    @pytest.mark.parametrize(
        ("method", "url", "body"),
        [
            ("GET", "/sites/99999999999999999999", None),
            ("GET", "/sites/0", None),
            ("GET", "/sites?limit=0", None),
            ("GET", "/bookings?since=yesterday", None),
            ("POST", "/members", {"name": "X", "email": "x@example.org", "extra": 1}),
            ("POST", "/members", {"name": "X\x00", "email": "x@example.org"}),
            ("POST", "/members", {"name": "X" * 201, "email": "x@example.org"}),
            ("POST", "/members", {"name": "X", "email": "not-an-email"}),
            ("POST", "/sites", {"slug": "s", "name": "S", "timezone": "Europe"}),
            ("PATCH", "/sites/1", {"no_show_minutes": -1}),
        ],
    )
    def test_4xx(self, api, method, url, body):
        response = api.call("admin", method, url, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"]

    def test_not_json(self, api):
        response = api.client.post(
            "/members",
            content=b"{not json",
            headers=api.auth("admin") | {"Content-Type": "application/json"},
        )
        assert response.status_code == 422
