"""`ruche server init` and `ruche admin agent add|rotate|disable|enable`: their arguments
and handlers, added to the parsers `ruche.server.commands` builds. As there, each handler
imports what it runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ruche.commands import CliError
from ruche.server.errors import DomainError

if TYPE_CHECKING:
    from ruche.commands import Subparsers

# --- ruche server init ---------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    from ruche.broker.mosquitto_config import BrokerConfigError
    from ruche.server.deploy.init import InitOptions, init_server
    from ruche.server.storage.checks import UnusableDatabaseError, check_database, parse

    options = InitOptions(
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        broker_hosts=tuple(args.broker_host or ["localhost"]),
        database_url=args.database,
        mqtt_port=args.mqtt_port,
        mqtt_local_port=args.mqtt_local_port,
        http_host=args.http_host,
        http_port=args.http_port,
        influx_url=args.influx_url,
        broker_user=args.broker_user,
        dynsec_plugin=args.dynsec_plugin,
        site=args.name,
    )
    try:
        # The database init migrates: reachable before anything is laid out (a SQLite
        # file's folder may be one init makes: only its URL is read).
        if args.database is not None and parse(args.database).get_backend_name() != "sqlite":
            check_database(args.database, schema=False)
        report = init_server(options)
    except (BrokerConfigError, OSError, UnusableDatabaseError) as exc:
        raise CliError(str(exc)) from exc
    for what, done in report.steps:
        print(f"{'done ' if done else 'already done'}  {what}")
    if report.admin_key is not None:
        print("first admin key (shown once, store it now):")
        print(report.admin_key)
    if not any(done for _, done in report.steps):
        print("nothing to do: this server is laid out")
    print(f"next: ruche server install --config {report.config}")
    return 0


def add_init(actions: Subparsers) -> None:
    init = actions.add_parser(
        "init",
        help="lay out this server: config, the site's CA and certificates, Mosquitto, "
        "the database, the first admin key (idempotent)",
    )
    init.add_argument("--config-dir", type=Path, default=Path("/etc/ruche"),
                      help="config, certificates, Mosquitto's config (/etc/ruche)")  # fmt: skip
    init.add_argument("--state-dir", type=Path, default=Path("/var/lib/ruche"),
                      help="database, Mosquitto's accounts and data (/var/lib/ruche)")  # fmt: skip
    init.add_argument("--broker-host", action="append", metavar="NAME",
                      help="a name or address agents reach the broker at (repeat; the first "
                      "goes in their files; default localhost)")  # fmt: skip
    init.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the state folder)")
    init.add_argument("--mqtt-port", type=int, default=8883, help="the TLS listener (8883)")
    init.add_argument("--mqtt-local-port", type=int, default=1883,
                      help="the plain listener, loopback only (1883)")  # fmt: skip
    init.add_argument("--http-host", default="127.0.0.1", help="the API's address (127.0.0.1)")
    init.add_argument("--http-port", type=int, default=8000, help="the API's port (8000)")
    init.add_argument("--influx-url", help="InfluxDB for occupancy points (none by default)")
    init.add_argument("--broker-user", help="the user Mosquitto keeps when started as root")
    init.add_argument("--dynsec-plugin", type=Path, help="Mosquitto's dynamic security plugin")
    init.add_argument("--name", default="ruche", help="the site's name, in its CA's name")
    init.set_defaults(handler=_init)


# --- ruche admin agent ---------------------------------------------------------------


def _agent(args: argparse.Namespace) -> int:
    from ruche.broker.control import BrokerControlError
    from ruche.server.settings import ServerConfigError, load_server_settings
    from ruche.server.storage.checks import UnusableDatabaseError, check_database

    try:
        settings = load_server_settings(args.config)
        check_database(settings.database_url)  # reachable, and at the latest schema
        from ruche.server.deploy.agents import (
            DEFAULT_CA_PATH,
            enrol_agent,
            remove_agent,
            set_agent_enabled,
        )

        if args.agent_command in ("add", "rotate"):
            ca_path = args.ca_path or DEFAULT_CA_PATH
            enrolment = enrol_agent(
                settings, site=args.site, agent=args.id, host=args.broker_host,
                port=args.broker_port, ca_path=ca_path, out=args.out,
                must_exist=args.agent_command == "rotate",
            )  # fmt: skip
            if enrolment.written:
                names = " and ".join(str(p) for p in enrolment.written)
                print(f"agent {args.site}/{args.id}: its account is live; wrote {names}")
                print(f"copy them to the Pi (agent.toml to /etc/ruche/, ca.pem to {ca_path})")
            else:
                print("# agent.toml for this agent (contains secrets: shown once)")
                print(enrolment.text, end="")
        elif args.agent_command == "remove":
            remove_agent(settings, site=args.site, agent=args.id)
            print(f"agent {args.site}/{args.id} removed: its account is gone from the broker")
        else:
            enabled = args.agent_command == "enable"
            set_agent_enabled(settings, site=args.site, agent=args.id, enabled=enabled)
            state = "enabled: it may connect again" if enabled else "disabled: cut off now"
            print(f"agent {args.site}/{args.id} {state}")
    except (
        ServerConfigError,
        UnusableDatabaseError,
        DomainError,
        BrokerControlError,
        OSError,
    ) as exc:
        raise CliError(str(exc)) from exc
    return 0


def add_agent(actions: Subparsers) -> None:
    agent = actions.add_parser(
        "agent",
        help="agents' broker accounts, changed live: add, rotate, disable, enable, remove",
        description="Each change is written to the registry and applied to the running "
        "Mosquitto through its dynamic security plugin: no restart, nobody else "
        "disconnected.",
    )
    verbs = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    helps = {
        "add": "register an agent (or re-issue it) and write its minimal agent.toml",
        "rotate": "give an existing agent a new password (its old one stops working)",
        "disable": "cut an agent off at once; its events wait in its outbox",
        "enable": "let a disabled agent in again",
        "remove": "delete an agent and its broker account (its doors and desks stay)",
    }
    for verb, text in helps.items():
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("--config", type=Path, required=True, help="the server's TOML file")
        sub.add_argument("--site", required=True, help="the site (slug)")
        sub.add_argument("--id", required=True, help="the agent id, e.g. door-a")
        if verb in ("add", "rotate"):
            sub.add_argument(
                "--broker-host", help="the broker as the Pi reaches it ([mqtt] agents_host)"
            )
            sub.add_argument("--broker-port", type=int, help="its TLS port ([mqtt] agents_port)")
            sub.add_argument(
                # None: the handler's DEFAULT_CA_PATH (deploy.agents loads the registry).
                "--ca-path", type=Path,
                help="where the CA will be on the Pi (/etc/ruche/ca.pem)",
            )  # fmt: skip
            sub.add_argument(
                "--out", type=Path, help="write agent.toml (0600) and ca.pem into this folder"
            )
        sub.set_defaults(handler=_agent)
