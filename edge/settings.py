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
"""

from __future__ import annotations

import re
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

from ruche.broker.topics import ID_PATTERN
from ruche.config import describe, is_placeholder, read_toml

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
Pin = Annotated[int, Field(ge=0, le=40)]
"""A BCM GPIO number on the Pi's header."""

_NFC_DEVICE = re.compile(r"^(usb(:[0-9a-fA-F:]+)?|tty:[\w./-]+(:\w+)?|udp(:[\w.-]+)?(:\d+)?)$")


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

    @field_validator("password")
    @classmethod
    def _not_placeholder(cls, value: SecretStr) -> SecretStr:
        if is_placeholder(value.get_secret_value()):
            raise ValueError("is a placeholder: set the agent's real broker password")
        return value


class DoorSettings(_Group):
    id: Id
    reader: str = "usb"
    """The nfcpy device string of this door's reader."""
    relay_pin: Pin
    contact_pin: Pin
    """The door contact (reed switch, made when closed): forced and held-open alarms need it."""
    exit_pin: Pin | None = None
    relay_active_high: bool = True
    exit_ms: int = Field(default=5000, ge=100, le=60_000)
    unlock_ms: int = Field(default=3000, ge=100, le=60_000)
    held_open_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("reader")
    @classmethod
    def _nfc_device(cls, value: str) -> str:
        if not _NFC_DEVICE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an nfcpy device: use usb, usb:VID:PID, tty:PORT:DRIVER "
                "or udp:HOST:PORT"
            )
        return value

    @model_validator(mode="after")
    def _distinct_pins(self) -> Self:
        pins = [p for p in (self.relay_pin, self.contact_pin, self.exit_pin) if p is not None]
        if len(pins) != len(set(pins)):
            raise ValueError(f"door {self.id} uses one pin twice: {pins}")
        return self


class DeskSettings(_Group):
    id: Id
    serial: str | None = None
    """Serial port of an LD2410 radar (e.g. /dev/ttyUSB0)."""
    baudrate: int = Field(default=256_000, ge=9600)
    pir_pin: Pin | None = None
    arrive_s: float = Field(default=5.0, ge=0, le=600)
    leave_s: float = Field(default=60.0, ge=0, le=3600)
    heartbeat_s: float = Field(default=300.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_sensor(self) -> Self:
        if (self.serial is None) == (self.pir_pin is None):
            raise ValueError(f"desk {self.id} needs exactly one of serial (radar) or pir_pin")
        return self


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
    def _unique_ids(self) -> Self:
        groups = (("door", [d.id for d in self.doors]), ("desk", [d.id for d in self.desks]))
        for kind, ids in groups:
            if len(ids) != len(set(ids)):
                raise ValueError(f"{kind} ids must be unique: {ids}")
        return self

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
