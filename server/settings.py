"""The server's configuration: one TOML file, overridable by `RUCHE_...` environment variables.

```toml
database_url = "postgresql+psycopg://ruche@db/ruche"   # default: sqlite:///ruche.db

[mqtt]
host = "127.0.0.1"
port = 1883
username = "ruche-server"
password = "..."

[http]
host = "127.0.0.1"
port = 8000

[influx]                 # optional: occupancy points for Grafana
url = "http://127.0.0.1:8086"
database = "ruche"

[mail]                   # optional: sign-in links and password resets by e-mail
host = "smtp.example.org"
port = 587
security = "starttls"    # none | starttls | tls
username = "ruche@example.org"
password = "..."
from_address = "Ruche <ruche@example.org>"
base_url = "https://ruche.example.org"   # where the links in the e-mails point
```

`RUCHE_DATABASE_URL=...` or `RUCHE_MQTT__PASSWORD=...` override the file.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ruche.config import describe, is_http_url, is_placeholder, read_toml
from ruche.server.storage.urls import DEFAULT_URL


class ServerConfigError(ValueError):
    """The server's configuration is invalid; the message names each field and why."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerMqtt(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = Field(default="ruche-server", min_length=1)
    password: SecretStr
    ca_file: Path | None = None
    keepalive: int = Field(default=30, ge=5, le=600)
    connect_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long `ruche server run|ingest` waits for the broker at start before saying it
    is unreachable (a broker starting at the same time comes up within it)."""
    agents_host: str | None = None
    """The broker's name or address as agents reach it over the site network (it must be
    in the broker's certificate): what `ruche admin agent add` writes in their files."""
    agents_port: int = Field(default=8883, ge=1, le=65535)
    """The broker's TLS port for agents."""

    @field_validator("password")
    @classmethod
    def _not_placeholder(cls, value: SecretStr) -> SecretStr:
        if is_placeholder(value.get_secret_value()):
            raise ValueError("is a placeholder: set the server's real broker password")
        return value


class ServerInflux(_Group):
    """Where occupancy points go: InfluxDB's v1-compatible API (1.x, 2.x, 3.x)."""

    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="ruche", min_length=1)
    retention_policy: str | None = Field(default=None, min_length=1)
    """Sent as `rp`: on 2.x, database and retention policy name the bucket through a DBRP
    mapping; unset, the database's default. Leave it unset on 3.x (docs/operations.md)."""
    token: SecretStr | None = None
    """InfluxDB 2.x/3.x token (sent as `Authorization: Token ...`)."""
    username: str | None = None
    password: SecretStr | None = None
    """InfluxDB 1.x user (or a 2.x v1 authorization), sent as HTTP basic auth."""
    spool_dir: Path = Path("ruche-spool")
    """Where points wait on disk while InfluxDB is down or slow; never dropped."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Refused here rather than spooling every point for ever: InfluxDB being down is
        # waited out, a URL no request can go to is not.
        if not is_http_url(value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8086")
        # The URL is logged with every failed write: a password in it would be too.
        if urllib.parse.urlsplit(value).password is not None:
            raise ValueError("holds a password: set username and password (or token) instead")
        return value

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> ServerInflux:
        # A password without its user would never be sent, and a token beside a user
        # leaves InfluxDB to pick one: both are mistakes better said at start.
        if self.password is not None and self.username is None:
            raise ValueError("password is set without username")
        if self.token is not None and self.username is not None:
            raise ValueError("set token (2.x, 3.x) or username and password (1.x), not both")
        return self


class ServerMail(_Group):
    """The SMTP server that sends sign-in links and password resets (`ruche.server.people.mail`)."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    """`tls`: TLS from the first byte (port 465); `starttls`: upgraded after EHLO (587)."""
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(min_length=3, max_length=320)
    base_url: str
    """The site as people reach it, e.g. https://ruche.example.org: the links' prefix."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("base_url")
    @classmethod
    def _base_http_url(cls, value: str) -> str:
        if not is_http_url(value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://ruche.example.org")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _password_with_user(self) -> ServerMail:
        if (self.password is None) != (self.username is None):
            raise ValueError("set both username and password, or neither")
        if self.password is not None and is_placeholder(self.password.get_secret_value()):
            raise ValueError("password is a placeholder: set the real SMTP password")
        return self


DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: the largest body the API takes (a member, a booking, a price version) is a few
kilobytes."""


class ServerHttp(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=64 * 1024 * 1024)
    """Larger request bodies are refused (413) before they are read or authenticated."""


class ServerSettings(BaseSettings):
    """Everything one server process needs; built in main(), never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="RUCHE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = DEFAULT_URL
    mqtt: ServerMqtt
    http: ServerHttp = ServerHttp()
    influx: ServerInflux | None = None
    """Without it, events are still stored in SQL, but no InfluxDB points are written."""
    mail: ServerMail | None = None
    """Without it, no sign-in link or password reset e-mail can be sent (passwords work)."""
    unlock_ms: int = Field(default=3000, ge=100, le=60_000)
    """How long an allowed tap releases the strike."""
    allowlist_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    """How far ahead the agents' cached allow-lists reach (and when they expire)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - signature set by pydantic-settings
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init data; the environment overrides them.
        return (env_settings, init_settings)


def load_server_settings(path: Path | None) -> ServerSettings:
    """Read the server's TOML config (if any) and RUCHE_ overrides; errors name each field."""
    data: dict[str, object] = {}
    if path is not None:
        data = read_toml(path, ServerConfigError, what="config file")
    try:
        return ServerSettings(**data)  # type: ignore[arg-type]
    except ValidationError as exc:
        where = path or "environment"
        raise ServerConfigError(f"{where}: invalid server configuration:\n{describe(exc)}") from exc
