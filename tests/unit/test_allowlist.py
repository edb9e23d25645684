"""Offline door decisions from the cached allow-list: every reason, every edge, both policies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruche.broker import AllowEntry, Allowlist, OfflineDecision, Window, badge_token
from ruche.edge.allowlist import (
    AllowlistIndex,
    FailPolicy,
    OfflineVerdict,
    decide_offline,
)

SITE_KEY = b"0123456789abcdef-site-key"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SECURE, SAFE = FailPolicy.FAIL_SECURE, FailPolicy.FAIL_SAFE


def token(name: str) -> str:
    return badge_token(SITE_KEY, name.encode())


ALICE, BOB, CAROL, MALLORY, NOBODY = (
    token(n) for n in ("alice", "bob", "carol", "mallory", "nobody")
)


def window(start_h: float, end_h: float) -> Window:
    return Window(start=T0 + timedelta(hours=start_h), end=T0 + timedelta(hours=end_h))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def make_list(
    entries: tuple[AllowEntry, ...] = (),
    revoked: tuple[str, ...] = (),
    expires_h: float = 24,
    version: int = 3,
) -> Allowlist:
    return Allowlist(
        version=version,
        issued=T0 - timedelta(hours=1),
        expires=T0 + timedelta(hours=expires_h),
        entries=entries,
        revoked=revoked,
    )


ALLOWLIST = make_list(
    entries=(
        AllowEntry(token=ALICE, windows=(window(0, 10),)),  # every door, 08:00-18:00
        AllowEntry(token=BOB, windows=(window(1, 2), window(5, 6)), doors=("front",)),
        AllowEntry(token=MALLORY, windows=(window(0, 10),)),
        # Carol: two entries, one per door group, each with its own hours.
        AllowEntry(token=CAROL, windows=(window(0, 1),), doors=("front",)),
        AllowEntry(token=CAROL, windows=(window(2, 3),), doors=("lab",)),
    ),
    revoked=(MALLORY,),
)
INDEX = AllowlistIndex.build(ALLOWLIST)


def decide(
    tok: str, door: str = "front", hours: float = 1.5, policy: FailPolicy = SECURE
) -> OfflineVerdict:
    return decide_offline(INDEX, tok, door, at(hours), policy)


class TestReasons:
    """Each rule gives its own reason code, and each code fits the contract's pattern."""

    @pytest.mark.parametrize(
        ("tok", "door", "hours", "allowed", "reason"),
        [
            (ALICE, "front", 1.5, True, "allowlist_ok"),
            (ALICE, "any-other-door", 1.5, True, "allowlist_ok"),
            (MALLORY, "front", 1.5, False, "revoked"),
            (NOBODY, "front", 1.5, False, "unknown_badge"),
            (BOB, "front", 3.0, False, "outside_window"),
            (BOB, "back", 1.5, False, "wrong_door"),
            (BOB, "front", 5.5, True, "allowlist_ok"),
            (CAROL, "front", 0.5, True, "allowlist_ok"),
            (CAROL, "lab", 2.5, True, "allowlist_ok"),
            (CAROL, "lab", 0.5, False, "outside_window"),
            (CAROL, "front", 2.5, False, "outside_window"),
            (CAROL, "back", 0.5, False, "wrong_door"),
        ],
    )
    def test_reason(self, tok: str, door: str, hours: float, allowed: bool, reason: str) -> None:
        verdict = decide(tok, door, hours)
        assert (verdict.allowed, verdict.reason) == (allowed, reason)
        assert verdict.allowlist_version == 3
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,39}", verdict.reason)

    def test_plain_allowlist_is_indexed_on_the_fly(self) -> None:
        verdict = decide_offline(ALLOWLIST, ALICE, "front", at(1), SECURE)
        assert verdict == OfflineVerdict(allowed=True, reason="allowlist_ok", allowlist_version=3)


class TestWindows:
    """Windows are half-open: the start admits, the end does not."""

    @pytest.mark.parametrize(
        ("hours", "allowed"),
        [(0.999, False), (1.0, True), (1.999, True), (2.0, False), (4.0, False), (5.0, True)],
    )
    def test_edges(self, hours: float, allowed: bool) -> None:
        assert decide(BOB, hours=hours).allowed is allowed

    def test_other_timezones_compare_as_instants(self) -> None:
        paris = timezone(timedelta(hours=1))
        now = datetime(2026, 11, 23, 10, 30, tzinfo=paris)  # 09:30Z: Bob's 09:00-10:00Z
        assert decide_offline(INDEX, BOB, "front", now, SECURE).allowed is True

    def test_overlapping_windows(self) -> None:
        entry = AllowEntry(token=ALICE, windows=(window(0, 8), window(1, 2), window(3, 4)))
        index = AllowlistIndex.build(make_list(entries=(entry,)))
        assert decide_offline(index, ALICE, "front", at(5), SECURE).allowed is True
        assert decide_offline(index, ALICE, "front", at(8), SECURE).reason == "outside_window"

    def test_entry_without_windows_never_opens(self) -> None:
        index = AllowlistIndex.build(make_list(entries=(AllowEntry(token=ALICE, windows=()),)))
        assert decide_offline(index, ALICE, "front", at(1), SECURE).reason == "outside_window"

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            decide_offline(INDEX, ALICE, "front", datetime(2026, 11, 23, 9, 0), SECURE)  # noqa: DTZ001


class TestUnusableAllowlist:
    """Missing or expired lists deny under fail-secure and open under fail-safe."""

    @pytest.mark.parametrize(
        ("policy", "allowed", "reason"),
        [(SECURE, False, "no_allowlist"), (SAFE, True, "fail_safe")],
    )
    def test_missing(self, policy: FailPolicy, allowed: bool, reason: str) -> None:
        verdict = decide_offline(None, ALICE, "front", at(1), policy)
        assert verdict == OfflineVerdict(allowed=allowed, reason=reason, allowlist_version=None)

    @pytest.mark.parametrize(
        ("policy", "allowed", "reason"),
        [(SECURE, False, "allowlist_expired"), (SAFE, True, "fail_safe")],
    )
    @pytest.mark.parametrize("tok", [ALICE, NOBODY])
    def test_expired(self, policy: FailPolicy, allowed: bool, reason: str, tok: str) -> None:
        verdict = decide(tok, hours=24, policy=policy)  # exactly at `expires`: expired
        assert (verdict.allowed, verdict.reason, verdict.allowlist_version) == (allowed, reason, 3)

    def test_just_before_expiry_the_list_decides(self) -> None:
        index = AllowlistIndex.build(make_list(entries=ALLOWLIST.entries, expires_h=2))
        now = at(2) - timedelta(microseconds=1)
        assert decide_offline(index, NOBODY, "front", now, SAFE).reason == "unknown_badge"

    @pytest.mark.parametrize("policy", [SECURE, SAFE])
    def test_revoked_is_denied_even_when_expired(self, policy: FailPolicy) -> None:
        verdict = decide(MALLORY, hours=30, policy=policy)
        assert (verdict.allowed, verdict.reason) == (False, "revoked")

    def test_policy_accepts_config_strings(self) -> None:
        assert FailPolicy("fail_safe") is SAFE
        assert FailPolicy("fail_secure") is SECURE


class TestRevocation:
    """A revoked token is never allowed, whatever its entries, windows, door, time or policy."""

    def test_revoked_overrides_an_allowing_entry(self) -> None:
        assert decide(MALLORY, hours=1).reason == "revoked"

    @given(
        windows=st.lists(
            st.tuples(st.floats(-48, 48), st.floats(0.001, 48)).map(
                lambda sw: window(sw[0], sw[0] + sw[1])
            ),
            max_size=5,
        ),
        doors=st.none() | st.lists(st.sampled_from(["front", "back", "lab"]), max_size=3),
        door=st.sampled_from(["front", "back", "lab"]),
        hours=st.floats(-72, 72),
        expires_h=st.floats(-0.5, 72),  # issued is at -1 h
        policy=st.sampled_from(FailPolicy),
    )
    def test_never_allowed(
        self,
        *,
        windows: list[Window],
        doors: list[str] | None,
        door: str,
        hours: float,
        expires_h: float,
        policy: FailPolicy,
    ) -> None:
        entry = AllowEntry(
            token=MALLORY,
            windows=tuple(windows),
            doors=None if doors is None else tuple(doors),
        )
        allowlist = make_list(entries=(entry,), revoked=(MALLORY,), expires_h=expires_h)
        verdict = decide_offline(AllowlistIndex.build(allowlist), MALLORY, door, at(hours), policy)
        assert verdict == OfflineVerdict(allowed=False, reason="revoked", allowlist_version=3)


class TestLargeList:
    """A 10,000-entry list indexes once and decides every token correctly."""

    def test_ten_thousand_entries(self) -> None:
        tokens = [token(f"member-{i}") for i in range(10_000)]
        entries = tuple(
            AllowEntry(
                token=t,
                windows=(window(0, 10),) if i % 2 == 0 else (window(20, 22),),
                doors=None if i % 3 else ("front",),
            )
            for i, t in enumerate(tokens)
        )
        revoked = tuple(tokens[::100])
        index = AllowlistIndex.build(make_list(entries=entries, revoked=revoked, expires_h=48))
        assert len(index) == 10_000
        for i, t in enumerate(tokens):
            verdict = decide_offline(index, t, "back", at(1), SECURE)
            if i % 100 == 0:
                expected = "revoked"
            elif i % 3 == 0:
                expected = "wrong_door"
            elif i % 2:
                expected = "outside_window"
            else:
                expected = "allowlist_ok"
            assert verdict.reason == expected, i


class TestVerdictPayload:
    """A verdict becomes the contract's OfflineDecision, which validates its reason."""

    @pytest.mark.parametrize("tok", [ALICE, MALLORY, NOBODY, BOB])
    def test_payload(self, tok: str) -> None:
        verdict = decide(tok, door="back")
        ts = at(1.5)
        payload = verdict.to_payload(token=tok, tap_seq=41, seq=42, ts=ts, mono=12.5)
        assert payload == OfflineDecision(
            seq=42,
            ts=ts,
            mono=12.5,
            token=tok,
            allowed=verdict.allowed,
            reason=verdict.reason,
            tap_seq=41,
            allowlist_version=3,
        )

    @pytest.mark.parametrize("policy", [SECURE, SAFE])
    def test_payload_without_allowlist(self, policy: FailPolicy) -> None:
        verdict = decide_offline(None, ALICE, "front", at(1), policy)
        payload = verdict.to_payload(token=ALICE, tap_seq=1, seq=2, ts=at(1), mono=0.0)
        assert payload.allowlist_version is None
