"""The agent's configuration: one TOML file, overridable by `RUCHE_...` environment variables.

```toml
site = "lyon"
agent = "door-a"
site_key = "hex of at least 16 random bytes"
state_dir = "/var/lib/ruche"

[mqtt]
host = "broker.lan"
port = 8883
username = "lyon/door-a"
password = "..."
ca_file = "/etc/ruche/ca.pem"

[[doors]]
id = "front"
reader = "usb"          # nfcpy device: usb, usb:072f:2200, tty:AMA0:pn532, udp:host:port
relay_pin = 17
contact_pin = 27
exit_pin = 22

[[desks]]
id = "desk-1"
serial = "/dev/ttyUSB0"  # an LD2410 radar
[[desks]]
id = "desk-2"
pir_pin = 5              # or a PIR sensor
```

Environment variables override the file: `RUCHE_MQTT__PASSWORD=...`.

An agent enrolled from the server needs only the first lines: with no `[[doors]]` and
no `[[desks]]`, it takes them from the server's retained `config` (the registry's doors
and desks of this agent, with their wiring) and applies each new version as it comes,
without a restart; it keeps the last one it applied in `state_dir` for the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ruche.broker.payloads import DeskSetup, DoorSetup, check_setup
from ruche.broker.topics import ID_PATTERN
from ruche.config import describe, is_placeholder, read_toml

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]


class ConfigError(ValueError):
    """The agent's configuration is invalid; the message names each field and why."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: SecretStr
    ca_file: Path | None = None
    """CA certificate of the broker's TLS listener; None means plain MQTT (loopback only)."""
    keepalive: int = Field(default=30, ge=5, le=600)
    resend_after_s: float = Field(default=5.0, gt=0, le=600)
    reconnect_max_s: float = Field(default=30.0, ge=1, le=600)
    """The longest wait between two attempts to reach the broker (the wait doubles from
    one second up to this): how soon an agent is back after the broker or its account is."""

    @field_validator("password")
    @classmethod
    def _not_placeholder(cls, value: SecretStr) -> SecretStr:
        if is_placeholder(value.get_secret_value()):
            raise ValueError("is a placeholder: set the agent's real broker password")
        return value


class DoorSettings(DoorSetup):
    """A door as the agent's file lists it: the contract's `DoorSetup`, typos refused."""

    model_config = ConfigDict(extra="forbid", strict=False)


class DeskSettings(DeskSetup):
    """A desk as the agent's file lists it: the contract's `DeskSetup`, typos refused."""

    model_config = ConfigDict(extra="forbid", strict=False)


class AgentSettings(BaseSettings):
    """Everything one agent needs; built in main(), never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="RUCHE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    site: Id
    agent: Id
    site_key: SecretStr
    """Hex key the badge UIDs are HMAC'd with: the same at every agent of the site."""
    state_dir: Path = Path("/var/lib/ruche")
    mqtt: MqttSettings
    doors: tuple[DoorSettings, ...] = ()
    desks: tuple[DeskSettings, ...] = ()
    request_timeout_ms: int = Field(default=300, ge=20, le=5000)
    """How long a door waits for the server before deciding from its allow-list."""
    offline_policy: Literal["fail_secure", "fail_safe"] = "fail_secure"
    """What a door does when the allow-list is missing or expired."""
    outbox_capacity: int = Field(default=500_000, ge=100)
    gpio: Literal["default", "mock"] = "default"
    """gpiozero's pin factory: `mock` runs the agent on a laptop with simulated pins."""

    @field_validator("site_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        try:
            raw = bytes.fromhex(value.get_secret_value())
        except ValueError:
            raise ValueError(
                "must be hex (python3 -c 'import secrets; print(secrets.token_hex(32))')"
            ) from None
        if len(raw) < 16:
            raise ValueError("must be at least 16 bytes (32 hex characters)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_setup(self.doors, self.desks)
        return self

    @property
    def managed(self) -> bool:
        """Doors and desks come from the server (`config`): the file lists none."""
        return not self.doors and not self.desks

    @property
    def site_key_bytes(self) -> bytes:
        return bytes.fromhex(self.site_key.get_secret_value())

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


def load_settings(path: Path) -> AgentSettings:
    """Read the agent's TOML config (and RUCHE_ overrides); ConfigError names every bad field."""
    data = read_toml(path, ConfigError, what="config file")
    try:
        return AgentSettings(**data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid agent configuration:\n{describe(exc)}") from exc
