"""`ruche server init`: lay out a server from nothing, one idempotent step at a time.

```
<config>/server.toml                  absolute paths, the server's broker password (0600)
<config>/tls/ca.pem, ca.key           the site's CA (the key 0600: keep it off the Pis)
<config>/tls/broker.pem, broker.key   the broker's certificate, for every --broker-host
<config>/mosquitto/mosquitto.conf     Ruche's Mosquitto: TLS for agents, accounts plugin
<state>/mosquitto/dynamic-security.json   the server account (Mosquitto keeps it after)
<state>/mosquitto/data/               Mosquitto's persistence
<state>/ruche.db                      the registry, migrated (unless --database)
```

Each step either does its work or reports it as already done, and a step that finds
its file never touches it: running init again changes nothing, and a file the operator
edited stays as edited. The first admin key is made only while the registry has no
admin key at all, and shown once.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from ruche.broker import dynsec
from ruche.broker.accounts import BrokerUsers
from ruche.broker.mosquitto_config import (
    CONF_NAME,
    BrokerOptions,
    TlsOptions,
    find_dynsec_plugin,
    render_accounts,
    render_conf,
    write_private,
)
from ruche.broker.passwords import hash_password
from ruche.server.deploy.tls import make_ca, make_server_cert
from ruche.server.registry import admin
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import ApiKeyRow

SERVER_TOML = "server.toml"


@dataclass(frozen=True, kw_only=True)
class InitOptions:
    config_dir: Path
    state_dir: Path
    broker_hosts: tuple[str, ...] = ("localhost",)
    """Names or addresses agents use to reach the broker; the first goes in their files."""
    database_url: str | None = None
    """Default: SQLite in the state folder."""
    mqtt_port: int = 8883
    """The broker's TLS listener, for agents and the server."""
    mqtt_local_port: int = 1883
    """Its plain listener, on loopback only."""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    influx_url: str | None = None
    broker_user: str | None = None
    """The user Mosquitto keeps when started as root (default: its own, `mosquitto`)."""
    dynsec_plugin: Path | None = None
    site: str = "ruche"
    """Names the CA."""


@dataclass
class InitReport:
    steps: list[tuple[str, bool]] = field(default_factory=list)
    """(what, done now): False means it was already done."""
    admin_key: str | None = None
    """The first admin key's secret, when this run made it."""
    config: Path | None = None

    def step(self, what: str, *, done: bool) -> None:
        self.steps.append((what, done))


def _once(path: Path, report: InitReport, what: str, make: Callable[[], None]) -> None:
    if path.exists():
        report.step(f"{what}: {path} (kept)", done=False)
        return
    make()
    report.step(f"{what}: {path}", done=True)


def _server_toml(options: InitOptions, *, url: str, password: str, ca: Path) -> str:
    lines = [
        "# Written by `ruche server init`; RUCHE_... environment variables override it.",
        f"database_url = {json.dumps(url)}",
        "",
        "[mqtt]",
        "# The server reaches Mosquitto on this machine through its TLS listener.",
        'host = "localhost"',
        f"port = {options.mqtt_port}",
        'username = "ruche-server"',
        f"password = {json.dumps(password)}",
        f"ca_file = {json.dumps(str(ca))}",
        "# What agents connect to (in the files `ruche admin agent add` writes).",
        f"agents_host = {json.dumps(options.broker_hosts[0])}",
        f"agents_port = {options.mqtt_port}",
        "",
        "[http]",
        f"host = {json.dumps(options.http_host)}",
        f"port = {options.http_port}",
        "",
        "# Sign-in links and password resets by e-mail (docs/server.md): fill in, uncomment.",
        "# [mail]",
        '# host = "smtp.example.org"',
        "# port = 587",
        '# security = "starttls"',
        '# username = "ruche@example.org"',
        '# password = "..."',
        '# from_address = "Ruche <ruche@example.org>"',
        f"# base_url = {json.dumps(f'http://{options.http_host}:{options.http_port}')}",
    ]
    if options.influx_url is not None:
        spool = options.state_dir / "influx-spool"
        lines += ["", "[influx]", f"url = {json.dumps(options.influx_url)}",
                  'database = "ruche"', f"spool_dir = {json.dumps(str(spool))}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def init_server(options: InitOptions) -> InitReport:
    """Lay out a server (the module docstring has what goes where); idempotent."""
    config = options.config_dir.resolve()
    state = options.state_dir.resolve()
    options = InitOptions(**{**options.__dict__, "config_dir": config, "state_dir": state})
    report = InitReport(config=config / SERVER_TOML)
    tls, broker_conf_dir, broker_state = config / "tls", config / "mosquitto", state / "mosquitto"
    folders = ((config, 0o755), (tls, 0o755), (broker_conf_dir, 0o755), (state, 0o750),
               (broker_state, 0o750), (broker_state / "data", 0o750))  # fmt: skip
    made = [folder for folder, _ in folders if not folder.is_dir()]
    for folder, mode in folders:
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
    report.step(f"folders under {config} and {state}", done=bool(made))
    ca, ca_key = tls / "ca.pem", tls / "ca.key"
    broker_cert, broker_key = tls / "broker.pem", tls / "broker.key"
    _once(ca, report, "site CA", lambda: make_ca(ca, ca_key, site=options.site))
    names = list(dict.fromkeys([*options.broker_hosts, "localhost", "127.0.0.1"]))
    _once(broker_cert, report, f"broker certificate for {', '.join(names)}",
          lambda: _broker_cert(broker_cert, broker_key, ca=ca, ca_key=ca_key, names=names,
                               group=options.broker_user or "mosquitto"))  # fmt: skip

    server_toml = config / SERVER_TOML
    url = options.database_url or f"sqlite:///{state / 'ruche.db'}"
    if server_toml.exists():
        report.step(f"server config: {server_toml} (kept)", done=False)
        written = tomllib.loads(server_toml.read_text(encoding="utf-8"))
        password = str(written["mqtt"]["password"])
        url = str(written.get("database_url", url))
    else:
        password = secrets.token_urlsafe(24)
        text = _server_toml(options, url=url, password=password, ca=ca)
        write_private(server_toml, text.encode())
        report.step(f"server config: {server_toml}", done=True)

    dynsec_file = broker_state / dynsec.FILE_NAME
    users = BrokerUsers(server_username="ruche-server", server_hash=hash_password(password),
                        agents=())  # fmt: skip
    _once(dynsec_file, report, "broker accounts (the server's)",
          lambda: write_private(dynsec_file, render_accounts(users).encode()))  # fmt: skip
    conf = broker_conf_dir / CONF_NAME
    broker = BrokerOptions(
        port=options.mqtt_local_port,
        tls=TlsOptions(certfile=broker_cert, keyfile=broker_key, port=options.mqtt_port),
        run_as=options.broker_user,
        dynsec_plugin=options.dynsec_plugin,
    )
    plugin = options.dynsec_plugin or find_dynsec_plugin()
    text = render_conf(broker, plugin=plugin, dynsec_file=dynsec_file, data=broker_state / "data")
    _once(conf, report, "Mosquitto configuration",
          lambda: write_private(conf, text.encode(), 0o644))  # fmt: skip

    before = _revision(url)
    run_migrations(url)
    after = _revision(url)
    report.step(f"database at schema {after}" + ("" if before == after else f" (was {before})"),
                done=before != after)  # fmt: skip
    if _has_admin_key(url):
        report.step("first admin key (an admin key exists)", done=False)
    else:
        report.admin_key = admin.create_api_key(url, role=Role.ADMIN, name="first admin")
        report.step("first admin key", done=True)
    return report


def _broker_cert(
    cert: Path, key: Path, *, ca: Path, ca_key: Path, names: list[str], group: str
) -> None:
    make_server_cert(cert, key, ca_cert=ca, ca_key=ca_key, names=names)
    # Mosquitto reads its key after it drops from root to its own account: as root, give
    # that account's group read access (the key stays closed to everyone else).
    if os.geteuid() == 0 and group != "root":
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return
        os.chown(key, 0, gid)
        key.chmod(0o640)


def _revision(url: str) -> str:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - init only

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision() or "none"
    finally:
        engine.dispose()


def _has_admin_key(url: str) -> bool:
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            found = session.scalars(select(ApiKeyRow.id).where(ApiKeyRow.role == Role.ADMIN))
            return found.first() is not None
    finally:
        engine.dispose()
