"""What the end-to-end tests share: the wheel `python -m build` makes of this checkout, and
fresh virtualenvs with it installed (not editable), one per extra."""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from ruche import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("*.whl")
    assert built.name.startswith(DISTRIBUTION.replace("-", "_") + "-")
    return built


class Installed:
    """A fresh virtualenv with the wheel and one extra installed."""

    def __init__(self, root: Path, wheel: Path, extra: str | None) -> None:
        venv.create(root, with_pip=True)
        # Run from inside the venv, so that the checkout's `ruche/` is not on the path.
        self.cwd = root
        self.bin = root / "bin"
        spec = f"{wheel}[{extra}]" if extra else str(wheel)
        done = subprocess.run([str(self.bin / "pip"), "install", "-q", spec],
                              capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    def ruche(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "ruche"), *args], capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=self.cwd)  # fmt: skip

    def is_editable_free(self) -> bool:
        """The package comes from site-packages, not from this checkout."""
        code = "import ruche, pathlib; print(pathlib.Path(ruche.__file__).resolve())"
        done = subprocess.run([str(self.bin / "python"), "-c", code], capture_output=True,
                              text=True, check=True, cwd=self.cwd)  # fmt: skip
        return "site-packages" in done.stdout and str(ROOT) not in done.stdout


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Callable[[str], Installed]:
    made: dict[str, Installed] = {}

    def get(extra: str) -> Installed:
        if extra not in made:
            made[extra] = Installed(tmp_path_factory.mktemp(f"venv-{extra}"), wheel,
                                    None if extra == "core" else extra)  # fmt: skip
        return made[extra]

    return get
