"""Offline door decisions from the cached allow-list, when the server does not answer.

Pure: the allow-list, the tap and `now` (the agent's wall clock, timezone-aware) come in,
a verdict with a reason code goes out.

```python
index = AllowlistIndex.build(allowlist)  # once per received allow-list
verdict = decide_offline(index, token, "front", now, FailPolicy.FAIL_SECURE)
```

The rules, in order (the first that applies decides):

1. No allow-list received yet: allowed with `fail_safe` under `FailPolicy.FAIL_SAFE`,
   else denied with `no_allowlist`.
2. A revoked token is denied (`revoked`), whatever the policy, the expiry or its
   entries: a revocation always wins, even in an expired list.
3. The list has expired (`now >= expires`): allowed with `fail_safe` under
   `FailPolicy.FAIL_SAFE`, else denied with `allowlist_expired`.
4. A token without an entry is denied (`unknown_badge`).
5. A token whose entries all name other doors is denied (`wrong_door`); an entry's
   `doors` of None means all of the agent's doors.
6. A token allowed at this door only outside `now` is denied (`outside_window`).
   Windows are half-open: `start <= now < end`.
7. Otherwise allowed (`allowlist_ok`).

`issued` is not checked: a Pi has no real-time clock and may start with a wall clock
behind the server's; the windows and the expiry carry the time limits.

A token may appear in several entries (say, one per door group); it is allowed when
any of its entries opens this door now.

`AllowlistIndex.build` indexes a list once (O(n)), after which a decision costs one
dictionary lookup and a scan of that token's own windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from ruche.broker.payloads import AllowEntry, Allowlist, OfflineDecision

__all__ = [
    "AllowlistIndex",
    "FailPolicy",
    "Grant",
    "OfflineReason",
    "OfflineVerdict",
    "decide_offline",
]


class FailPolicy(StrEnum):
    """What a door does when it has no usable allow-list (none yet, or expired)."""

    FAIL_SECURE = "fail_secure"
    """Stay locked: deny every tap."""
    FAIL_SAFE = "fail_safe"
    """Open for any badge that is not known to be revoked."""


OfflineReason = Literal[
    "allowlist_ok",
    "fail_safe",
    "revoked",
    "unknown_badge",
    "wrong_door",
    "outside_window",
    "allowlist_expired",
    "no_allowlist",
]
"""Reason codes; each fits the contract's `OfflineDecision.reason`."""


@dataclass(frozen=True, slots=True)
class OfflineVerdict:
    """An offline decision: open or not, why, and from which allow-list version."""

    allowed: bool
    reason: OfflineReason
    allowlist_version: int | None = None

    def to_payload(
        self, *, token: str, tap_seq: int, seq: int, ts: datetime, mono: float
    ) -> OfflineDecision:
        """The contract's `OfflineDecision` event for this verdict."""
        return OfflineDecision(
            seq=seq,
            ts=ts,
            mono=mono,
            token=token,
            allowed=self.allowed,
            reason=self.reason,
            tap_seq=tap_seq,
            allowlist_version=self.allowlist_version,
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """One allow-list entry, indexed: the doors it opens and when."""

    doors: frozenset[str] | None
    """None: all of the agent's doors."""
    windows: tuple[tuple[datetime, datetime], ...]
    """(start, end) pairs, sorted by start."""

    @classmethod
    def of(cls, entry: AllowEntry) -> Grant:
        doors = None if entry.doors is None else frozenset(entry.doors)
        windows = tuple(sorted((w.start, w.end) for w in entry.windows))
        return cls(doors=doors, windows=windows)

    def opens(self, door: str) -> bool:
        return self.doors is None or door in self.doors

    def covers(self, now: datetime) -> bool:
        for start, end in self.windows:
            if now < start:
                return False  # sorted by start: no later window can hold `now`
            if now < end:
                return True
        return False


@dataclass(frozen=True, slots=True, eq=False)
class AllowlistIndex:
    """An allow-list indexed by token for constant-time lookups; build once per list."""

    version: int
    expires: datetime
    grants: Mapping[str, tuple[Grant, ...]]
    revoked: frozenset[str]

    @classmethod
    def build(cls, allowlist: Allowlist) -> AllowlistIndex:
        grants: dict[str, tuple[Grant, ...]] = {}
        for entry in allowlist.entries:
            grants[entry.token] = (*grants.get(entry.token, ()), Grant.of(entry))
        return cls(
            version=allowlist.version,
            expires=allowlist.expires,
            grants=MappingProxyType(grants),
            revoked=frozenset(allowlist.revoked),
        )

    def __len__(self) -> int:
        return len(self.grants)


def decide_offline(
    allowlist: AllowlistIndex | Allowlist | None,
    token: str,
    door: str,
    now: datetime,
    policy: FailPolicy,
) -> OfflineVerdict:
    """Decide a tap from the cached allow-list; see the module docstring for the rules.

    Pass an `AllowlistIndex`: an `Allowlist` is accepted too but is indexed on every
    call, which costs O(n).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (the agent's wall clock with an offset)")
    if allowlist is None:
        return _unusable(policy, "no_allowlist", version=None)
    index = allowlist if isinstance(allowlist, AllowlistIndex) else AllowlistIndex.build(allowlist)
    version = index.version
    if token in index.revoked:
        return OfflineVerdict(allowed=False, reason="revoked", allowlist_version=version)
    if now >= index.expires:
        return _unusable(policy, "allowlist_expired", version=version)
    grants = index.grants.get(token)
    if grants is None:
        return OfflineVerdict(allowed=False, reason="unknown_badge", allowlist_version=version)
    at_door = [grant for grant in grants if grant.opens(door)]
    if not at_door:
        return OfflineVerdict(allowed=False, reason="wrong_door", allowlist_version=version)
    if not any(grant.covers(now) for grant in at_door):
        return OfflineVerdict(allowed=False, reason="outside_window", allowlist_version=version)
    return OfflineVerdict(allowed=True, reason="allowlist_ok", allowlist_version=version)


def _unusable(
    policy: FailPolicy, reason: Literal["no_allowlist", "allowlist_expired"], *, version: int | None
) -> OfflineVerdict:
    if policy == FailPolicy.FAIL_SAFE:
        return OfflineVerdict(allowed=True, reason="fail_safe", allowlist_version=version)
    return OfflineVerdict(allowed=False, reason=reason, allowlist_version=version)
