"""Agents' broker accounts, changed on the running Mosquitto: add (enrol), disable, enable,
rotate, remove. Nothing restarts and no other client is disconnected.

Each change is made twice, in the same order every time: in the registry (the agent's
password hash, whether it is disabled), so `ruche server broker-config` regenerates the
same accounts; then on the broker, through its dynamic security plugin's control topic
(`ruche.broker.control`), which applies it at once and saves it in its own file. The
plugin receives the clear password over the server's TLS connection and stores only its
hash; the clear password is shown once, in the agent's file.

`remove` deletes the agent from the registry and its account and role from the broker.

What Mosquitto does, as the tests see it: `disableClient` disconnects the agent at once
and refuses its reconnections (its outbox keeps every event meanwhile); `enableClient`
lets it in again and the outbox drains; `setClientPassword` disconnects the agent, whose
old password no longer works, so rotate before copying the new file to the Pi.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ruche.broker.accounts import agent_username
from ruche.broker.control import BrokerControl
from ruche.broker.dynsec import add_agent_commands, remove_agent_commands
from ruche.broker.mosquitto_config import write_private
from ruche.server import registry
from ruche.server.errors import Invalid, NotFound
from ruche.server.settings import ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.models import AgentRow

AGENT_TOML = "agent.toml"
CA_FILE = "ca.pem"
DEFAULT_CA_PATH = Path("/etc/ruche/ca.pem")
"""Where the agent's file says the CA is: where `ruche edge install` expects it on a Pi."""


@dataclass(frozen=True)
class Enrolment:
    """What a new agent needs: its minimal file (secrets inside: shown once) and the CA."""

    site: str
    agent: str
    text: str
    """The agent's whole `agent.toml`."""
    written: tuple[Path, ...] = ()


def _control(settings: ServerSettings) -> BrokerControl:
    mqtt = settings.mqtt
    return BrokerControl(mqtt.host, mqtt.port, mqtt.username, mqtt.password.get_secret_value(),
                         ca_file=mqtt.ca_file)  # fmt: skip


def _sessions(settings: ServerSettings) -> sessionmaker[Session]:
    return make_sessions(make_engine(settings.database_url))


def agent_toml(
    *,
    site: str,
    agent: str,
    site_key: str,
    password: str,
    host: str,
    port: int,
    ca_file: Path | None,
) -> str:
    """The minimal file an agent starts from: its doors and desks come from the server.
    Without `ca_file`, plain MQTT: for a broker on the same machine only."""
    tls = (f"ca_file = {json.dumps(str(ca_file))}" if ca_file is not None
           else "# no ca_file: plain MQTT, passwords in clear (loopback only)")  # fmt: skip
    return "\n".join([
        "# Written by `ruche admin agent add`: secrets inside (0600 on the Pi).",
        "# Doors and desks come from the server (`ruche edge run` applies them live).",
        f"site = {json.dumps(site)}",
        f"agent = {json.dumps(agent)}",
        f"site_key = {json.dumps(site_key)}",
        'state_dir = "/var/lib/ruche"',
        "",
        "[mqtt]",
        f"host = {json.dumps(host)}",
        f"port = {port}",
        f"username = {json.dumps(agent_username(site, agent))}",
        f"password = {json.dumps(password)}",
        tls,
        "",
    ])  # fmt: skip


def enrol_agent(
    settings: ServerSettings,
    *,
    site: str,
    agent: str,
    host: str | None = None,
    port: int | None = None,
    ca_path: Path = DEFAULT_CA_PATH,
    out: Path | None = None,
    must_exist: bool = False,
) -> Enrolment:
    """Register agent `agent` of `site` (or give it a new password), create or update its
    account on the running broker, and return its file; with `out`, also write the file
    (0600) and the site's CA there, ready to copy to the Pi. `must_exist`: rotate only.

    The registry's transaction commits only once the broker took the change: a broker
    that is down leaves the registry as it was."""
    host = host or settings.mqtt.agents_host
    if host is None:
        raise Invalid("give --broker-host: the server config has no [mqtt] agents_host")
    with transaction(_sessions(settings)) as session:
        site_row = registry.get_site_by_slug(session, site)
        try:
            row = registry.get_agent_by_slug(session, site_row.id, agent)
        except NotFound:
            if must_exist:
                raise NotFound("Agent", f"{site}/{agent}") from None
            row = registry.create_agent(session, site_id=site_row.id, slug=agent)
            session.flush()
        password = registry.issue_agent_password(session, row.id)
        row.broker_disabled = False
        key = bytes(registry.site_key_of(session, site_row.id).key).hex()
        with _control(settings) as control:
            username = agent_username(site, agent)
            control.run(add_agent_commands(site, agent, password),
                        tolerate={"Role already exists", "Client already exists"})  # fmt: skip
            control.run([
                {"command": "setClientPassword", "username": username, "password": password},
                {"command": "enableClient", "username": username},
            ])  # fmt: skip
    ca = settings.mqtt.ca_file
    text = agent_toml(site=site, agent=agent, site_key=key, password=password, host=host,
                      port=port or settings.mqtt.agents_port,
                      ca_file=None if ca is None else ca_path)  # fmt: skip
    written: tuple[Path, ...] = ()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_private(out / AGENT_TOML, text.encode())
        written = (out / AGENT_TOML,)
        if ca is not None:
            shutil.copyfile(ca, out / CA_FILE)
            written = (*written, out / CA_FILE)
    return Enrolment(site, agent, text, written)


def _known_agent(session: Session, site_id: int, site: str, agent: str) -> AgentRow:
    try:
        return registry.get_agent_by_slug(session, site_id, agent)
    except NotFound:
        raise NotFound("Agent", f"{site}/{agent}") from None


def set_agent_enabled(settings: ServerSettings, *, site: str, agent: str, enabled: bool) -> None:
    """Let an agent in again, or cut it off at once (its account is kept, disabled)."""
    with transaction(_sessions(settings)) as session:
        site_row = registry.get_site_by_slug(session, site)
        row = _known_agent(session, site_row.id, site, agent)
        row.broker_disabled = not enabled
        command = "enableClient" if enabled else "disableClient"
        with _control(settings) as control:
            control.run([{"command": command, "username": agent_username(site, agent)}])


def remove_agent(settings: ServerSettings, *, site: str, agent: str) -> None:
    """Delete an agent: from the registry (its doors and desks stay, with no agent) and its
    account and role from the broker, which disconnects it at once."""
    with transaction(_sessions(settings)) as session:
        site_row = registry.get_site_by_slug(session, site)
        row = _known_agent(session, site_row.id, site, agent)
        registry.delete(session, AgentRow, row.id)
        with _control(settings) as control:
            control.run(remove_agent_commands(site, agent),
                        tolerate={"Client not found", "Role not found"})  # fmt: skip
