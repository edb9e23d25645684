"""The seam through which the REST API sends commands to agents; the tap worker
(`ruche.server.access.taps.DoorWorker`) implements it over MQTT. Nothing here does I/O."""

from __future__ import annotations

from typing import Protocol

from ruche.broker import Command


class CommandSender(Protocol):
    """Delivers a command to one agent (over MQTT, on its `cmd` topic)."""

    def send(self, site: str, agent: str, command: Command) -> None:
        """Queue `command` for agent `agent` of site `site` (wire ids, i.e. slugs)."""
