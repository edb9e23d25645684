"""Signing in, out and back: the flows behind the sign-in endpoints, each in its own
transaction, returning plain values (a session id for the cookie, or why not).

```python
people = People(sessions, mailer=SmtpMailer(settings.mail), base_url=settings.mail.base_url)
outcome = people.sign_in("ada@example.org", "correct horse", address="192.0.2.7", now=now)
```
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from ruche.server.people import accounts
from ruche.server.people.limits import Limits, SignInLimits, SignInStats
from ruche.server.people.mail import Kind, Mailer, MailError, compose
from ruche.server.people.passwords import (
    check_new_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from ruche.server.people.sessions import (
    Holder,
    find_holder,
    open_session,
    revoke_session,
    touch_session,
)
from ruche.server.people.signing import LazySigner
from ruche.server.people.tokens import issue_token, redeem_token
from ruche.server.storage.db import READ_ONLY
from ruche.server.storage.models import PersonRow

log = logging.getLogger(__name__)

LINK_TTL = timedelta(minutes=15)
RESET_TTL = timedelta(minutes=60)
LINK_PATHS: dict[Kind, str] = {"signin": "/signin/link/", "reset": "/password/reset/"}


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    """For the cookie, signed (`LazySigner`)."""


Refused = Literal["bad_credentials", "rate_limited"]


class People:
    """Everything the sign-in endpoints need, built once per app."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        mailer: Mailer | None = None,
        base_url: str | None = None,
        limits: Limits | None = None,
        link_ttl: timedelta = LINK_TTL,
        reset_ttl: timedelta = RESET_TTL,
    ) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.base_url = base_url
        """Where links point; None: the address the request came to."""
        self.limits = SignInLimits(limits, SignInStats())
        self.signer = LazySigner(sessions)
        self.link_ttl = link_ttl
        self.reset_ttl = reset_ttl

    # --- with a password --------------------------------------------------------------

    def sign_in(
        self, email: str, password: str, *, address: str, now: datetime
    ) -> SignedIn | Refused:
        """A new session for the person, or why not. Over a limit, the password is not
        even checked; a wrong one counts against the account and the address."""
        subject = email.strip().lower()[:320]
        with self.sessions.begin() as session:
            if self.limits.refusal(session, email=subject, address=address, now=now):
                return "rate_limited"
            person = accounts.find_person(session, email)
            stored = person.password_hash if person is not None and person.active else None
            if not verify_password(stored, password) or person is None:
                self.limits.count(session, email=subject, address=address, now=now)
                return "bad_credentials"
            if stored is not None and needs_rehash(stored):
                person.password_hash = hash_password(password)
            self.limits.forget_account(session, subject)
            return SignedIn(open_session(session, person_id=person.id, now=now))

    def change_password(
        self, person_id: int, current: str, new: str, *, address: str, now: datetime
    ) -> SignedIn | Refused:
        """A signed-in person's new password, once the current one is checked (limited as
        sign-ins are); every session of the person ends, and a new one is returned for
        the browser that asked. Invalid when `new` breaks a rule."""
        check_new_password(new)
        with self.sessions.begin() as session:
            person = session.get(PersonRow, person_id)
            if person is None or not person.active:
                return "bad_credentials"
            if self.limits.refusal(session, email=person.email, address=address, now=now):
                return "rate_limited"
            if not verify_password(person.password_hash, current):
                self.limits.count(session, email=person.email, address=address, now=now)
                return "bad_credentials"
            accounts.set_password(session, person, new, now)
            return SignedIn(open_session(session, person_id=person.id, now=now))

    def sign_out(self, session_id: str, *, now: datetime) -> None:
        with self.sessions.begin() as session:
            revoke_session(session, session_id, now)

    def holder(self, session_id: str, *, now: datetime) -> Holder | None:
        """Who a session cookie's id belongs to, if the session is live."""
        with self.sessions() as session:
            session.connection(execution_options=READ_ONLY)
            live = find_holder(session, session_id, now)
        if live is not None and live.touch_due:
            with self.sessions.begin() as session:
                touch_session(session, live.id, now)
        return None if live is None else live.holder

    # --- with a link ------------------------------------------------------------------

    def send_link(
        self, kind: Kind, email: str, *, address: str, base_url: str, now: datetime
    ) -> Literal["sent", "rate_limited"]:
        """E-mail a one-time link of `kind` to the account of `email`, if there is one
        (or an active registry member of that e-mail, who gets a member account).
        Every request counts against the limits, known address or not, and answers the
        same: the answer tells nobody which addresses have accounts."""
        subject = email.strip().lower()[:320]
        ttl = self.link_ttl if kind == "signin" else self.reset_ttl
        with self.sessions.begin() as session:
            if self.limits.refusal(session, email=subject, address=address, now=now):
                return "rate_limited"
            self.limits.count(session, email=subject, address=address, now=now)
            person = accounts.member_account(session, email, now)
            if person is None or not person.active:
                return "sent"
            token = issue_token(session, person_id=person.id, purpose=kind, now=now, ttl=ttl)
            mail = compose(
                kind, locale=person.locale, to=person.email,
                link=f"{self.base_url or base_url.rstrip('/')}{LINK_PATHS[kind]}{token}",
                minutes=int(ttl.total_seconds() // 60),
            )  # fmt: skip
        # Sent once the token is committed, so the link works when it arrives.
        if self.mailer is None:
            log.warning(
                "a %s link for %s was not sent: no [mail] in the server's config", kind, mail.to
            )
            return "sent"
        try:
            self.mailer.send(mail)
        except MailError as exc:
            log.error("a %s link for %s was not sent: %s", kind, mail.to, exc)  # noqa: TRY400 - said in full
        return "sent"

    def redeem_link(self, token: str, *, now: datetime) -> SignedIn | None:
        """A session for the person a sign-in link was sent to; None once it was used
        or has expired."""
        with self.sessions.begin() as session:
            person = redeem_token(session, token, purpose="signin", now=now)
            if person is None:
                return None
            return SignedIn(open_session(session, person_id=person.id, now=now))

    def reset_password(self, token: str, password: str, *, now: datetime) -> PersonRow | None:
        """Set the password of the person a reset link was sent to, ending all their
        sessions; None when the link was used or has expired; Invalid (the link then
        still works) when the password breaks a rule."""
        check_new_password(password)  # before the token is spent
        with self.sessions.begin() as session:
            person = redeem_token(session, token, purpose="reset", now=now)
            if person is None:
                return None
            accounts.set_password(session, person, password, now)
            return person
