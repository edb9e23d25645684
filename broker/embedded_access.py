"""What the embedded broker reads from Mosquitto's generated files (mosquitto.conf, the
password file, the ACL) and how it matches topics against filters and ACL patterns.

Pure parsing and matching, so the broker (`ruche.broker.embedded`) and Mosquitto serve one
configuration the same way: `$7$` PBKDF2 password hashes, `user`/`topic`/`pattern` ACL
lines, and access decided as Mosquitto's default ACL check decides it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruche.broker.embedded_codec import PacketError, Reason

__all__ = [
    "READ", "WRITE", "Acl", "ConfigError", "EmbeddedConfig", "Grants", "covers", "matches",
    "parse_filter", "read_passwords", "topic_levels",
]  # fmt: skip

READ = 1
WRITE = 2
_ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}
_UNLIMITED_PACKET = 268_435_455
"""The largest remaining length MQTT can express."""


_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "password_file": ("passwd", Path),
    "acl_file": ("acl", Path),
    "allow_anonymous": ("allow_anonymous", lambda v: v == "true"),
    # 0 means no limit, as in Mosquitto.
    "max_inflight_messages": ("max_inflight", lambda v: int(v) or 65_535),
    "max_queued_messages": ("max_queued", lambda v: int(v) or 1 << 62),
    "message_size_limit": ("message_size_limit", int),
    "max_packet_size": ("max_packet_size", lambda v: int(v) or _UNLIMITED_PACKET),
}
"""mosquitto.conf setting -> (EmbeddedConfig field, how to read its value)."""


def _directives(text: str) -> Iterator[tuple[int, str, str, str]]:
    """(line number, line, keyword, the rest) of a Mosquitto-style file's lines, blank
    lines and comments left out."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, rest = line.partition(" ")
            yield number, line, key, rest.strip()


class ConfigError(ValueError):
    """A configuration file the embedded broker cannot serve; the message says which line."""


@dataclass(frozen=True, kw_only=True)
class EmbeddedConfig:
    """The settings of a mosquitto.conf that the embedded broker honours.

    Everything else (persistence, TLS listeners, log settings, `user`) is ignored; the
    names of the settings ignored that change behaviour are in `ignored`, for the log.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    passwd: Path | None = None
    acl: Path | None = None
    allow_anonymous: bool = False
    max_inflight: int = 20
    max_queued: int = 1000
    message_size_limit: int = 0
    """0: no limit."""
    max_packet_size: int = _UNLIMITED_PACKET
    ignored: tuple[str, ...] = field(default=())

    @classmethod
    def read(cls, conf: Path) -> EmbeddedConfig:
        """Parse `conf` (a file written by `ruche.broker.mosquitto_config.write_config`)."""
        try:
            text = conf.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {conf}: {exc.strerror}") from exc
        config = cls()
        listeners: list[tuple[int, str, bool]] = []
        ignored: list[str] = []
        for number, line, key, rest in _directives(text):
            try:
                if key == "listener":
                    port, _, bind = rest.partition(" ")
                    listeners.append((int(port), bind.strip() or "0.0.0.0", False))  # noqa: S104 - Mosquitto's default
                elif key in ("certfile", "keyfile", "cafile") and listeners:
                    listeners[-1] = (*listeners[-1][:2], True)
                elif key in _SETTINGS:
                    name, parse = _SETTINGS[key]
                    config = replace(config, **{name: parse(rest)})
                elif key == "persistence" and rest == "true":
                    ignored.append("persistence (state is kept in memory only)")
            except ValueError as exc:
                raise ConfigError(f"{conf}:{number}: {line!r} is not a valid setting") from exc
        plain = [(port, bind) for port, bind, tls in listeners if not tls]
        if len(plain) < len(listeners):
            ignored.append("TLS listeners (the embedded broker speaks plain MQTT only)")
        if plain:
            config = replace(config, port=plain[0][0], host=plain[0][1])
        return replace(config, ignored=tuple(ignored))


def read_passwords(path: Path) -> dict[str, str]:
    """`username -> hash entry` of a Mosquitto password file (`user:$7$...` lines)."""
    users: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, entry = line.partition(":")
        if sep:
            users[user] = entry.strip()
    return users


@dataclass(frozen=True)
class _Rule:
    access: int
    """READ, WRITE, both, or 0 for deny."""
    topic: str


class Grants:
    """One client's access rules, resolved: `may_write`, `may_read` (a topic), and
    `may_subscribe` (a filter: granted when a readable pattern covers all it matches)."""

    def __init__(self, rules: list[tuple[int, str]]) -> None:
        self._deny = [topic_levels(t) for access, t in rules if access == 0]
        self._read = [topic_levels(t) for access, t in rules if access & READ]
        self._write = [topic_levels(t) for access, t in rules if access & WRITE]

    def may_write(self, topic: tuple[str, ...]) -> bool:
        return not any(matches(d, topic) for d in self._deny) and any(
            matches(w, topic) for w in self._write
        )

    def may_read(self, topic: tuple[str, ...]) -> bool:
        return not any(matches(d, topic) for d in self._deny) and any(
            matches(r, topic) for r in self._read
        )

    def may_subscribe(self, topic_filter: tuple[str, ...]) -> bool:
        return not any(covers(d, topic_filter) for d in self._deny) and any(
            covers(r, topic_filter) for r in self._read
        )


class Acl:
    """A Mosquitto `acl_file`: `user NAME` sections of `topic [read|write|readwrite|deny]
    TOPIC` lines, `pattern` lines for everyone with `%u` (username) and `%c` (client id),
    and topic lines before any `user` line for anonymous clients. No line, no access."""

    def __init__(
        self, users: dict[str, list[_Rule]], anonymous: list[_Rule], patterns: list[_Rule]
    ) -> None:
        self._users = users
        self._anonymous = anonymous
        self._patterns = patterns

    @classmethod
    def parse(cls, text: str, *, where: str = "acl") -> Acl:
        users: dict[str, list[_Rule]] = {}
        anonymous: list[_Rule] = []
        patterns: list[_Rule] = []
        current = anonymous
        for number, line, key, rest in _directives(text):
            if key == "user":
                current = users.setdefault(rest, [])
                continue
            if key not in ("topic", "pattern") or not rest:
                raise ConfigError(f"{where}:{number}: {line!r} is not an ACL line")
            word, _, topic = rest.partition(" ")
            if word in _ACCESS and topic.strip():
                rule = _Rule(_ACCESS[word], topic.strip())
            else:
                rule = _Rule(READ | WRITE, rest)
            (patterns if key == "pattern" else current).append(rule)
        return cls(users, anonymous, patterns)

    def grants(self, username: str | None, client_id: str) -> Grants:
        own = self._anonymous if username is None else self._users.get(username, [])
        rules = [(r.access, r.topic) for r in own]
        for rule in self._patterns:
            topic = rule.topic
            # As Mosquitto: a substitution that would smuggle a wildcard into the
            # pattern makes the pattern grant nothing.
            if "%u" in topic:
                if username is None or any(c in username for c in "+#"):
                    continue
                topic = topic.replace("%u", username)
            if "%c" in topic:
                if any(c in client_id for c in "+#"):
                    continue
                topic = topic.replace("%c", client_id)
            rules.append((rule.access, topic))
        return Grants(rules)


# --- topics -----------------------------------------------------------------------------


def topic_levels(topic: str) -> tuple[str, ...]:
    return tuple(topic.split("/"))


def parse_filter(text: str) -> tuple[str | None, str]:
    """`(share group, filter)` of a SUBSCRIBE's topic filter, the group None unless it is
    `$share/GROUP/filter`; PacketError(TOPIC_FILTER_INVALID) for an invalid one."""
    group = None
    inner = text
    if text.startswith("$share/"):
        _, group, *rest = text.split("/", 2)
        if not group or "+" in group or "#" in group or not rest or not rest[0]:
            raise PacketError(f"shared subscription {text!r}", Reason.TOPIC_FILTER_INVALID)
        inner = rest[0]
    if not inner:
        raise PacketError("an empty topic filter", Reason.TOPIC_FILTER_INVALID)
    levels = inner.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise PacketError(f"topic filter {text!r}", Reason.TOPIC_FILTER_INVALID)
    return group, inner


def matches(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Whether a topic name (as levels) matches a topic filter (as levels).

    As the spec says, `#` also matches the parent level (`a/#` matches `a`), and a filter
    starting with a wildcard does not match a topic starting with `$`. A topic name is a
    filter matching only itself, so this is `covers`.
    """
    return covers(pattern, topic)


def covers(pattern: tuple[str, ...], sub: tuple[str, ...]) -> bool:
    """Whether every topic the filter `sub` matches is also matched by `pattern`."""
    if sub[0][:1] == "$" and pattern[0] in ("+", "#"):
        return False
    n = len(sub)
    for i, level in enumerate(pattern):
        if level == "#":
            return True
        if i >= n:
            return False
        other = sub[i]
        if other == "#":
            return False
        if level == "+":
            continue
        if other != level:
            return False
    return len(pattern) == n
