"""A retained publication per agent, kept equal to the registry: the schedule that the
allow-list and config publishers share.

Sites are republished:

- every site when the publisher starts, then every `refresh` seconds (and at once after
  a failure, one second later);
- a site `debounce` seconds after `site_changed(site)`: the changes of a burst (an API
  call that touches several rows, a bulk import) coalesce into one publication, and the
  delay runs from the first change, so a publication goes out within a second of any
  change even while changes keep coming.

A subclass says how one site is published (`publish_site`); `sites` lists every site.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ruche.server.messaging.connection import MqttOptions, ServerConnection

log = logging.getLogger(__name__)


class SitePublisher:
    """Publishes per site on a schedule and on change, in a worker thread of its own."""

    what = "publications"
    """What it publishes, for the log."""

    def __init__(
        self,
        mqtt_options: MqttOptions,
        *,
        name: str,
        sites: Callable[[], list[str]],
        refresh: float,
        debounce: float,
    ) -> None:
        if debounce >= 1.0:
            raise ValueError("debounce must stay well under the one-second republish promise")
        self._sites = sites
        self._refresh = refresh
        self._debounce = debounce
        self._due: dict[str, float] = {}
        self._all_due = 0.0
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._name = name
        self.failures = 0
        """Rounds that failed (database errors); each is retried a second later."""
        self.connection = ServerConnection(mqtt_options, name=f"ruche-{name}")

    def publish_site(self, site: str) -> object:
        """Build and publish the site's publications now."""
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> None:
        """Connect, then publish every site and keep them fresh in a worker thread."""
        self.connection.start(timeout)
        self._stopping = False
        self._all_due = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
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
        """`RegistryListener`: republish the site after `debounce` seconds."""
        with self._lock:
            self._due.setdefault(site, time.monotonic() + self._debounce)
            self._lock.notify_all()

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
                self.failures += 1
                log.exception("publishing %s failed; retrying in a second", self.what)
                with self._lock:
                    retry = time.monotonic() + 1.0
                    if everything:
                        self._all_due = retry
                    for site in due:
                        self._due.setdefault(site, retry)
