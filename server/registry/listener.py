"""Who is told when a site's registry changed: the seam between the REST API (and the
occupancy worker) and whatever keeps something derived from the registry (decision facts,
allow-lists, the live floor, device owners). Nothing here does I/O."""

from __future__ import annotations

from typing import Protocol


class RegistryListener(Protocol):
    """Told when something that may change a site's door decisions was committed.

    New or cancelled booking, badge enrolled/disabled/revoked, plan or membership
    change, holiday, door or site lockdown: the allow-lists of that site's agents
    must be republished within a second.
    """

    def site_changed(self, site: str) -> None:
        """The registry of site `site` (its slug) changed."""


class SiteChangeFanout:
    """One RegistryListener telling several."""

    def __init__(self, *listeners: RegistryListener) -> None:
        self._listeners = listeners

    def site_changed(self, site: str) -> None:
        for listener in self._listeners:
            listener.site_changed(site)
