"""The database a server uses when none is named: in a module of its own, free of
SQLAlchemy, so that reading the settings (and refusing a config file) does not load it."""

from __future__ import annotations

DEFAULT_URL = "sqlite:///ruche.db"
