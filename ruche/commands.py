"""What every package's `commands` module uses to add its subcommands to `ruche`.

A package fills in the parsers the CLI hands it (`ruche.cli.COMMANDS` says which
package owns which command) and sets `handler` on each leaf:

    def fill_edge(parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
        run = actions.add_parser("run", help="run the agent")
        run.set_defaults(handler=_run)

Handlers raise `CliError` for what the person at the terminal can fix: it is printed as
one line (`one_line`), without a traceback and with any URL's password hidden
(`hide_passwords`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

Handler = Callable[[argparse.Namespace], int]
Filler = Callable[[argparse.ArgumentParser], None]
"""Adds a command's arguments and subcommands to the parser made for it."""

if TYPE_CHECKING:
    from ruche.systemd import Installed

    # argparse names no public type for the object add_subparsers returns.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


class CliError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


HIDDEN = "***"
"""What stands for a password in anything printed (SQLAlchemy's own mask too)."""

# `scheme://user:password@`: the password is what lies between the first colon after the
# user and the @ (SQLAlchemy's own reading; it may hold a `/`). And `password=` given as
# a query parameter, which libpq accepts.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s]*:)[^@\s]+(?=@)")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s'\"]+", re.IGNORECASE)


def hide_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`.

    >>> hide_passwords("cannot open postgresql+psycopg://ruche:s3cret@db/ruche")
    'cannot open postgresql+psycopg://ruche:***@db/ruche'
    >>> hide_passwords("http://127.0.0.1:8086 and sqlite:///ruche.db stay as they are")
    'http://127.0.0.1:8086 and sqlite:///ruche.db stay as they are'
    """
    text = _URL_PASSWORD.sub(rf"\g<head>{HIDDEN}", text)
    return _QUERY_PASSWORD.sub(rf"\g<head>{HIDDEN}", text)


def one_line(text: str) -> str:
    r"""A message of several lines (a heading and one line per field, say) as one line,
    so that a script or a person reading stderr sees one error, one line.

    >>> one_line("server.toml: invalid:\n  mqtt.port: too big\n  http.host: missing")
    'server.toml: invalid: mqtt.port: too big; http.host: missing'
    """
    joined = ""
    for line in filter(None, (part.strip() for part in text.splitlines())):
        if joined:
            joined += " " if joined.endswith(":") else "; "
        joined += line
    return joined


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


def install_units(install: Callable[[Path, Path], Installed], config: Path, root: Path) -> int:
    """`ruche edge|server install`: write the units `install` renders for `config` under
    `root`, then say what was written, what to run next, and any warning."""
    try:
        done = install(config, root)
    except ValueError as exc:  # a config error, UnitError
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or root}: {exc.strerror}") from exc
    print("\n".join(done.report()))
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
