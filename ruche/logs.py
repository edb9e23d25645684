"""Logging for every `ruche` process: readable on a terminal, one JSON object per line elsewhere.

    configure_logging("INFO")            # JSON lines unless stderr is a terminal
    log.info("door decision", extra={"site": "lyon", "result": "allowed"})
    # {"ts": "2026-11-23T08:59:01.123+00:00", "level": "info", "logger": "...",
    #  "msg": "door decision", "site": "lyon", "result": "allowed"}

`RUCHE_LOG_FORMAT=json` or `text` overrides the terminal check (a service manager that
gives stderr a pty, say). `extra=` fields are keys of the JSON object, and `key=value`
pairs after the message in text.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from ruche.commands import CliError

FORMAT_VARIABLE = "RUCHE_LOG_FORMAT"
FORMATS = ("json", "text")

# What every record carries; anything else on a record came from `extra=`. `message`
# and `asctime` are set by other formatters (pytest's, say) on the same record;
# uvicorn adds `color_message`, its message again with terminal colour codes.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
CHATTY = ("httpx", "httpcore", "alembic.runtime.plugins")
"""Libraries that log every HTTP request at INFO (each InfluxDB write, each readiness
ping), and Alembic, each of its plugins as it loads (when a command first checks or
migrates a schema): kept to warnings unless the level asked for is DEBUG."""


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a record was given through `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra=` fields become keys (canonical log lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = extra_fields(record)
        # The fixed keys come last so that an `extra=` of the same name cannot hide them.
        entry.update(
            ts=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            level=record.levelname.lower(),
            logger=record.name,
            msg=record.getMessage(),
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS LEVEL logger: message key=value ...` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={value}" for key, value in fields.items())


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_level(level: str) -> str:
    """`level` in capitals, or CliError naming the levels there are (for `--log-level`).

    >>> check_level("debug")
    'DEBUG'
    """
    name = level.strip().upper()
    # logging's own names, so WARN and FATAL still do as they always did.
    if name not in logging.getLevelNamesMapping():
        raise CliError(f"--log-level {level!r} is not a log level: use {', '.join(LEVELS)}")
    return name


def wants_json(*, forced: str | None, tty: bool) -> bool:
    """JSON unless on a terminal, or as `RUCHE_LOG_FORMAT` says; raises ValueError for a
    value other than json or text."""
    if forced is None or not forced.strip():
        return not tty
    choice = forced.strip().lower()
    if choice not in FORMATS:
        raise ValueError(f"{FORMAT_VARIABLE}={forced!r}: use json or text")
    return choice == "json"


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send logs to `stream` (stderr): JSON lines unless it is a terminal (or as told).

    `json_lines` wins over `RUCHE_LOG_FORMAT`, which wins over the terminal check. A
    `RUCHE_LOG_FORMAT` that is neither json nor text is said in a warning, and ignored.
    A `level` that is not one of `LEVELS` is a CliError, before anything changes.
    """
    level = check_level(level)
    out = sys.stderr if stream is None else stream
    problem = None
    as_json = json_lines
    if as_json is None:
        try:
            as_json = wants_json(forced=os.environ.get(FORMAT_VARIABLE), tty=out.isatty())
        except ValueError as exc:
            problem = str(exc)
            as_json = not out.isatty()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )
    if problem is not None:
        logging.getLogger(__name__).warning("%s; choosing by the terminal instead", problem)
