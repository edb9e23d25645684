"""Files the agent keeps in its state folder (the cached allow-list, the applied config),
replaced whole: a power cut leaves the old file or the new one, never half of either."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, flush it to the SD card, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
