"""Role boundaries of the REST API, one test per boundary, on a real SQLite database.

Two sites (lyon, paris), each with an agent, a door and a desk; two members (ada, bob),
each with a booking at a different site and an audit row of their own; keys for an
admin, lyon's manager and ada.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ruche.server import registry
from ruche.server.access import audit
from ruche.server.access.audit import AuditEntry
from ruche.server.api.app import create_app
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

T0 = datetime(2030, 3, 11, 9, 0, tzinfo=UTC)


@dataclass
class World:
    client: TestClient
    recorder: RecordingPorts
    ids: dict[str, int]
    secrets: dict[str, str]

    def call(self, who: str, method: str, url: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.secrets[who]}"}
        return self.client.request(method, url, headers=headers, **kwargs)


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    ids: dict[str, int] = {}
    secrets: dict[str, str] = {}
    with transaction(sessions) as s:
        for name, tz in (("lyon", "Europe/Paris"), ("paris", "Europe/Paris")):
            site = registry.create_site(s, slug=name, name=name.title(), timezone=tz)
            zone = registry.create_zone(s, site_id=site.id, name="open space")
            agent = registry.create_agent(s, site_id=site.id, slug="pi")
            desk = registry.create_desk(s, zone_id=zone.id, slug="d1")
            door = registry.create_door(s, site_id=site.id, slug="front", agent_id=agent.id)
            ids |= {name: site.id, f"{name}_desk": desk.id, f"{name}_door": door.id}
        for name, site in (("ada", "lyon"), ("bob", "paris")):
            member = registry.create_member(s, name=name.title(), email=f"{name}@example.org")
            registry.add_day_pass(s, member_id=member.id, site_id=ids[site], day=T0.date())
            booking = registry.book(
                s,
                member_id=member.id,
                site_id=ids[site],
                desk_id=ids[f"{site}_desk"],
                starts_at=T0,
                ends_at=T0 + timedelta(hours=2),
            )
            audit.append(
                s,
                AuditEntry(
                    kind=AuditKind.DECISION,
                    source=AuditSource.ONLINE,
                    site=site,
                    agent="pi",
                    door="front",
                    member_id=member.id,
                    allowed=True,
                    reason="booking",
                    decided_at=T0,
                    received_at=T0,
                ),
            )
            ids |= {name: member.id, f"{name}_booking": booking.id}
        secrets["admin"] = registry.create_api_key(s, role=Role.ADMIN)[1]
        secrets["manager"] = registry.create_api_key(s, role=Role.MANAGER, site_id=ids["lyon"])[1]
        secrets["ada"] = registry.create_api_key(s, role=Role.MEMBER, member_id=ids["ada"])[1]
    recorder = RecordingPorts()
    app = create_app(sessions=sessions, commands=recorder, listener=recorder)
    with TestClient(app) as client:
        yield World(client, recorder, ids, secrets)
    engine.dispose()


def _forbidden(response: Any) -> None:
    assert response.status_code == 403, f"{response.status_code} {response.text}"
    assert response.json()["detail"]


class TestAuthentication:
    """No key, a bad key or a revoked key is a 401 that says what to send."""

    def test_no_key(self, world):
        response = world.client.get("/bookings")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["detail"]

    @pytest.mark.parametrize(
        "header",
        ["Bearer ruche_000000000000_nope", b"Bearer x\xe9", "Basic YWRhOmFkYQ==", "Bearer"],
    )
    def test_bad_key(self, world, header):
        response = world.client.get("/bookings", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json()["detail"]

    def test_revoked_key(self, world):
        me = world.call("ada", "GET", "/me").json()
        world.call("admin", "DELETE", f"/api-keys/{me['id']}")
        assert world.call("ada", "GET", "/me").status_code == 401


class TestMemberBoundary:
    """A member key reaches its own bookings, passes, profile and log, and nobody else's."""

    def test_own_data(self, world):
        mine = world.call("ada", "GET", "/bookings").json()
        assert [b["id"] for b in mine["data"]] == [world.ids["ada_booking"]]
        log = world.call("ada", "GET", "/audit").json()["data"]
        assert [row["member_id"] for row in log] == [world.ids["ada"]]
        passes = world.call("ada", "GET", "/day-passes").json()["data"]
        assert [p["member_id"] for p in passes] == [world.ids["ada"]]
        assert world.call("ada", "GET", f"/members/{world.ids['ada']}").status_code == 200
        day_pass = {"member_id": world.ids["ada"], "site_id": world.ids["paris"],
                    "day": (T0 + timedelta(days=1)).date().isoformat()}  # fmt: skip
        assert world.call("admin", "POST", "/day-passes", json=day_pass).status_code == 201
        booked = world.call(
            "ada",
            "POST",
            "/bookings",
            json={
                "site_id": world.ids["paris"],
                "desk_id": world.ids["paris_desk"],
                "starts_at": (T0 + timedelta(days=1)).isoformat(),
                "ends_at": (T0 + timedelta(days=1, hours=1)).isoformat(),
            },
        )
        assert booked.status_code == 201
        assert booked.json()["member_id"] == world.ids["ada"]
        cancel = world.call("ada", "POST", f"/bookings/{booked.json()['id']}/cancel")
        assert cancel.status_code == 200

    def test_cannot_read_another_members_data(self, world):
        bob = world.ids["bob"]
        for url, params in (
            ("/bookings", {"member_id": bob}),
            (f"/bookings/{world.ids['bob_booking']}", {}),
            ("/day-passes", {"member_id": bob}),
            ("/audit", {"member": bob}),
            (f"/members/{bob}", {}),
            (f"/members/{bob}/badges", {}),
            ("/memberships", {"member_id": bob}),
        ):
            _forbidden(world.call("ada", "GET", url, params=params))

    def test_cannot_change_another_members_bookings(self, world):
        _forbidden(world.call("ada", "POST", f"/bookings/{world.ids['bob_booking']}/cancel"))
        body = {
            "member_id": world.ids["bob"],
            "site_id": world.ids["lyon"],
            "desk_id": world.ids["lyon_desk"],
            "starts_at": (T0 + timedelta(days=2)).isoformat(),
            "ends_at": (T0 + timedelta(days=2, hours=1)).isoformat(),
        }
        _forbidden(world.call("ada", "POST", "/bookings", json=body))

    def test_cannot_unlock_or_lock_down(self, world):
        door = world.ids["lyon_door"]
        _forbidden(world.call("ada", "POST", f"/doors/{door}/unlock", json={"ms": 1000}))
        _forbidden(world.call("ada", "POST", f"/doors/{door}/lockdown"))
        _forbidden(world.call("ada", "POST", f"/sites/{world.ids['lyon']}/lockdown"))
        assert world.recorder.commands == []

    def test_cannot_operate(self, world):
        lyon = world.ids["lyon"]
        _forbidden(world.call("ada", "GET", f"/sites/{lyon}/doors"))
        _forbidden(world.call("ada", "POST", f"/sites/{lyon}/zones", json={"name": "x"}))
        day_pass = {"member_id": world.ids["ada"], "site_id": lyon, "day": "2030-04-01"}
        _forbidden(world.call("ada", "POST", "/day-passes", json=day_pass))
        badge = {"site_id": lyon, "uid": "04a1b2c3"}
        _forbidden(world.call("ada", "POST", f"/members/{world.ids['ada']}/badges", json=badge))
        _forbidden(world.call("ada", "PATCH", f"/members/{world.ids['ada']}", json={"name": "A"}))

    def test_reads_the_floor_directory(self, world):
        sites = world.call("ada", "GET", "/sites").json()
        assert sites["total"] == 2
        desks = world.call("ada", "GET", f"/sites/{world.ids['paris']}/desks").json()
        assert [d["slug"] for d in desks["data"]] == ["d1"]


class TestManagerBoundary:
    """A manager of lyon runs lyon and cannot read or change paris."""

    def test_runs_own_site(self, world):
        lyon, door = world.ids["lyon"], world.ids["lyon_door"]
        bookings = world.call("manager", "GET", "/bookings").json()
        assert [b["site_id"] for b in bookings["data"]] == [lyon]
        assert world.call("manager", "GET", f"/sites/{lyon}/doors").status_code == 200
        unlocked = world.call("manager", "POST", f"/doors/{door}/unlock", json={"ms": 500})
        assert unlocked.status_code == 202
        log = world.call("manager", "GET", "/audit").json()["data"]
        assert {row["site"] for row in log} == {"lyon"}
        assert world.call("manager", "POST", f"/sites/{lyon}/lockdown").status_code == 200
        assert [site for site, _, _ in world.recorder.commands] == ["lyon", "lyon"]
        sites = world.call("manager", "GET", "/sites").json()["data"]
        assert [s["id"] for s in sites] == [lyon]

    def test_cannot_read_other_sites_bookings(self, world):
        paris = world.ids["paris"]
        _forbidden(world.call("manager", "GET", "/bookings", params={"site_id": paris}))
        _forbidden(world.call("manager", "GET", f"/bookings/{world.ids['bob_booking']}"))
        _forbidden(world.call("manager", "POST", f"/bookings/{world.ids['bob_booking']}/cancel"))
        _forbidden(world.call("manager", "GET", "/day-passes", params={"site_id": paris}))

    def test_cannot_touch_other_sites_doors(self, world):
        door = world.ids["paris_door"]
        _forbidden(world.call("manager", "GET", f"/doors/{door}"))
        _forbidden(world.call("manager", "PATCH", f"/doors/{door}", json={"name": "x"}))
        _forbidden(world.call("manager", "GET", f"/sites/{world.ids['paris']}/doors"))
        _forbidden(world.call("manager", "POST", f"/doors/{door}/unlock", json={"ms": 500}))
        _forbidden(world.call("manager", "POST", f"/doors/{door}/lockdown"))
        _forbidden(world.call("manager", "DELETE", f"/doors/{door}/lockdown"))
        _forbidden(world.call("manager", "POST", f"/sites/{world.ids['paris']}/lockdown"))
        assert world.recorder.commands == []
        assert world.recorder.changed == []

    def test_cannot_read_other_sites_audit(self, world):
        _forbidden(world.call("manager", "GET", "/audit", params={"site": world.ids["paris"]}))
        _forbidden(world.call("manager", "GET", "/audit", params={"door": world.ids["paris_door"]}))

    def test_cannot_book_at_other_site(self, world):
        body = {
            "member_id": world.ids["ada"],
            "site_id": world.ids["paris"],
            "desk_id": world.ids["paris_desk"],
            "starts_at": (T0 + timedelta(days=3)).isoformat(),
            "ends_at": (T0 + timedelta(days=3, hours=1)).isoformat(),
        }
        _forbidden(world.call("manager", "POST", "/bookings", json=body))

    def test_admin_only(self, world):
        """A manager (and a member) cannot make keys or sites, nor verify the log."""
        site = {"slug": "nice", "name": "Nice", "timezone": "Europe/Paris"}
        key = {"role": "admin"}
        for who in ("manager", "ada"):
            _forbidden(world.call(who, "POST", "/api-keys", json=key))
            _forbidden(world.call(who, "GET", "/api-keys"))
            _forbidden(world.call(who, "POST", "/sites", json=site))
            _forbidden(world.call(who, "GET", "/audit/verify"))
            _forbidden(
                world.call(who, "POST", "/plans", json={"name": "x", "schedule": {"kind": "24/7"}})
            )
