"""The seams between the server's parts: one-method protocols, so each side is testable alone.

The REST API sends commands to agents and says when the registry changed; the
MQTT workers implement both. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Protocol

from ruche.broker import Command


class CommandSender(Protocol):
    """Delivers a command to one agent (over MQTT, on its `cmd` topic)."""

    def send(self, site: str, agent: str, command: Command) -> None:
        """Queue `command` for agent `agent` of site `site` (wire ids, i.e. slugs)."""


class RegistryListener(Protocol):
    """Told when something that may change a site's door decisions was committed.

    New or cancelled booking, badge enrolled/disabled/revoked, plan or membership
    change, holiday, door or site lockdown: the allow-lists of that site's agents
    must be republished within a second.
    """

    def site_changed(self, site: str) -> None:
        """The registry of site `site` (its slug) changed."""
