"""What every package's `commands` module uses to add its subcommands to `ruche`.

A package fills in the parsers the CLI hands it (`ruche.cli.COMMANDS` says which
package owns which command) and sets `handler` on each leaf:

    def fill_edge(parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
        run = actions.add_parser("run", help="run the agent")
        run.set_defaults(handler=_run)

Handlers raise `CliError` for what the person at the terminal can fix: it is printed as
one line, without a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

Handler = Callable[[argparse.Namespace], int]
Filler = Callable[[argparse.ArgumentParser], None]
"""Adds a command's arguments and subcommands to the parser made for it."""

if TYPE_CHECKING:
    # argparse names no public type for the object add_subparsers returns.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


class CliError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


def at_least_one(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def print_result(fields: Mapping[str, object], *, width: int = 16) -> None:
    """A benchmark's or a command's result, one `name: value` line each."""
    for key, value in fields.items():
        print(f"{key:>{width}}: {value}")
