"""`ruche bench web`: how long the server takes to answer each page, on a site the size
of a big coworking space (200 desks, 2,000 members, a day of bookings, a month of door
decisions in the audit log).

Starts its own Mosquitto and `ruche server run` (SQLite in a temporary directory unless
`database` names one, free ports), seeds the site, signs in as its manager and as one
member through the sign-in form, then asks for each page the navigation offers them (and
a few pages reached from those: a member's page, the desk QR sheet, a desk's check-in)
`requests` times, one after the other, over keep-alive HTTP on loopback. A page's time
is from sending the request to reading the last byte of the answer: the server's time
plus loopback's (tens of microseconds). Pages the server does not serve (404) are listed
as such rather than timed.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.passwords import generate_password
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.api.pages.rendering import NAVIGATION
from ruche.server.people import accounts as people
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.sim.bench.access import start_server
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import wait_for_port
from ruche.sim.testing.sites import SiteBuilder

SITE = "bench-web"
PASSWORD = "bench web password"  # noqa: S105 - the bench's throwaway accounts
MANAGER = "manager@bench.example"
MEMBER = "m7@bench.example"
TARGET_P95_MS = 100.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class PageTimes:
    path: str
    role: str
    status: int
    """The answer's HTTP status (the last one that was not 200, if any); 0: no answer."""
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    bytes: int


@dataclass
class WebBenchResult:
    desks: int
    members: int
    requests_per_page: int
    pages: list[PageTimes] = field(default_factory=list)
    not_served: list[str] = field(default_factory=list)
    target_p95_ms: float = TARGET_P95_MS

    @property
    def slowest_p95_ms(self) -> float:
        return max((p.p95_ms for p in self.pages if p.p95_ms is not None), default=0.0)

    @property
    def failed(self) -> list[str]:
        """Pages over the target, or that did not answer 200."""
        return [f"{p.role} {p.path}" for p in self.pages
                if p.status != 200 or p.p95_ms is None
                or p.p95_ms >= self.target_p95_ms]  # fmt: skip

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "slowest_p95_ms": self.slowest_p95_ms, "failed": self.failed}


def seed(url: str, *, desks: int, members: int) -> dict[str, int]:
    """The site: `desks` desks in zones of 20, four doors, `members` members (half on a
    24/7 plan, half booking-only) with badges and sign-in accounts, today's bookings for
    three desks in four, and 30 days of door decisions (about 20 per member a month)."""
    now = datetime.now(UTC)
    digest = hash_password(PASSWORD)  # argon2 once: every account shares it
    with transaction(make_sessions(make_engine(url))) as session:
        site = SiteBuilder(session, SITE, name="Bench web", opening_hours={"kind": "24/7"})
        site.agent("agent-0", doors=[f"door-{i}" for i in range(4)])
        for i in range(desks):
            site.desk(f"desk-{i}", agent="agent-0", zone=f"Zone {i // 20 + 1}",
                      x=i % 10, y=(i % 20) // 10)  # fmt: skip
        resident = site.plan("resident")
        flex = site.plan("flex", booking_only=True)
        manager = people.create_person(session, email=MANAGER, role=Role.MANAGER,
                                       site_id=site.id, now=now)  # fmt: skip
        manager.password_hash = digest
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        ids = list(site.desks.values())
        for i in range(members):
            email = f"m{i}@bench.example"
            member = site.member(f"Member {i}", email, plan=flex if i % 2 else resident,
                                 badge=i.to_bytes(8, "big"))  # fmt: skip
            person = people.create_person(session, email=email, role=Role.MEMBER,
                                          member_id=member, now=now)  # fmt: skip
            person.password_hash = digest
            if i < desks * 3 // 4:
                registry.book(session, member_id=member, site_id=site.id, desk_id=ids[i],
                              starts_at=day_start + timedelta(hours=8),
                              ends_at=day_start + timedelta(hours=18))  # fmt: skip
        session.flush()
        entries = [
            audit.AuditEntry(
                kind=AuditKind.DECISION,
                source=AuditSource.ONLINE,
                site=SITE,
                decided_at=now - timedelta(minutes=n),
                received_at=now - timedelta(minutes=n),
                agent="agent-0",
                door=f"door-{n % 4}",
                token=site.tokens.get(f"m{n % members}@bench.example"),
                member_id=site.members.get(f"m{n % members}@bench.example"),
                allowed=n % 9 != 0,
                reason="schedule" if n % 9 else "no_booking",
                agent_seq=n + 1,
            )
            for n in range(members * 20)
        ]
        for start in range(0, len(entries), 1000):
            audit.append_many(session, entries[start : start + 1000])
        return {"site": site.id, "member": site.members[MEMBER], "desk": ids[0]}


class BenchError(RuntimeError):
    """The bench could not run (the server did not start, signing in failed): says why."""


def run_web_bench(
    *,
    desks: int = 200,
    members: int = 2000,
    requests: int = 40,
    database: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> WebBenchResult:
    """Start a broker and a server, seed, sign in, time every page; `progress` hears
    what it is doing, a line at a time."""
    say = progress or (lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="ruche-bench-web-") as tmp:
        workdir = Path(tmp)
        url = database or f"sqlite:///{workdir / 'ruche.db'}"
        run_migrations(url)
        say(f"seeding {desks} desks, {members} members, their bookings and a month of "
            "door decisions...")  # fmt: skip
        ids = seed(url, desks=desks, members=members)
        say("starting a broker and ruche server run...")
        accounts = Accounts(server=ServerAccount(password=generate_password()),
                            agents=(AgentAccount(site=SITE, id="agent-0",
                                                 password=generate_password()),))  # fmt: skip
        result = WebBenchResult(desks=desks, members=members, requests_per_page=requests)
        with MosquittoProcess.generate(workdir / "broker", accounts) as broker:
            server, port = start_server(workdir, url, broker, accounts)
            try:
                if not wait_for_port("127.0.0.1", port, timeout=60):
                    raise BenchError("the server did not answer within 60 s")
                base = f"http://127.0.0.1:{port}"
                pages = {
                    "manager": [*_navigation(Role.MANAGER), f"/manage/members/{ids['member']}",
                                "/manage/desks/qr"],
                    "member": _navigation(Role.MEMBER),
                }  # fmt: skip
                for role, email in (("manager", MANAGER), ("member", MEMBER)):
                    with _signed_in(base, email) as client:
                        for path in pages[role]:
                            say(f"{role} {path}: {requests} requests")
                            timed = _time_page(client, path, role, requests)
                            if timed is None:
                                result.not_served.append(f"{role} {path}")
                            else:
                                result.pages.append(timed)
                            if path == "/manage/desks/qr":  # a desk's code: its check-in page
                                pages["member"] += _checkin_paths(client.get(path).text)[:1]
            finally:
                server.terminate()
                server.wait(30)
        return result


_CHECKIN = re.compile(r"(/my/checkin/[A-Za-z0-9_.~-]+)")


def _checkin_paths(sheet: str) -> list[str]:
    """The check-in pages the desks' codes on a QR sheet point to."""
    return _CHECKIN.findall(sheet)


def _navigation(role: Role) -> list[str]:
    return [item.path for item in NAVIGATION if role in item.roles and item.path != "/docs"]


@contextlib.contextmanager
def _signed_in(base: str, email: str) -> Iterator[httpx.Client]:
    """A client with the session of `email`, signed in through the form as a browser is."""
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        form = client.get("/signin")
        found = _CSRF.search(form.text)
        if found is None:
            raise BenchError("the sign-in page has no CSRF token")
        done = client.post("/signin", data={"email": email, "password": PASSWORD,
                                            "csrf_token": found.group(1), "next": "/"})  # fmt: skip
        if done.status_code != 303 or "error=" in done.headers.get("location", ""):
            raise BenchError(f"signing in as {email} failed: {done.status_code} "
                             f"{done.headers.get('location')}")  # fmt: skip
        yield client


def _time_page(client: httpx.Client, path: str, role: str, requests: int) -> PageTimes | None:
    """`path` timed `requests` times; None if the server does not serve it. A page that
    fails (a 500 drops the connection) counts as status 0 and is not timed further."""
    try:
        for _ in range(3):  # warm up: templates compiled, caches filled, connection open
            first = client.get(path)
    except httpx.HTTPError:
        return PageTimes(path=path, role=role, status=0, p50_ms=None, p95_ms=None,
                         max_ms=None, bytes=0)  # fmt: skip
    if first.status_code == 404:
        return None
    times: list[float] = []
    status, size = first.status_code, len(first.content)
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        size = len(response.content)  # read to the last byte
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            status = response.status_code
    times.sort()
    return PageTimes(path=path, role=role, status=status, p50_ms=round(_quantile(times, 0.5), 2),
                     p95_ms=round(_quantile(times, 0.95), 2), max_ms=round(times[-1], 2),
                     bytes=size)  # fmt: skip


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of `ordered` (ascending)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
