"""`ruche edge run`: the agent on a Pi."""

from __future__ import annotations

import argparse
from pathlib import Path

from ruche.commands import CliError, Filler
from ruche.edge.nfc import NfcError
from ruche.edge.run import run_agent
from ruche.edge.settings import ConfigError
from ruche.logs import configure_logging


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        return run_agent(args.config)
    except (ConfigError, NfcError) as exc:
        raise CliError(str(exc)) from exc


def _fill_edge(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run the agent")
    run.add_argument("--config", type=Path, required=True, help="the agent's TOML file")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.set_defaults(handler=_run)


COMMANDS: dict[str, Filler] = {"edge": _fill_edge}
