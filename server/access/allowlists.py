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
list over it is refused and logged, never sent). They are republished on the schedule of
`ruche.server.messaging.site_publisher`: every site at start and every `refresh` (15
minutes, so the windows roll forward long before they run out), and a site `debounce`
(150 ms) after `site_changed(site)`.

Building is pure (`build_allowlist`); reading uses `facts.load_site_snapshot`, one set
of queries per site for all its agents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import AllowEntry, Allowlist, Channel, ContractError, Topic, Window, encode_for
from ruche.server.access.facts import AllowlistInputs, Holder, load_site_snapshot
from ruche.server.access.rules import allowlist_windows
from ruche.server.errors import NotFound
from ruche.server.messaging.connection import MqttOptions
from ruche.server.messaging.site_publisher import SitePublisher
from ruche.server.registry.schedule import Interval, merge_intervals
from ruche.server.registry.sites import site_slugs

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
    last_versions: dict[tuple[str, str], int] = field(default_factory=dict)


class AllowlistPublisher(SitePublisher):
    """Publishes every agent's retained allow-list; a `RegistryListener`.

    Keyword arguments: `horizon` (24 h) the span a list covers; `refresh` (15 min) how
    often every site is republished; `debounce` (0.15 s) how long a change waits for the
    ones that follow it; `clock` the server's wall clock, timezone-aware.
    """

    what = "allow-lists"

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
        super().__init__(mqtt_options, name="allowlists", sites=self._site_slugs,
                         refresh=refresh.total_seconds(), debounce=debounce)  # fmt: skip
        self.sessions = sessions
        self.stats = PublisherStats()
        self._horizon = horizon
        self._clock = clock

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

    def _site_slugs(self) -> list[str]:
        with self.sessions.begin() as session:
            return site_slugs(session)
