"""The server's commands: `ruche server run|ingest|migrate|broker-config|backup|restore`,
`ruche admin ...`, `ruche audit verify` and `ruche billing close|export|pdf`.

The parsers import nothing but argparse; each handler imports what it runs (see pyproject's
per-file ignores): `ruche audit verify` loads the audit log and SQLAlchemy, never FastAPI.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ruche.commands import CliError, Filler, at_least_one, install_units
from ruche.logs import configure_logging
from ruche.server.deploy import commands as deploy_cli
from ruche.server.errors import DomainError
from ruche.server.storage.enums import Role
from ruche.server.storage.urls import DEFAULT_URL

if TYPE_CHECKING:
    from ruche.server.settings import ServerSettings

DATABASE_HELP = "SQLAlchemy URL (default: $RUCHE_DATABASE_URL or sqlite:///ruche.db)"


def _database(args: argparse.Namespace) -> str:
    return str(args.database or os.environ.get("RUCHE_DATABASE_URL") or DEFAULT_URL)


def _database_option() -> argparse.ArgumentParser:
    """`--database`, for every command that opens the registry."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--database", help=DATABASE_HELP)
    return parent


def _checked(url: str, *, schema: bool = True) -> str:
    """`url`, once it parses, connects and (with `schema`) is at the latest schema; else
    a CliError naming the fix (`ruche server migrate ...`, say), the password hidden.
    Handlers call it before they import what uses the database: a refusal comes at once."""
    from ruche.server.storage.checks import UnusableDatabaseError, check_database

    try:
        check_database(url, schema=schema)
    except UnusableDatabaseError as exc:
        raise CliError(str(exc)) from exc
    return url


def _preflight(settings: ServerSettings, *, migrates: bool) -> None:
    """What `server run` and `server ingest` can tell before they start, each said in one
    line: the database (`migrates`: it need not be at the latest schema yet), the files
    and folders the config names, and the broker's host name (now rather than after the
    workers' 30 s wait for a connection)."""
    from ruche.config import check_ca_file, check_folder

    _checked(settings.database_url, schema=not migrates)
    if settings.mqtt.ca_file is not None:
        check_ca_file(settings.mqtt.ca_file, CliError, what="CA file (mqtt.ca_file)")
    if settings.influx is not None:
        check_folder(settings.influx.spool_dir, CliError, what="influx.spool_dir")
    host = settings.mqtt.host
    try:
        socket.getaddrinfo(host, settings.mqtt.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(f"MQTT broker host {host!r} is unknown ({exc.strerror}): correct "
                       "[mqtt] host in the config file (or RUCHE_MQTT__HOST)") from exc  # fmt: skip


# --- ruche server -------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from ruche.server.settings import ServerConfigError, load_server_settings

    configure_logging(args.log_level)
    try:
        settings = load_server_settings(args.config)
        _preflight(settings, migrates=True)
        # The whole server loads once the checks pass: a refusal is said at once.
        from ruche.server.run import run_server

        return run_server(
            settings, workers=args.workers, config=args.config, log_level=args.log_level
        )
    except (ServerConfigError, TimeoutError) as exc:
        raise CliError(str(exc)) from exc


def _ingest(args: argparse.Namespace) -> int:
    from ruche.server.settings import ServerConfigError, load_server_settings

    configure_logging(args.log_level)
    try:
        settings = load_server_settings(args.config)
        _preflight(settings, migrates=False)
        from ruche.server.run import run_ingest

        return run_ingest(settings, name=args.name)
    except (ServerConfigError, TimeoutError) as exc:
        raise CliError(str(exc)) from exc


def _migrate(args: argparse.Namespace) -> int:
    from ruche.server.storage.checks import shown

    url = _checked(_database(args), schema=False)
    from ruche.server.storage.db import run_migrations

    run_migrations(url)
    print(f"database {shown(url)} is at the latest schema")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from ruche.broker.commands import write_for
    from ruche.server.settings import ServerConfigError, load_server_settings

    try:
        settings = load_server_settings(args.config)
        url = _checked(settings.database_url)
        from ruche.server.registry import admin

        users = admin.broker_users(
            url,
            server_username=settings.mqtt.username,
            server_password=settings.mqtt.password.get_secret_value(),
        )
    except (ServerConfigError, DomainError) as exc:
        raise CliError(str(exc)) from exc
    return write_for(users, args)


def _install(args: argparse.Namespace) -> int:
    from ruche.server.deploy.units import install_server

    return install_units(install_server, args.config, args.root)


def _configured_database(args: argparse.Namespace) -> str:
    from ruche.server.settings import ServerConfigError, load_server_settings
    from ruche.server.storage.checks import UnusableDatabaseError, parse

    try:
        url = load_server_settings(args.config).database_url
        parse(url)  # a URL it can read; whether the database is there, each command says
    except (ServerConfigError, UnusableDatabaseError) as exc:
        raise CliError(str(exc)) from exc
    return url


def _backup(args: argparse.Namespace) -> int:
    from ruche.server.deploy import backup

    url = _configured_database(args)
    if backup.is_postgres(url):
        raise CliError("the database is PostgreSQL: back it up with PostgreSQL's own tools: "
                       f"{backup.pg_dump_command(url, args.out)}")  # fmt: skip
    say = functools.partial(print, file=sys.stderr, flush=True)
    try:
        done = backup.backup_sqlite(url, args.out, on_progress=backup.ProgressLines(say))
    except backup.BackupError as exc:
        raise CliError(str(exc)) from exc
    print(backup.describe_backup(done))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from ruche.server.deploy import backup

    url = _configured_database(args)
    if backup.is_postgres(url):
        raise CliError("the database is PostgreSQL: restore it with PostgreSQL's own tools: "
                       f"{backup.pg_restore_command(url, args.source)}; `ruche server run` "
                       "then migrates it")  # fmt: skip
    try:
        done = backup.restore_sqlite(url, args.source, force=args.force)
    except backup.BackupError as exc:
        raise CliError(str(exc)) from exc
    print(backup.describe_restore(done))
    return 0


def _fill_server(parser: argparse.ArgumentParser) -> None:
    from ruche.broker.commands import add_listener_options

    actions = parser.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    deploy_cli.add_init(actions)
    run = actions.add_parser("run", help="the REST API and the MQTT workers")
    run.add_argument("--config", type=Path, help="the server's TOML file (RUCHE_ env overrides)")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.add_argument(
        "--workers", type=at_least_one, default=1,
        help="processes taking agents' events (1): N-1 `server ingest` children",
    )  # fmt: skip
    run.set_defaults(handler=_run)
    ingest = actions.add_parser(
        "ingest", help="one more process taking agents' events (what --workers N starts)"
    )
    ingest.add_argument("--config", type=Path, help="the server's TOML file (RUCHE_ env overrides)")
    ingest.add_argument(
        "--name", default="ingest",
        help="its InfluxDB spool folder under spool_dir; keep it across restarts (ingest)",
    )  # fmt: skip
    ingest.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    ingest.set_defaults(handler=_ingest)
    migrate = actions.add_parser(
        "migrate", help="bring the database to the latest schema", parents=[_database_option()]
    )
    migrate.set_defaults(handler=_migrate)
    broker = actions.add_parser(
        "broker-config",
        help="write Mosquitto's configuration for the agents of the registry",
        description="The server account from the config file, every agent with a broker "
        "password from the registry (`ruche broker config` takes them from a TOML file).",
    )
    broker.add_argument("--config", type=Path, required=True, help="the server's TOML file")
    add_listener_options(broker)
    broker.set_defaults(handler=_broker_config)
    save = actions.add_parser(
        "backup", help="copy the SQLite database, even while the server runs",
        description="A consistent copy through SQLite's online backup API, written to a "
        "temporary file and renamed. On PostgreSQL it prints the pg_dump command instead.",
    )  # fmt: skip
    save.add_argument("--config", type=Path, required=True, help="the server's TOML file")
    save.add_argument("--out", type=Path, required=True, help="the backup file to write")
    save.set_defaults(handler=_backup)
    restore = actions.add_parser(
        "restore", help="put a backup in place of the database (server stopped), then migrate",
        description="Checks that the file is a Ruche database, refuses while a server runs on "
        "the database, replaces an existing one only with --force, then migrates it.",
    )  # fmt: skip
    restore.add_argument("--config", type=Path, required=True, help="the server's TOML file")
    restore.add_argument("--from", dest="source", type=Path, required=True,
                         help="the backup file (from `ruche server backup`)")  # fmt: skip
    restore.add_argument("--force", action="store_true", help="replace an existing database")
    restore.set_defaults(handler=_restore)
    units = actions.add_parser(
        "install", help="write ruche-server.service and Mosquitto's drop-in for systemd",
        description="Units for this installation's `ruche`, the config file given and "
        "Mosquitto's configuration beside it (<dir>/mosquitto/mosquitto.conf).",
    )  # fmt: skip
    units.add_argument("--config", type=Path, required=True, help="the server's TOML file")
    units.add_argument(
        "--root", type=Path, default=Path("/"),
        help="write under this folder instead of / (to prepare an image)",
    )  # fmt: skip
    units.set_defaults(handler=_install)


# --- ruche admin, ruche audit --------------------------------------------------------


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise CliError(f"UID {text!r} is not hex (e.g. 04:a2:2b:1a or 04a22b1a)") from None


def _admin(args: argparse.Namespace) -> int:
    url = _checked(_database(args))
    from ruche.server.registry import admin

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
            case _:
                uid = _hex(args.uid)
                token = admin.enrol_badge(url, member_email=args.member, site=args.site, uid=uid)
                print(f"badge enrolled for {args.member}: token {token} (the UID is not stored)")
    except DomainError as exc:
        raise CliError(str(exc)) from exc
    return 0


def _read_password(email: str) -> str:
    """A password from standard input (one line) or, on a terminal, typed twice: never
    from the command line, where `ps` and shell histories would show it."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("no password on standard input: pipe one line, or run it on a terminal")
        return password
    password = getpass.getpass(f"new password for {email}: ")
    if getpass.getpass("the same again: ") != password:
        raise CliError("the two passwords differ: nothing changed")
    return password


def _person(args: argparse.Namespace) -> int:
    url = _checked(_database(args))
    from ruche.server.people import admin as people_admin

    try:
        if args.person_command == "add":
            person_id = people_admin.add_person(url, email=args.email, role=Role(args.role),
                                                site=args.site, locale=args.locale)  # fmt: skip
            print(f"account {args.email} created (id {person_id}); set its password with "
                  f"`ruche admin person password --email {args.email}`")  # fmt: skip
        else:
            ended = people_admin.set_password(
                url, email=args.email, password=_read_password(args.email)
            )
            print(f"password of {args.email} set; {ended} session(s) ended")
    except DomainError as exc:
        raise CliError(str(exc)) from exc
    return 0


def _fill_person(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    person = actions.add_parser("person", help="accounts of people who sign in to the pages")
    what = person.add_subparsers(dest="person_command", required=True, metavar="ACTION")
    add = what.add_parser("add", help="create an account (then set its password)",
                          parents=[_database_option()])  # fmt: skip
    add.add_argument("--email", required=True)
    add.add_argument("--role", choices=["admin", "manager", "member"], required=True,
                     help="member: the registry member of that e-mail")  # fmt: skip
    add.add_argument("--site", help="a manager's site (slug)")
    add.add_argument("--locale", choices=["fr", "en"], default="fr", help="its e-mails' language")
    password = what.add_parser(
        "password", help="set an account's password (from stdin, or typed) and end its sessions",
        parents=[_database_option()],
    )  # fmt: skip
    password.add_argument("--email", required=True)
    for sub in (add, password):
        sub.set_defaults(handler=_person)


def _fill_admin(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="admin_command", required=True, metavar="WHAT")
    add = functools.partial(actions.add_parser, parents=[_database_option()])
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
    for sub in (key, site, member, badge):
        sub.set_defaults(handler=_admin)
    _fill_person(actions)
    deploy_cli.add_agent(actions)


def _verify(args: argparse.Namespace) -> int:
    url = _checked(_database(args))
    from ruche.server.access import audit
    from ruche.server.storage.db import make_engine, make_sessions, transaction

    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            result = audit.verify(session)
    finally:
        engine.dispose()
    if result.ok:
        print(f"audit log intact: {result.checked} rows verified")
        return 0
    print(f"audit log TAMPERED at row {result.bad_id}: {result.problem} "
          f"({result.checked} rows read)", file=sys.stderr)  # fmt: skip
    return 1


def _fill_audit(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="detect an edited or deleted row", parents=[_database_option()]
    )
    verify.set_defaults(handler=_verify)


# --- ruche billing -------------------------------------------------------------------


def _billing(args: argparse.Namespace) -> int:
    url = _checked(_database(args))
    from ruche.server.billing import operator as billing

    try:
        match args.billing_command:
            case "close":
                billing.close(
                    url, period=args.period, site=args.site, now=datetime.now(UTC),
                    say=print, warn=lambda line: print(line, file=sys.stderr),
                )  # fmt: skip
            case "export":
                billing.export(url, period=args.period, site=args.site, fmt=args.format,
                               out=args.out, say=print)  # fmt: skip
            case _:
                billing.pdf(url, invoice=args.invoice, out=args.out, say=print)
    except DomainError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or 'the file'}: {exc.strerror}") from exc
    return 0


def _fill_billing(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="billing_command", required=True, metavar="ACTION")
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
    for sub in (close, export, pdf):
        sub.set_defaults(handler=_billing)


COMMANDS: dict[str, Filler] = {
    "server": _fill_server,
    "admin": _fill_admin,
    "audit": _fill_audit,
    "billing": _fill_billing,
}
