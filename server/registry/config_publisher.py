"""The config publisher: each agent's retained `config`, its doors and desks as the
registry has them (`agent_config`).

```python
publisher = ConfigPublisher(sessions, MqttOptions(...))
publisher.start()                 # every agent's config of every site, then kept equal
publisher.site_changed("lyon")    # RegistryListener: republished within a second
publisher.stop()
```

A config is published retained, QoS 1, only when it differs from the one this process
last published for the agent (the retained copy stands otherwise), on the schedule of
`ruche.server.messaging.site_publisher`: every site at start and every `refresh` (one
minute, which also carries changes made by `ruche admin` in another process), and a site
`debounce` after `site_changed`. `version` is the publication time in milliseconds, and
always more than the last version published for the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Channel, ContractError, Topic, encode_for
from ruche.server.messaging.connection import MqttOptions
from ruche.server.messaging.site_publisher import SitePublisher
from ruche.server.registry.agent_config import Setup, build_config, site_setups
from ruche.server.registry.sites import site_slugs

log = logging.getLogger(__name__)


@dataclass
class ConfigStats:
    published: int = 0
    refused: int = 0
    """Configs not sent: over the size limit or refused by the contract."""
    last: dict[tuple[str, str], tuple[int, Setup]] = field(default_factory=dict)
    """(site, agent): the version and the doors and desks last published."""


class ConfigPublisher(SitePublisher):
    """Publishes every agent's retained config; a `RegistryListener`."""

    what = "agent configs"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        refresh: timedelta = timedelta(minutes=1),
        debounce: float = 0.15,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(mqtt_options, name="configs", sites=self._site_slugs,
                         refresh=refresh.total_seconds(), debounce=debounce)  # fmt: skip
        self.sessions = sessions
        self.stats = ConfigStats()
        self._clock = clock

    def publish_site(self, site: str) -> dict[str, int]:
        """Publish the configs of `site`'s agents that changed; their versions by agent."""
        with self.sessions.begin() as session:
            setups = site_setups(session, site)
        now = self._clock()
        published: dict[str, int] = {}
        for agent, setup in setups.items():
            last = self.stats.last.get((site, agent))
            if last is not None and last[1] == setup:
                continue
            version = max(-1 if last is None else last[0] + 1, int(now.timestamp() * 1000))
            try:
                data = encode_for(Channel.CONFIG, build_config(setup, version=version, now=now))
            except (ContractError, ValueError) as exc:
                self.stats.refused += 1
                log.error("config of %s/%s not published: %s", site, agent, exc)  # noqa: TRY400
                continue
            self.connection.publish(str(Topic.config(site, agent)), data, retain=True)
            self.stats.published += 1
            self.stats.last[(site, agent)] = (version, setup)
            published[agent] = version
            log.info("config v%d of %s/%s: %d doors, %d desks", version, site, agent,
                     len(setup[0]), len(setup[1]))  # fmt: skip
        return published

    def _site_slugs(self) -> list[str]:
        with self.sessions.begin() as session:
            return site_slugs(session)
