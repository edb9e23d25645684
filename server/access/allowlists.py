"""The allow-list publisher: each agent's retained list of who may open its doors, and when.

```python
publisher = AllowlistPublisher(sessions, MqttOptions(...))
publisher.start()                 # every agent's list of every site, then kept fresh
publisher.site_changed("lyon")    # RegistryListener: republished within a second
publisher.stop()
```

When the server does not answer a tap within its timeout, the agent decides from its
cached allow-list (`ruche.edge.allowlist`). Per agent, the list holds:

- `entries`: every active badge under the site's key whose member may come in over the
  next `horizon` (24 hours) at one of the agent's doors, with the windows
  `access.allowlist_windows` computes (schedule, bookings with grace, day passes, within
  each membership), so the agent's offline answer is the server's for any instant of the
  horizon (anti-passback aside). An entry's `doors` is None (all the agent's doors)
  unless some of them are locked down: then it names the others. Badges with no window
  are left out (offline: `unknown_badge`).
- `revoked`: every badge under the site's key that is revoked or disabled, so the agent
  names the refusal (`revoked`) and a revocation wins even over an expired list. Kept
  whole rather than "recent" ones: the registry does not record when a status changed.
- `version`: the publication time in milliseconds since the epoch, and always more than
  the last version this process published for the agent: increasing across restarts
  and across several server processes without a stored counter (clocks permitting).
- `issued` now, `expires` now + `horizon`.

Lists are published retained, QoS 1, after `encode_for` has checked the 4 MiB limit (a
list over it is refused and logged, never sent). They are republished:

- for every site when the publisher starts, then every `refresh` (15 minutes) so the
  windows roll forward long before they run out;
- for a site, `debounce` (150 ms) after `site_changed(site)`: the changes of a burst
  (an API call that touches several rows, a bulk import) coalesce into one publication,
  and the delay runs from the first change, so a list goes out within a second of any
  change even while changes keep coming.

Building is pure (`build_allowlist`); reading uses `facts.load_site_snapshot`, one set
of queries per site for all its agents.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import AllowEntry, Allowlist, Channel, ContractError, Topic, Window, encode_for
from ruche.server.access.facts import AllowlistInputs, Holder, load_site_snapshot
from ruche.server.access.rules import allowlist_windows
from ruche.server.errors import NotFound
from ruche.server.messaging.connection import MqttOptions, ServerConnection
from ruche.server.registry.schedule import Interval, merge_intervals
from ruche.server.storage.models import SiteRow

__all__ = [
    "DEFAULT_HORIZON",
    "AllowlistPublisher",
    "PublisherStats",
    "build_allowlist",
    "entry_windows",
]

log = logging.getLogger(__name__)

DEFAULT_HORIZON = timedelta(hours=24)


# --- the pure part -----------------------------------------------------------------------


def entry_windows(
    holder: Holder, inputs: AllowlistInputs, start: datetime, end: datetime
) -> list[Interval]:
    """When `holder` may open the doors of `inputs` within `[start, end)`, in UTC."""
    windows: list[Interval] = []
    for facts in holder.facts_over(start, end):
        windows += allowlist_windows(facts, inputs.site, inputs.doors, start, end)
    return merge_intervals(windows, start, end)


def build_allowlist(
    inputs: AllowlistInputs, *, version: int, now: datetime, horizon: timedelta = DEFAULT_HORIZON
) -> Allowlist:
    """One agent's allow-list over `[now, now + horizon)` (the module docstring has the rules)."""
    end = now + horizon
    open_doors = tuple(d.id for d in inputs.doors if not d.locked_down)
    doors = None if len(open_doors) == len(inputs.doors) else open_doors
    entries = []
    for holder in inputs.holders:
        windows = entry_windows(holder, inputs, now, end)
        if windows:
            entries.append(
                AllowEntry(
                    token=holder.badge.token,
                    windows=tuple(Window(start=s, end=e) for s, e in windows),
                    doors=doors,
                )
            )
    return Allowlist(
        version=version,
        issued=now,
        expires=end,
        entries=tuple(sorted(entries, key=lambda e: e.token)),
        revoked=inputs.revoked,
    )


# --- the shell ---------------------------------------------------------------------------


@dataclass
class PublisherStats:
    published: int = 0
    refused: int = 0
    """Lists not sent: over the size limit."""
    failures: int = 0
    """Sites whose lists could not be built (database errors)."""
    last_versions: dict[tuple[str, str], int] = field(default_factory=dict)


class AllowlistPublisher:
    """Publishes every agent's retained allow-list; a `RegistryListener`.

    Keyword arguments: `horizon` (24 h) the span a list covers; `refresh` (15 min) how
    often every site is republished; `debounce` (0.15 s) how long a change waits for the
    ones that follow it; `clock` the server's wall clock, timezone-aware.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        horizon: timedelta = DEFAULT_HORIZON,
        refresh: timedelta = timedelta(minutes=15),
        debounce: float = 0.15,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if debounce >= 1.0:
            raise ValueError("debounce must stay well under the one-second republish promise")
        self.sessions = sessions
        self.stats = PublisherStats()
        self._horizon = horizon
        self._refresh = refresh.total_seconds()
        self._debounce = debounce
        self._clock = clock
        self._due: dict[str, float] = {}
        self._all_due = 0.0
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.connection = ServerConnection(mqtt_options, name="ruche-allowlists")

    def start(self, timeout: float = 10.0) -> None:
        """Connect, then publish every site's lists and keep them fresh in a worker thread."""
        self.connection.start(timeout)
        self._stopping = False
        self._all_due = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="allowlists", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.connection.stop()

    def site_changed(self, site: str) -> None:
        """`RegistryListener`: republish the site's lists after `debounce` seconds."""
        with self._lock:
            self._due.setdefault(site, time.monotonic() + self._debounce)
            self._lock.notify_all()

    def publish_site(self, site: str) -> dict[str, int]:
        """Build and publish the lists of every agent of `site` now; their versions by agent."""
        now = self._clock()
        try:
            with self.sessions.begin() as session:
                snapshot = load_site_snapshot(session, site, now, now + self._horizon)
        except NotFound:
            log.info("site %s is gone: no allow-lists to publish", site)
            return {}
        published: dict[str, int] = {}
        for agent in snapshot.agents:
            version = self._next_version(site, agent, now)
            allowlist = build_allowlist(
                snapshot.allowlist_inputs(agent), version=version, now=now, horizon=self._horizon
            )
            try:
                data = encode_for(Channel.ALLOWLIST, allowlist)
            except ContractError as exc:
                self.stats.refused += 1
                log.error("allow-list of %s/%s not published: %s", site, agent, exc)  # noqa: TRY400
                continue
            self.connection.publish(str(Topic.allowlist(site, agent)), data, retain=True)
            self.stats.published += 1
            self.stats.last_versions[(site, agent)] = version
            published[agent] = version
            log.info("allow-list v%d of %s/%s: %d entries, %d revoked", version, site, agent,
                     len(allowlist.entries), len(allowlist.revoked))  # fmt: skip
        return published

    def _next_version(self, site: str, agent: str, now: datetime) -> int:
        last = self.stats.last_versions.get((site, agent), -1)
        return max(last + 1, int(now.timestamp() * 1000))

    def _sites(self) -> list[str]:
        with self.sessions.begin() as session:
            return list(session.scalars(select(SiteRow.slug).order_by(SiteRow.slug)))

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    due = [s for s, at in self._due.items() if at <= now]
                    everything = self._all_due <= now
                    if due or everything:
                        break
                    nearest = min([self._all_due, *self._due.values()])
                    self._lock.wait(timeout=max(nearest - now, 0.001))
                if self._stopping:
                    return
                for site in due:
                    del self._due[site]
                if everything:
                    self._all_due = now + self._refresh
                    self._due.clear()
            try:
                for site in self._sites() if everything else due:
                    self.publish_site(site)
            except Exception:
                self.stats.failures += 1
                log.exception("publishing allow-lists failed; retrying in a second")
                with self._lock:
                    retry = time.monotonic() + 1.0
                    if everything:
                        self._all_due = retry
                    for site in due:
                        self._due.setdefault(site, retry)
