"""Every example in a module's docstrings runs, and shows what it says: a module that
carries `>>>` examples is found by walking the package, so a new one is never missed."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

SKIP = {"ruche.__main__"}
"""Importing it runs the command."""


def _modules() -> list[str]:
    """Every module of every package the distribution maps (an editable install maps each
    folder on its own, so each is walked from its own path)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    names = set()
    for package in config["package-dir"]:
        root = importlib.import_module(package)
        names.add(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            names.add(info.name)
    return sorted(names - SKIP)


def _with_examples() -> list[str]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            continue
        if ">>> " in source:
            found.append(name)
    return found


MODULES = _with_examples()


def test_the_walk_finds_the_examples() -> None:
    assert {"ruche.broker.topics", "ruche.server.access.rules",
            "ruche.server.registry.schedule_spec"} <= set(MODULES)  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(module, optionflags=flags, report=True)
    assert attempted > 0, f"{name} has no example doctest can run"
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (see above)"
