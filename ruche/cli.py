"""The `ruche` command. Subcommands import their modules lazily, so the Pi agent never loads
the server's dependencies."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ruche import __version__

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


def _broker_users(args: argparse.Namespace) -> Accounts | BrokerUsers:
    """The accounts to configure: from an accounts file, or from the server's registry."""
    if (args.accounts is None) == (args.server_config is None):
        raise CliError("give exactly one of --accounts FILE or --server-config FILE")
    if args.accounts is not None:
        from ruche.broker.accounts import AccountsError, load_accounts  # noqa: PLC0415

        try:
            return load_accounts(args.accounts)
        except AccountsError as exc:
            raise CliError(str(exc)) from exc
    from ruche.server.admin import broker_users  # noqa: PLC0415
    from ruche.server.errors import DomainError  # noqa: PLC0415
    from ruche.server.settings import ServerConfigError, load_server_settings  # noqa: PLC0415

    try:
        settings = load_server_settings(args.server_config)
        return broker_users(
            settings.database_url,
            server_username=settings.mqtt.username,
            server_password=settings.mqtt.password.get_secret_value(),
        )
    except (ServerConfigError, DomainError) as exc:
        raise CliError(str(exc)) from exc


def _broker_config(args: argparse.Namespace) -> int:
    from ruche.broker.mosquitto_config import (  # noqa: PLC0415
        BrokerConfigError,
        BrokerOptions,
        TlsOptions,
        write_config,
    )

    accounts = _broker_users(args)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CliError("--tls-cert and --tls-key go together")
        for path in (args.tls_cert, args.tls_key, args.tls_ca):
            if path is not None and not path.is_file():
                raise CliError(f"{path}: no such file")
        tls = TlsOptions(
            certfile=args.tls_cert.resolve(),
            keyfile=args.tls_key.resolve(),
            cafile=args.tls_ca.resolve() if args.tls_ca else None,
            port=args.tls_port,
            bind=args.tls_bind,
        )
    if args.dynsec_plugin is not None and not args.dynsec_plugin.is_file():
        raise CliError(f"{args.dynsec_plugin}: no such file")
    options = BrokerOptions(
        port=args.port, bind=args.bind, tls=tls, run_as=args.run_as,
        dynsec_plugin=args.dynsec_plugin,
    )  # fmt: skip
    try:
        files = write_config(args.out, accounts, options)
    except BrokerConfigError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {files.conf} and {files.dynsec} for {len(accounts.agents)} agents")
    print(f"run it with: mosquitto -c {files.conf}")
    print("a running Mosquitto reads these only when it starts: restart it to apply them")
    return 0


def _edge_run(args: argparse.Namespace) -> int:
    from ruche.edge.nfc import NfcError  # noqa: PLC0415
    from ruche.edge.run import run_agent  # noqa: PLC0415
    from ruche.edge.settings import ConfigError  # noqa: PLC0415
    from ruche.logs import configure_logging  # noqa: PLC0415

    configure_logging(args.log_level)
    try:
        return run_agent(args.config)
    except (ConfigError, NfcError) as exc:
        raise CliError(str(exc)) from exc


def _database(args: argparse.Namespace) -> str:
    from ruche.server.db import DEFAULT_URL  # noqa: PLC0415

    return str(args.database or os.environ.get("RUCHE_DATABASE_URL") or DEFAULT_URL)


def _server_run(args: argparse.Namespace) -> int:
    from ruche.logs import configure_logging  # noqa: PLC0415
    from ruche.server.run import run_server  # noqa: PLC0415
    from ruche.server.settings import ServerConfigError, load_server_settings  # noqa: PLC0415

    configure_logging(args.log_level)
    try:
        settings = load_server_settings(args.config)
        return run_server(
            settings, workers=args.workers, config=args.config, log_level=args.log_level
        )
    except (ServerConfigError, TimeoutError) as exc:
        raise CliError(str(exc)) from exc


def _server_ingest(args: argparse.Namespace) -> int:
    from ruche.logs import configure_logging  # noqa: PLC0415
    from ruche.server.run import run_ingest  # noqa: PLC0415
    from ruche.server.settings import ServerConfigError, load_server_settings  # noqa: PLC0415

    configure_logging(args.log_level)
    try:
        return run_ingest(load_server_settings(args.config), name=args.name)
    except (ServerConfigError, TimeoutError) as exc:
        raise CliError(str(exc)) from exc


def _server_migrate(args: argparse.Namespace) -> int:
    from ruche.server.db import run_migrations  # noqa: PLC0415

    url = _database(args)
    run_migrations(url)
    print(f"database {url} is at the latest schema")
    return 0


def _admin(args: argparse.Namespace) -> int:
    from ruche.server import admin  # noqa: PLC0415
    from ruche.server.errors import DomainError  # noqa: PLC0415
    from ruche.server.models import Role  # noqa: PLC0415

    url = _database(args)
    try:
        match args.admin_command:
            case "key":
                secret = admin.create_api_key(url, role=Role(args.role), name=args.name,
                                              site=args.site, member_email=args.member)  # fmt: skip
                print(f"API key for {args.role} {args.name!r} (shown once, store it now):")
                print(secret)
            case "site":
                site_id = admin.add_site(url, slug=args.slug, name=args.name,
                                         timezone=args.timezone)  # fmt: skip
                print(f"site {args.slug} created (id {site_id})")
            case "member":
                member_id = admin.add_member(url, name=args.name, email=args.email)
                print(f"member {args.email} created (id {member_id})")
            case "badge":
                uid = _hex(args.uid)
                token = admin.enrol_badge(url, member_email=args.member, site=args.site, uid=uid)
                print(f"badge enrolled for {args.member}: token {token} (the UID is not stored)")
            case "agent":
                provision = admin.add_agent(url, site=args.site, agent=args.id)
                print("# agent.toml for this agent (contains secrets: shown once)")
                print(provision.agent_toml(host=args.broker_host, port=args.broker_port))
                print(
                    "# then regenerate the broker config: ruche broker config --server-config ..."
                )
            case _:  # pragma: no cover - argparse requires one of the above
                raise CliError(f"unknown admin command {args.admin_command}")
    except DomainError as exc:
        raise CliError(str(exc)) from exc
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from ruche.server.admin import verify_audit  # noqa: PLC0415

    result = verify_audit(_database(args))
    if result.ok:
        print(f"audit log intact: {result.checked} rows verified")
        return 0
    print(f"audit log TAMPERED at row {result.bad_id}: {result.problem} "
          f"({result.checked} rows read)", file=sys.stderr)  # fmt: skip
    return 1


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise CliError(f"UID {text!r} is not hex (e.g. 04:a2:2b:1a or 04a22b1a)") from None


def _sim_run(args: argparse.Namespace) -> int:
    from ruche.sim.scenario import ScenarioError, ScenarioPlayer, load_scenario  # noqa: PLC0415

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise CliError(str(exc)) from exc
    directory = (args.dir or Path.cwd()).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with ScenarioPlayer(scenario, directory=directory) as player:
        for desk, link in player.radar_links().items():
            print(f'radar {desk}: serial = "{link}"')
        for badge in scenario.badges:
            print(f'badges: reader = "{badge.device}" ({len(badge.taps)} taps)')
        print(f"playing {scenario.duration:g} s at x{scenario.speed:g}; Ctrl-C stops", flush=True)
        player.wait()
    print("done")
    return 0


def _bench_edge(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from ruche.sim.bench.edge import run_agent_bench  # noqa: PLC0415

    if not args.json:
        print(f"running one agent with {args.radars} radars at 10 Hz and an NFC reader "
              f"for {args.seconds:g} s...", flush=True)  # fmt: skip
    result = run_agent_bench(seconds=args.seconds, radars=args.radars)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for key, value in result.as_dict().items():
            print(f"{key:>14}: {value}")
    return 0


def _bench_ingest(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from ruche.sim.bench.ingest import BenchError, Faults, run_ingest_bench  # noqa: PLC0415

    for name in ("agents", "desks", "publishers", "workers"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1")
    try:
        result = run_ingest_bench(
            rate=args.rate,
            seconds=args.seconds,
            agents=args.agents,
            desks_per_agent=args.desks,
            publishers=args.publishers,
            workers=args.workers,
            database_url=args.database,
            faults=Faults(
                influx_down_at=args.influx_down_at,
                influx_down_for=args.influx_down_for,
                kill_worker_at=args.kill_worker_at,
            ),
            progress=not args.json,
        )
    except BenchError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for key, value in result.as_dict().items():
            print(f"{key:>16}: {value}")
    return 0


def _bench_access(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from ruche.sim.bench.access import run_access_bench  # noqa: PLC0415

    if not args.json:
        print(f"starting a broker and a server, then {args.taps} taps from {args.agents} "
              "doors...", flush=True)  # fmt: skip
    result = run_access_bench(
        taps=args.taps, agents=args.agents, oversized_bodies=args.oversized_bodies
    )
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for key, value in result.as_dict().items():
            print(f"{key:>16}: {value}")
    return 0 if result.wrong_decisions == 0 and result.unanswered == 0 else 1


def _demo(args: argparse.Namespace) -> int:
    from ruche.sim.demo.run import run_demo  # noqa: PLC0415

    return run_demo(
        speed=args.speed,
        duration=args.duration,
        directory=args.dir,
        port=args.port,
        desks=args.desks,
        json_summary=args.json,
    )


def _version(_: argparse.Namespace) -> int:
    print(f"ruche {__version__}")
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


if TYPE_CHECKING:
    from ruche.broker.accounts import Accounts, BrokerUsers

    # argparse names no public type for the object add_subparsers returns.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
DATABASE_HELP = "SQLAlchemy URL (default: $RUCHE_DATABASE_URL or sqlite:///ruche.db)"


def _add_broker(commands: Subparsers) -> None:
    broker = commands.add_parser("broker", help="the MQTT broker Ruche configures")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    config = broker_commands.add_parser(
        "config", help="write mosquitto.conf and the accounts (hashed passwords, per-agent rules)"
    )
    config.add_argument(
        "--accounts", type=Path, help="TOML file with the server and agent accounts"
    )
    config.add_argument(
        "--server-config",
        type=Path,
        help="or: the server's TOML config; agents come from its registry",
    )
    config.add_argument("--out", type=Path, required=True, help="directory to write into")
    config.add_argument("--port", type=int, default=1883, help="plain listener port (1883)")
    config.add_argument(
        "--bind", default="127.0.0.1", help="plain listener address (loopback: clear passwords)"
    )
    config.add_argument("--tls-cert", type=Path, help="certificate for a TLS listener")
    config.add_argument("--tls-key", type=Path, help="private key for the TLS listener")
    config.add_argument("--tls-ca", type=Path, help="CA file for client certificates")
    config.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (8883)")
    config.add_argument(
        "--tls-bind", default="0.0.0.0",  # noqa: S104 - agents come over the site network
        help="TLS listener address (default: every interface)",
    )  # fmt: skip
    config.add_argument("--run-as", help="user Mosquitto keeps when started as root")
    config.add_argument(
        "--dynsec-plugin", type=Path,
        help="path of mosquitto_dynamic_security.so on the broker (default: found here)",
    )  # fmt: skip
    config.set_defaults(handler=_broker_config)


def _add_edge(commands: Subparsers) -> None:
    edge = commands.add_parser("edge", help="the agent on a Raspberry Pi")
    edge_commands = edge.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    edge_run = edge_commands.add_parser("run", help="run the agent")
    edge_run.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    edge_run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    edge_run.set_defaults(handler=_edge_run)


def _add_server(commands: Subparsers) -> None:
    server = commands.add_parser("server", help="the server")
    server_commands = server.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    run = server_commands.add_parser("run", help="the REST API and the MQTT workers")
    run.add_argument("--config", type=Path, help="the server's TOML file (RUCHE_ env overrides)")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.add_argument(
        "--workers", type=_at_least_one, default=1,
        help="processes taking agents' events (1): N-1 `server ingest` children",
    )  # fmt: skip
    run.set_defaults(handler=_server_run)
    ingest = server_commands.add_parser(
        "ingest", help="one more process taking agents' events (what --workers N starts)"
    )
    ingest.add_argument("--config", type=Path, help="the server's TOML file (RUCHE_ env overrides)")
    ingest.add_argument(
        "--name", default="ingest",
        help="its InfluxDB spool folder under spool_dir; keep it across restarts (ingest)",
    )  # fmt: skip
    ingest.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    ingest.set_defaults(handler=_server_ingest)
    migrate = server_commands.add_parser(
        "migrate", help="bring the database to the latest schema", parents=[_database_option()]
    )
    migrate.set_defaults(handler=_server_migrate)


def _database_option() -> argparse.ArgumentParser:
    """`--database`, for every command that opens the registry."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--database", help=DATABASE_HELP)
    return parent


def _add_admin(commands: Subparsers) -> None:
    admin = commands.add_parser("admin", help="the first admin key, sites, members, badges, agents")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")
    add = functools.partial(admin_commands.add_parser, parents=[_database_option()])
    key = add("key", help="create an API key (the secret is shown once)")
    key.add_argument("--role", choices=["admin", "manager", "member"], required=True)
    key.add_argument("--name", default="", help="what the key is for")
    key.add_argument("--site", help="a manager's site (slug)")
    key.add_argument("--member", help="a member key's member (email)")
    site = add("site", help="add a site")
    site.add_argument("--slug", required=True, help="its id in MQTT topics, e.g. lyon")
    site.add_argument("--name", required=True)
    site.add_argument("--timezone", required=True, help="IANA name, e.g. Europe/Paris")
    member = add("member", help="add a member")
    member.add_argument("--name", required=True)
    member.add_argument("--email", required=True)
    badge = add("badge", help="enrol a badge for a member at a site")
    badge.add_argument("--member", required=True, help="the member's email")
    badge.add_argument("--site", required=True, help="the site (slug) whose key hashes the UID")
    badge.add_argument("--uid", required=True, help="the card UID in hex")
    agent = add("agent", help="register an agent and print its agent.toml")
    agent.add_argument("--site", required=True)
    agent.add_argument("--id", required=True, help="the agent id, e.g. door-a")
    agent.add_argument("--broker-host", default="127.0.0.1", help="for the printed config")
    agent.add_argument("--broker-port", type=int, default=8883, help="for the printed config")
    for sub in (key, site, member, badge, agent):
        sub.set_defaults(handler=_admin)


def _add_audit(commands: Subparsers) -> None:
    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser(
        "verify", help="detect an edited or deleted row", parents=[_database_option()]
    )
    verify.set_defaults(handler=_audit_verify)


def _add_sim(commands: Subparsers) -> None:
    sim = commands.add_parser("sim", help="the hardware in software")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    sim_run = sim_commands.add_parser(
        "run", help="play a scenario file: radars on ptys, badges over nfcpy UDP"
    )
    sim_run.add_argument("--scenario", type=Path, required=True, help="the scenario TOML file")
    sim_run.add_argument("--dir", type=Path, help="where pty links go (default: here)")
    sim_run.set_defaults(handler=_sim_run)


def _add_bench(commands: Subparsers) -> None:
    bench = commands.add_parser("bench", help="benchmarks on this machine")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bench_edge = bench_commands.add_parser(
        "edge", help="CPU and memory of one agent with radars at 10 Hz and an NFC reader"
    )
    bench_edge.add_argument("--seconds", type=_positive, default=60.0, help="measure for (60)")
    bench_edge.add_argument("--radars", type=int, default=4, help="radars at 10 Hz (4)")
    bench_edge.add_argument("--json", action="store_true", help="print one JSON object")
    bench_edge.set_defaults(handler=_bench_edge)
    access = bench_commands.add_parser(
        "access", help="tap-to-unlock latency through a real broker and server"
    )
    access.add_argument("--taps", type=int, default=5000, help="how many taps (5000)")
    access.add_argument("--agents", type=int, default=4, help="doors tapping at once (4)")
    access.add_argument(
        "--oversized-bodies", type=int, default=0, metavar="N",
        help="meanwhile, N unauthenticated 32 MB requests to the API (0)",
    )  # fmt: skip
    access.add_argument("--json", action="store_true", help="print one JSON object")
    access.set_defaults(handler=_bench_access)
    ingest = bench_commands.add_parser(
        "ingest", help="presence events into SQL and InfluxDB through a real broker and server"
    )
    ingest.add_argument("--rate", type=_positive, default=10_000, help="events per second (10000)")
    ingest.add_argument("--seconds", type=_positive, default=60.0, help="publish for (60)")
    ingest.add_argument("--agents", type=int, default=40, help="simulated agents (40)")
    ingest.add_argument("--desks", type=int, default=50, help="desks per agent (50)")
    ingest.add_argument("--publishers", type=int, default=2, help="publisher processes (2)")
    ingest.add_argument("--workers", type=int, default=1, help="server processes (1)")
    ingest.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    ingest.add_argument(
        "--influx-down-at", type=float, metavar="S", help="stop InfluxDB S seconds in"
    )
    ingest.add_argument(
        "--influx-down-for", type=_positive, default=60.0, metavar="S",
        help="and start it again S seconds later (60)",
    )  # fmt: skip
    ingest.add_argument(
        "--kill-worker-at", type=float, metavar="S",
        help="SIGKILL one ingest process S seconds in (needs --workers 2+)",
    )  # fmt: skip
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.set_defaults(handler=_bench_ingest)


def _add_demo(commands: Subparsers) -> None:
    def speed(text: str) -> float:
        value = _positive(text)
        if not 1 <= value <= 86_400:
            raise argparse.ArgumentTypeError(f"must be 1 to 86400, not {text}")
        return value

    demo = commands.add_parser("demo", help="play a whole coworking day on this machine")
    demo.add_argument(
        "--speed", type=speed, default=120.0, metavar="X",
        help="simulated seconds per real second (default 120: the day in about 7 minutes)",
    )  # fmt: skip
    demo.add_argument(
        "--duration", type=_positive, metavar="S",
        help="stop after S seconds of the day (default: at closing time, or Ctrl-C)",
    )  # fmt: skip
    demo.add_argument(
        "--desks", type=_at_least_one, default=40,
        help="desks at the site, 8 to 200 (default 40)",
    )  # fmt: skip
    demo.add_argument(
        "--json", action="store_true", help="print only the summary, one JSON object, on stdout"
    )
    demo.add_argument("--dir", type=Path, help="working directory, kept (default: a temporary one)")
    demo.add_argument("--port", type=int, help="broker port (default: a free one)")
    demo.set_defaults(handler=_demo)


def _add_billing(commands: Subparsers) -> None:
    billing = commands.add_parser("billing", help="close a month, export invoices, print a PDF")
    actions = billing.add_subparsers(dest="billing_command", required=True, metavar="ACTION")
    add = functools.partial(actions.add_parser, parents=[_database_option()])
    close = add("close", help="issue the month's invoices (again: the same ones, nothing new)")
    close.add_argument("--period", required=True, help="the month, YYYY-MM (e.g. 2026-11)")
    close.add_argument("--site", help="one site (slug); default: every site")
    export = add("export", help="the month's invoice lines for accounting, as CSV or JSON")
    export.add_argument("--period", required=True, help="the month, YYYY-MM")
    export.add_argument("--site", help="one site (slug); default: every site")
    export.add_argument("--format", choices=["csv", "json"], default="csv", help="(csv)")
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    pdf = add("pdf", help="an issued invoice as a PDF")
    pdf.add_argument("--invoice", required=True, help="its key or number (lyon-2026-11-0001)")
    pdf.add_argument("--out", type=Path, required=True, help="the file to write")

    def run(args: argparse.Namespace) -> int:
        from datetime import UTC, datetime  # noqa: PLC0415

        from ruche.server import billing_commands as do  # noqa: PLC0415
        from ruche.server.errors import DomainError  # noqa: PLC0415

        url = _database(args)
        try:
            match args.billing_command:
                case "close":
                    do.close(url, period=args.period, site=args.site, now=datetime.now(UTC),
                             say=print, warn=lambda line: print(line, file=sys.stderr))  # fmt: skip
                case "export":
                    do.export(url, period=args.period, site=args.site, fmt=args.format,
                              out=args.out, say=print)  # fmt: skip
                case _:
                    do.pdf(url, invoice=args.invoice, out=args.out, say=print)
        except DomainError as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"{exc.filename or 'the file'}: {exc.strerror}") from exc
        return 0

    for sub in (close, export, pdf):
        sub.set_defaults(handler=run)


def _add_dashboards(commands: Subparsers) -> None:
    dashboards = commands.add_parser("dashboards", help="Grafana dashboards: export or push them")
    actions = dashboards.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--influx-url", default="http://127.0.0.1:8086",
                        help="InfluxDB as Grafana reaches it (http://127.0.0.1:8086)")  # fmt: skip
    source.add_argument("--database", default="ruche", help="the InfluxDB database (ruche)")
    source.add_argument(
        "--influx-token-env", metavar="NAME",
        help="environment variable holding an InfluxDB 2.x/3.x token (none: no auth)",
    )  # fmt: skip
    export = actions.add_parser(
        "export", parents=[source], help="write Grafana provisioning files and dashboard JSON"
    )
    export.add_argument("--out", type=Path, required=True, help="directory to write into")
    export.add_argument(
        "--dashboards-path", type=Path, metavar="PATH",
        help="where Grafana will read the JSON files (default: OUT/dashboards here)",
    )  # fmt: skip
    push = actions.add_parser(
        "push", parents=[source], help="create or update them in a running Grafana"
    )
    push.add_argument("--url", required=True, help="Grafana's URL, e.g. http://127.0.0.1:3000")
    push.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                      help="a service account token (default: $GRAFANA_TOKEN)")  # fmt: skip

    def run(args: argparse.Namespace) -> int:
        from ruche.dashboards.datasource import Datasource  # noqa: PLC0415

        env = args.influx_token_env
        try:
            datasource = Datasource(url=args.influx_url, database=args.database, token_env=env)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        if args.dashboards_command == "export":
            from ruche.dashboards.export import export as write  # noqa: PLC0415

            try:
                paths = write(args.out, datasource, dashboards_path=args.dashboards_path)
            except OSError as exc:
                raise CliError(f"{exc.filename or args.out}: {exc.strerror}") from exc
            for path in paths:
                print(f"wrote {path}")
            return 0
        from ruche.dashboards.push import PushError, push  # noqa: PLC0415

        if not args.token:
            raise CliError("give --token (a Grafana service account token) or set GRAFANA_TOKEN")
        influx_token = None
        if env is not None:
            influx_token = os.environ.get(env)
            if not influx_token:
                raise CliError(f"--influx-token-env {env}: that variable is not set")
        try:
            report = push(args.url, args.token, datasource, influx_token=influx_token)
        except PushError as exc:
            raise CliError(str(exc)) from exc
        print(f"data source {datasource.uid}: {report.datasource}; folder: {report.folder}")
        for uid, version in report.dashboards:
            print(f"dashboard {uid}: version {version}")
        return 0

    for sub in (export, push):
        sub.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruche", description="Desk occupancy and door access control for coworking spaces."
    )
    parser.add_argument("--version", action="version", version=f"ruche {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_broker, _add_edge, _add_server, _add_admin, _add_audit, _add_sim, _add_bench,
        _add_demo, _add_billing, _add_dashboards,
    ):  # fmt: skip
        add(commands)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"ruche: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
