"""Reading Ruche's TOML files and saying exactly what is wrong with them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "password", "secret", "ruche"})
"""Values people leave in example files: refused as secrets outside the demo."""


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS


def read_toml(path: Path, error: type[Exception], *, what: str = "file") -> dict[str, Any]:
    """The file's table, or `error` saying it is missing or unreadable (with the parser's
    line and column for bad TOML)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: no such {what}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc


def describe(exc: ValidationError) -> str:
    """One line per problem, `field.path: reason`, indented under a heading."""
    return "\n".join(
        f"  {'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
