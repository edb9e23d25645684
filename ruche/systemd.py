"""systemd unit files as Ruche writes them (`ruche edge install`, `ruche server install`):
each option under the reason it is there, values escaped as systemd reads them, and a file
written only when its text changes.

>>> unit = UnitFile("demo.service", "Written by hand.", (
...     Section("Service", (Option("ExecStart", exec_line("/usr/bin/true", "100%")),)),
... ))
>>> print(unit.render(), end="")
# Written by hand.
<BLANKLINE>
[Service]
ExecStart=/usr/bin/true 100%%
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

UNIT_DIR = Path("etc/systemd/system")
"""Where units for this machine go, under the root `--root` names (`/` by default)."""

Outcome = Literal["written", "unchanged"]


class UnitError(ValueError):
    """A unit cannot be written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Installed:
    """What an install did, what it noticed, and what the person runs next."""

    files: tuple[tuple[Path, Outcome], ...]
    warnings: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()

    def report(self) -> list[str]:
        """Each file as written or unchanged, then the commands to run next."""
        return [
            *(f"{outcome}: {path}" for path, outcome in self.files),
            "next:",
            *(f"  {step}" for step in self.next_steps),
        ]


@dataclass(frozen=True)
class Option:
    """One `Key=value` line, under the comment saying why it is there."""

    key: str
    value: str
    why: str = ""
    """The comment above it, one line per `\\n`; empty when the comment above an earlier
    option of the section covers this one too."""


@dataclass(frozen=True)
class Section:
    name: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class UnitFile:
    """A unit or drop-in, named relative to the unit directory
    (`ruche-agent.service`, `mosquitto.service.d/ruche.conf`)."""

    name: str
    header: str
    sections: tuple[Section, ...]

    def render(self) -> str:
        lines = [*_comment(self.header)]
        for section in self.sections:
            lines += ["", f"[{section.name}]"]
            for option in section.options:
                if option.why:
                    lines += _comment(option.why)
                lines.append(f"{option.key}={option.value}")
        return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def _no_newline(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise UnitError(f"{text!r}: a unit file value cannot hold a line break")
    return text


def escape(text: str) -> str:
    """A literal value: `%` would start a specifier (`%d`, `%S`)."""
    return _no_newline(text).replace("%", "%%")


def _quoted(text: str) -> str:
    if text and not any(c in text for c in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_arg(text: str) -> str:
    """One literal argument of an `ExecStart=` line: specifiers and `$` variables escaped,
    quoted when it holds a space or a quote."""
    return _quoted(escape(text).replace("$", "$$"))


def exec_line(program: str, *args: str) -> str:
    """An `ExecStart=` value from literal words; systemd wants `program` absolute."""
    if not program.startswith("/"):
        raise UnitError(f"{program!r}: systemd runs only absolute paths")
    return " ".join(exec_arg(word) for word in (program, *args))


def path_list(paths: Sequence[Path]) -> str:
    """A space-separated list of paths (`ReadWritePaths=`), quoted where needed."""
    return " ".join(_quoted(escape(str(path))) for path in paths)


def ruche_executable() -> Path:
    """The `ruche` command of the installation running now (the virtualenv's bin, or where
    pip put scripts for this interpreter); UnitError if there is none."""
    folders = (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent)
    for folder in folders:
        candidate = folder.absolute() / "ruche"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise UnitError(
        f"no `ruche` command in {' or '.join(map(str, dict.fromkeys(folders)))}: install "
        "Ruche with pip (pip install 'ruche-coworking[...]') and run its `ruche`"
    )


def absolute(path: Path) -> Path:
    """`path` from the working directory, `..` folded, symlinks kept: the file the person
    named stays the one the unit reads."""
    return Path(os.path.normpath(path.absolute()))


def install(units: Sequence[UnitFile], root: Path) -> list[tuple[Path, Outcome]]:
    """Write each unit under `root`/etc/systemd/system, only where its text differs from
    what is there (atomically, mode 0644). OSError when a file cannot be written."""
    done: list[tuple[Path, Outcome]] = []
    for unit in units:
        path = root / UNIT_DIR / unit.name
        text = unit.render()
        try:
            current: str | None = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current == text:
            done.append((path, "unchanged"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        tmp.chmod(0o644)  # whatever the umask took away: systemd and people read units
        tmp.replace(path)
        done.append((path, "written"))
    return done
