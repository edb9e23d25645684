"""Limits on guessing: wrong passwords and link requests counted per account and per
client address over a sliding window, in SQL (several processes may serve the API).

An attempt over a limit is refused before its password is checked: the refusal costs
no argon2 time, and says nothing about whether the password was right. Refusals are
counted by scope (`SignInStats`, `ruche_signin_refused_total`) and logged once a
window (`RefusalLog`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ruche.refusals import RefusalLog
from ruche.server.storage.models import SignInAttemptRow

log = logging.getLogger(__name__)

Scope = Literal["account", "address"]


@dataclass(frozen=True)
class Limits:
    per_account: int = 5
    """Counted attempts one e-mail may have in a window."""
    per_address: int = 20
    """Counted attempts one client address may have in a window (one office behind one
    address gets more than one person's share)."""
    window: timedelta = timedelta(minutes=15)


@dataclass
class SignInStats:
    refused: dict[str, int] = field(default_factory=dict)
    """Attempts refused, by the limit that refused them: `account`, `address`."""


class SignInLimits:
    """The sliding windows, over the rows of `signin_attempts`."""

    def __init__(self, limits: Limits | None = None, stats: SignInStats | None = None) -> None:
        self.limits = limits or Limits()
        self.stats = stats or SignInStats()
        self._refusals = RefusalLog(
            log, "sign-in", burst=1, interval=self.limits.window.total_seconds()
        )

    def refusal(self, session: Session, *, email: str, address: str, now: datetime) -> Scope | None:
        """The limit an attempt from `address` for `email` is over, if any (then counted)."""
        since = now - self.limits.window
        for scope, subject, most in (
            ("account", email, self.limits.per_account),
            ("address", address, self.limits.per_address),
        ):
            seen = session.scalar(
                select(func.count())
                .select_from(SignInAttemptRow)
                .where(
                    SignInAttemptRow.scope == scope,
                    SignInAttemptRow.subject == subject,
                    SignInAttemptRow.at > since,
                )
            )
            if (seen or 0) >= most:
                self.stats.refused[scope] = self.stats.refused.get(scope, 0) + 1
                self._refusals.refused(scope, address, f"{seen} attempts in the window")
                return scope  # type: ignore[return-value]
        return None

    def count(self, session: Session, *, email: str, address: str, now: datetime) -> None:
        """Count one attempt against both windows, and forget what has left them."""
        session.execute(
            delete(SignInAttemptRow).where(SignInAttemptRow.at <= now - self.limits.window)
        )
        session.add_all([
            SignInAttemptRow(scope="account", subject=email[:320], at=now),
            SignInAttemptRow(scope="address", subject=address[:320], at=now),
        ])  # fmt: skip
        session.flush()

    def forget_account(self, session: Session, email: str) -> None:
        """After a right password: the account's own failures no longer count."""
        session.execute(
            delete(SignInAttemptRow).where(
                SignInAttemptRow.scope == "account", SignInAttemptRow.subject == email
            )
        )
