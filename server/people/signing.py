"""What signs the session and CSRF cookies: itsdangerous over a key every process of the
server shares, made once at first use and kept in SQL (`server_secrets`)."""

from __future__ import annotations

import hmac
import secrets
import threading
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.storage.models import ServerSecretRow

SECRET_NAME = "cookies"  # noqa: S105 - the row's name, not a secret
SECRET_BYTES = 64


def load_secret(sessions: sessionmaker[Session]) -> bytes:
    """The cookie key; made at first use. Two processes racing to make it both end up
    with the one that was stored first."""
    with sessions.begin() as session:
        row = session.get(ServerSecretRow, SECRET_NAME)
        if row is not None:
            return row.value
    value = secrets.token_bytes(SECRET_BYTES)
    try:
        with sessions.begin() as session:
            session.add(
                ServerSecretRow(name=SECRET_NAME, value=value, created_at=datetime.now(UTC))
            )
    except IntegrityError:
        with sessions.begin() as session:
            return session.get_one(ServerSecretRow, SECRET_NAME).value
    return value


class CookieSigner:
    """Signs and checks the values of `ruche_session` and of CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        self._sessions = URLSafeSerializer(secret, salt="ruche-session")
        self._csrf = URLSafeSerializer(secret, salt="ruche-csrf")

    def session_cookie(self, session_id: str) -> str:
        return self._sessions.dumps(session_id)

    def session_id(self, cookie: str) -> str | None:
        """The session id a cookie carries, or None if it was not signed here."""
        try:
            value = self._sessions.loads(cookie)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def csrf_token(self, cookie: str) -> str:
        """The token forms carry for the browser whose `ruche_csrf` cookie is `cookie`."""
        return self._csrf.dumps(cookie)

    def csrf_matches(self, token: str, cookie: str) -> bool:
        """Whether `token` was made here for this very cookie (signed double submit: a
        site that can set cookies on ours still cannot make a matching token)."""
        try:
            value = self._csrf.loads(token)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, cookie)


class LazySigner:
    """The signer, its key read from SQL on first need (not at import or app build,
    where the database may not be migrated yet)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._signer: CookieSigner | None = None
        self._lock = threading.Lock()

    def get(self) -> CookieSigner:
        with self._lock:
            if self._signer is None:
                self._signer = CookieSigner(load_secret(self._sessions))
            return self._signer
