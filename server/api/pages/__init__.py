"""The pages people read, rendered on the server: one module per room (sign-in, members,
bookings, ...), each with its `router`; `routers()` finds them all, so a new page needs
no registration beyond its module."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """The `router` of every module of this package that has one, in name order."""
    found: list[APIRouter] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found
