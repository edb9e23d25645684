"""What `ruche` loads before it runs a command: argparse for the parsers, and only what the
command itself uses, so that help and refusals come at once and an extra's libraries load
only for that extra's commands."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from ruche.cli import main
from ruche.server.deploy.agents import DEFAULT_CA_PATH

HEAVY = (
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "reportlab",
    "argon2", "jinja2", "babel", "cryptography", "prometheus_client", "pydantic_settings",
    "nfc", "serial", "gpiozero", "yaml", "grafana_client", "requests",
)  # fmt: skip
"""Libraries of the extras, which no parser needs."""


LOADED = "import json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds once `code` has run."""
    done = subprocess.run([sys.executable, "-c", f"{code}\n{LOADED}"], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return set(json.loads(done.stdout.splitlines()[-1]))


class TestParsers:
    """Every command's whole parser is built from argparse definitions alone."""

    def test_no_parser_loads_an_extra(self):
        code = (
            "from ruche.cli import COMMANDS, build_parser\n"
            "for name in COMMANDS:\n"
            "    build_parser([name])\n"
        )
        assert loaded_after(code).isdisjoint(HEAVY)

    def test_the_agent_ca_path_defaults_to_the_one_agents_use(self):
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
            main(["admin", "agent", "add", "--help"])
        assert f"({DEFAULT_CA_PATH})" in " ".join(shown.getvalue().split())


class TestRefusals:
    """A command refused before it does anything has loaded only what checked it."""

    def test_an_unusable_database_loads_neither_the_api_nor_alembic(self):
        code = (
            "import contextlib, io\n"
            "from ruche.cli import main\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            "    refused = main(['audit', 'verify', '--database', 'sqlite:////no/x.db'])\n"
            "assert refused == 2, refused\n"
        )
        loaded = loaded_after(code)
        assert "sqlalchemy" in loaded
        assert loaded.isdisjoint({"fastapi", "alembic", "reportlab", "argon2", "uvicorn"})
