"""Reading Ruche's TOML files, and the files and folders they name, and saying exactly
what is wrong with them."""

from __future__ import annotations

import ssl
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "password", "secret", "ruche"})
"""Values people leave in example files: refused as secrets outside the demo."""


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS


def is_http_url(url: str) -> bool:
    """Whether a request can go to `url`: http or https, a host, a port if any in range.

    >>> is_http_url("http://127.0.0.1:8086"), is_http_url("localhost:8086")
    (True, False)
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is no number, or out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok


def read_toml(path: Path, error: type[Exception], *, what: str = "file") -> dict[str, Any]:
    """The file's table, or `error` saying it is missing or unreadable (with the parser's
    line and column for bad TOML), each in one line that says what to do."""
    data = read_file(path, error, what=what)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                    f"{exc.start}): save the {what} as UTF-8") from exc  # fmt: skip
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: cannot read the {what} as TOML: {exc}") from exc


def read_file(path: Path, error: type[Exception], *, what: str = "file") -> bytes:
    """The file's bytes, or `error` saying in one line why it cannot be read and what to do."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise error(f"{path}: no such {what}") from exc
    except IsADirectoryError as exc:
        raise error(f"{path}: is a directory: give the path of the {what} in it") from exc
    except PermissionError as exc:
        raise error(f"{path}: permission denied: make the {what} readable by this user") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def check_ca_file(path: Path, error: type[Exception], *, what: str = "CA file") -> None:
    """`error` unless TLS can load `path` as CA certificates: said at start, in one line,
    rather than as a traceback from the MQTT client's first connection."""
    read_file(path, error, what=what)
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise error(f"{path}: no certificate in this {what} ({reason}): give the CA's "
                    "certificate in PEM (-----BEGIN CERTIFICATE-----)") from exc  # fmt: skip


def check_folder(path: Path, error: type[Exception], *, what: str = "folder") -> None:
    """Make the folder `path` if need be, or `error` saying in one line why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise error(f"{path}: is a file: {what} must be a folder") from exc
    except OSError as exc:
        raise error(f"{path}: cannot make this folder ({what}): {exc.strerror or exc}") from exc


def describe(exc: ValidationError) -> str:
    """One line per problem, `field.path: reason`, indented under a heading."""
    return "\n".join(
        f"  {'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
