"""CSRF protection for everything a browser posts with its session cookie.

Signed double submit: the `ruche_csrf` cookie holds a random value, set on the first
response that finds it missing, and every request gets `request.state.csrf_token`, that
value signed with the server's key (`CookieSigner.csrf_token`), for its forms
(`<input type="hidden" name="csrf_token" ...>`) and scripts (`X-CSRF-Token`).

A state-changing request (not GET, HEAD, OPTIONS) whose authority is the session
cookie must carry a token matching its cookie, as the form field `csrf_token` or the
header `X-CSRF-Token`, else 403. Exempt: requests with an `Authorization: Bearer` key
(the cookie then grants nothing), requests without a session cookie (nothing to
borrow), and the sign-in endpoints, which check the token themselves and answer a
missing one with a redirect (`SELF_CHECKED`).
"""

from __future__ import annotations

import json
import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ruche.server.api.cookies import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE
from ruche.server.people.signing import LazySigner

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SELF_CHECKED = frozenset({"/signin", "/signin/link", "/password/forgot", "/password/reset",
                          "/login"})  # fmt: skip
"""Paths whose routes check the token themselves (and redirect), or whose authority is in
the body (`/login` takes an API key, which no other site can know)."""
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_COOKIE = 200


class CsrfMiddleware:
    """ASGI middleware: `request.state.csrf_token` everywhere; the check where it matters."""

    def __init__(self, app: ASGIApp, *, signer: LazySigner) -> None:
        self.app = app
        self.signer = signer
        self._failing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            signer = await run_in_threadpool(self.signer.get)
        except Exception:  # the database is down: probes must still answer
            if not self._failing:  # once per outage, not once per request
                log.exception("the cookie key cannot be read: sign-in and forms unavailable")
            self._failing = True
            signer = None
        else:
            self._failing = False
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = not cookie or len(cookie) > MAX_COOKIE
        if fresh:
            cookie = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = (
            "" if signer is None else signer.csrf_token(cookie)
        )
        if _needs_token(request):
            if signer is None:
                await _refuse(send, 503, "sign-in is unavailable: the database does not answer")
                return
            token, receive = await _submitted_token(request, receive)
            if fresh or token is None or not signer.csrf_matches(token, cookie):
                await _refuse(
                    send, 403, "missing or wrong CSRF token: reload the page and try again"
                )
                return
        if not fresh or _bearer(request):
            await self.app(scope, receive, send)
            return
        secure = request.url.scheme == "https"

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                # token_urlsafe's alphabet needs no quoting in a cookie.
                value = f"{CSRF_COOKIE}={cookie}; HttpOnly; Path=/; SameSite=Lax"
                headers = MutableHeaders(scope=message)
                headers.append("set-cookie", value + ("; Secure" if secure else ""))
            await send(message)

        await self.app(scope, receive, with_cookie)


def _bearer(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


def _needs_token(request: Request) -> bool:
    return (
        request.method not in SAFE_METHODS
        and request.url.path not in SELF_CHECKED
        and SESSION_COOKIE in request.cookies
        and not _bearer(request)
    )


async def _submitted_token(request: Request, receive: Receive) -> tuple[str | None, Receive]:
    """The token from the header, else from the form body; and a `receive` that hands the
    app the body again when it had to be read here."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header, receive
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        return None, receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, once).form()
    except Exception:  # noqa: BLE001 - a malformed form carries no token
        return None, replay
    value = form.get(CSRF_FIELD)
    await form.close()
    return (value if isinstance(value, str) else None), replay


async def _refuse(send: Send, code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": code,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
