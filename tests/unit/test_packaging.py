"""One distribution, each folder under a unique `ruche.*` import name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestLayout:
    """Every package folder is mapped under `ruche`, and nothing bare is importable."""

    def test_every_package_folder_is_listed(self):
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
        mapping: dict[str, str] = config["package-dir"]
        listed = set(config["packages"])
        found = set()
        for name, folder in mapping.items():
            for init in (ROOT / folder).rglob("__init__.py"):
                relative = init.parent.relative_to(ROOT / folder)
                found.add(".".join([name, *relative.parts]))
        assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"

    def test_no_bare_packages(self, tmp_path):
        names = ("edge", "server", "broker", "sim", "dashboards")
        code = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, check=True)  # fmt: skip
        assert done.stdout.strip() == "[]"

    def test_mapped_packages_import(self, tmp_path):
        code = "import ruche.edge, ruche.server, ruche.broker, ruche.sim, ruche.dashboards"
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)

    def test_every_floor_module_is_held_to_the_floor(self):
        contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
        (floor,) = [c for c in contracts["contracts"] if c["type"] == "forbidden"]
        modules = {f"ruche.{p.stem}" for p in (ROOT / "ruche").glob("*.py")} - {
            "ruche.__init__",
            "ruche.__main__",
        }
        assert set(floor["source_modules"]) == modules, "list it in [tool.importlinter]"

    def test_console_command(self):
        done = subprocess.run([Path(sys.executable).with_name("ruche"), "--version"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        assert done.stdout.startswith("ruche ")
