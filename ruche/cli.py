"""The `ruche` command: a table of subcommands, each filled in by the package that owns it.

Only the package of the command being run is imported, and only its `commands` module at
first, whose parsers need argparse alone (each handler imports what it runs): `ruche edge
run` on a Pi never loads the server's dependencies, and `ruche --help` loads none. A
library missing for the command (SQLAlchemy for `ruche server migrate`, say) is one line
naming the extra to install, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ruche import DISTRIBUTION, __version__
from ruche.commands import CliError, Filler, Handler, hide_passwords, one_line


@dataclass(frozen=True)
class Command:
    module: str
    """The module whose `COMMANDS[name]` fills the command's parser."""
    help: str
    extra: str
    """The extras that install what the module needs (`pip install 'ruche-coworking[EXTRA]'`); empty
    when the core has it all."""


COMMANDS: dict[str, Command] = {
    "broker": Command("ruche.broker.commands", "the MQTT broker Ruche configures", ""),
    "edge": Command("ruche.edge.commands", "the agent on a Raspberry Pi", "edge"),
    "server": Command("ruche.server.commands", "the server", "server"),
    "admin": Command("ruche.server.commands",
                     "the first admin key, sites, members, badges, agents", "server"),
    "audit": Command("ruche.server.commands", "the hash-chained audit log", "server"),
    "billing": Command("ruche.server.commands", "close a month, export invoices, print a PDF",
                       "server"),
    "dashboards": Command("ruche.dashboards.commands", "Grafana dashboards: export or push them",
                          "dashboards"),
    "sim": Command("ruche.sim.commands", "the hardware in software", "sim"),
    "bench": Command("ruche.sim.commands", "benchmarks on this machine", "server,sim"),
    "demo": Command("ruche.sim.commands", "play a whole coworking day on this machine",
                    "server,sim"),
}  # fmt: skip


def _version(_: argparse.Namespace) -> int:
    print(f"ruche {__version__}")
    return 0


def _missing(name: str, exc: ModuleNotFoundError) -> CliError:
    """A module the command `name` imports is not installed: the extra that brings it."""
    extra = COMMANDS[name].extra
    wanted = f"{DISTRIBUTION}[{extra}]" if extra else DISTRIBUTION
    return CliError(
        f"`ruche {name}` needs {exc.name!r}, which is not installed: pip install '{wanted}'"
    )


def _filler(name: str) -> Filler:
    try:
        module = importlib.import_module(COMMANDS[name].module)
    except ModuleNotFoundError as exc:
        raise _missing(name, exc) from exc
    filler: Filler = module.COMMANDS[name]
    return filler


def _run(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        return handler(args)
    except ModuleNotFoundError as exc:
        # Handlers import the heavy parts (a benchmark's server, say) only when they run:
        # a library missing then is an extra to install, as in `_filler`. A missing
        # `ruche.*` module is a bug, and keeps its traceback.
        if args.command not in COMMANDS or (exc.name or "ruche").split(".")[0] == "ruche":
            raise
        raise _missing(args.command, exc) from exc


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the full tree of the command `argv` names (if any) and only the
    names and help lines of the others."""
    parser = argparse.ArgumentParser(
        prog="ruche", description="Desk occupancy and door access control for coworking spaces."
    )
    parser.add_argument("--version", action="version", version=f"ruche {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        if name == wanted:
            _filler(name)(sub)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(build_parser(arguments).parse_args(arguments))
    except CliError as exc:
        # One line, and never a password, whatever the message quotes (a URL, say).
        print(f"ruche: error: {one_line(hide_passwords(str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
