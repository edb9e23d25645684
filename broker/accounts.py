"""Who may connect to the broker: the server account and one account per agent.

Read from a small TOML file for now (the server's registry later)::

    [server]
    username = "ruche-server"
    password = "a long random secret"

    [[agents]]
    site = "lyon"
    id = "door-a"
    password = "another long random secret"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ruche.broker.passwords import hash_password_cached
from ruche.broker.topics import ID_PATTERN
from ruche.config import describe, is_placeholder, read_toml

MIN_PASSWORD_LENGTH = 16


def agent_username(site: str, agent: str) -> str:
    """An agent's broker account, `{site}/{agent}`: unique across sites, never a valid
    server username. It is also the only client id that account may connect with."""
    return f"{site}/{agent}"


class AccountsError(ValueError):
    """The accounts file is missing, unreadable or invalid; the message says where."""


def _check_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if is_placeholder(secret) or len(secret) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters and not a placeholder "
            "(try: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return value


class ServerAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = "ruche-server"
    password: SecretStr

    _secret = field_validator("password")(_check_secret)


class AgentAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
    id: Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
    password: SecretStr

    _secret = field_validator("password")(_check_secret)

    @property
    def username(self) -> str:
        return agent_username(self.site, self.id)

    @property
    def client_id(self) -> str:
        """The one client id the broker accepts from this account."""
        return self.username


class Accounts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerAccount
    agents: tuple[AgentAccount, ...] = ()

    @field_validator("agents")
    @classmethod
    def _unique(cls, agents: tuple[AgentAccount, ...]) -> tuple[AgentAccount, ...]:
        seen: set[str] = set()
        for agent in agents:
            if agent.username in seen:
                raise ValueError(f"agent {agent.username} is listed twice")
            seen.add(agent.username)
        return agents


def load_accounts(path: Path) -> Accounts:
    """Read and validate an accounts file; AccountsError names the field that is wrong."""
    data = read_toml(path, AccountsError)
    try:
        return Accounts.model_validate(data)
    except ValidationError as exc:
        raise AccountsError(f"{path}: invalid accounts:\n{describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class AgentUser:
    """An agent as the broker sees it: where it may publish, and its password's hash."""

    site: str
    id: str
    password_hash: str
    disabled: bool = False
    """Mosquitto refuses it (the account is kept: enabling it lets the agent in again)."""

    @property
    def username(self) -> str:
        return agent_username(self.site, self.id)

    @property
    def client_id(self) -> str:
        return self.username


@dataclass(frozen=True, slots=True)
class BrokerUsers:
    """Who may connect, with hashed passwords only: what the broker's accounts file needs.

    Built from an accounts file (`from_accounts`, hashing its clear passwords) or from
    the server's registry, which stores only the agents' hashes.
    """

    server_username: str
    server_hash: str
    agents: tuple[AgentUser, ...] = ()

    @classmethod
    def from_accounts(cls, accounts: Accounts) -> BrokerUsers:
        return cls(
            server_username=accounts.server.username,
            server_hash=hash_password_cached(accounts.server.password.get_secret_value()),
            agents=tuple(
                AgentUser(a.site, a.id, hash_password_cached(a.password.get_secret_value()))
                for a in accounts.agents
            ),
        )
