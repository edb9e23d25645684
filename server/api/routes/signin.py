"""Signing in and out, links by e-mail and password resets: redirects and cookies only.

The pages (GET /signin, GET /password/reset, their forms) are rendered elsewhere; these
endpoints take the forms they post and answer 303 to the next page, or to
`/signin?error=<code>` (`bad_credentials`, `rate_limited`, `csrf`, `link_expired`). A
JSON client may post `{"email": ..., "password": ...}` to `/signin` and gets 200, 401
or 429 in JSON (it carries no CSRF token: a cross-site page cannot send JSON without
the browser asking the server first, and Ruche answers no such CORS request).
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ruche.server.api.cookies import (
    CSRF_COOKIE,
    CSRF_FIELD,
    clear_session,
    get_people,
    session_id,
    set_session,
)
from ruche.server.api.deps import signed_in
from ruche.server.errors import Invalid
from ruche.server.people.mail import Kind
from ruche.server.people.passwords import MAX_LENGTH
from ruche.server.people.signin import People, SignedIn

router = APIRouter(tags=["sign-in"], include_in_schema=False)

PeopleDep = Annotated[People, Depends(get_people)]
TokenPath = Annotated[str, Path(max_length=200)]
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
"""What `new_token` makes; a mangled link (cut by a mail reader, say) is just expired."""
MAX_FIELD = 2000
_LOCAL = re.compile(r"^/(?![/\\])[^\s\x00-\x1f\\]*$")


class SignInJson(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site (`/bookings?day=2`), else `/`: a sign-in
    must never send anyone to another site (`//evil.example`, `https://...`)."""
    if value and len(value) <= MAX_FIELD and _LOCAL.match(value):
        return value
    return "/"


def _to(path: str, **query: str) -> RedirectResponse:
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[: MAX_FIELD + 1] if isinstance(value, str) else ""


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _csrf_ok(request: Request, people: People, form: FormData) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    token = _field(form, CSRF_FIELD)
    return bool(cookie and token) and people.signer.get().csrf_matches(token, cookie)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _signed_in(
    request: Request, people: People, response: Response, signed: SignedIn
) -> Response:
    """`response` with the new session's cookie. A session the browser had before is
    ended: whoever planted or copied that cookie is not signed in with it."""
    previous = session_id(request)
    if previous is not None:
        await run_in_threadpool(people.sign_out, previous, now=datetime.now(UTC))
    set_session(request, response, signed.session_id)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/signin")
async def sign_in(request: Request, people: PeopleDep) -> Response:
    """A password sign-in: from the form, 303 to `next` or back to the page; in JSON, 200."""
    now = datetime.now(UTC)
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            body = SignInJson.model_validate_json(await request.body())
        except ValidationError as exc:
            wrong = exc.error_count()
            raise Invalid(
                f'a sign-in is {{"email": ..., "password": ...}}: {wrong} wrong'
            ) from None
        outcome = await run_in_threadpool(
            people.sign_in, body.email, body.password, address=_address(request), now=now
        )
        if outcome == "rate_limited":
            window = int(people.limits.limits.window.total_seconds())
            return JSONResponse({"detail": "too many attempts: try again later"}, status_code=429,
                                headers={"Retry-After": str(window)})  # fmt: skip
        if outcome == "bad_credentials":
            return JSONResponse({"detail": "wrong e-mail or password"}, status_code=401)
        return await _signed_in(request, people, JSONResponse({"signed_in": True}), outcome)
    form = await request.form()
    target = local_path(_field(form, "next"))
    back = {"next": target} if target != "/" else {}
    if not _csrf_ok(request, people, form):
        return _to("/signin", error="csrf", **back)
    email, password = _field(form, "email"), _field(form, "password")
    if not email or not password or len(password) > MAX_LENGTH:
        return _to("/signin", error="bad_credentials", **back)
    outcome = await run_in_threadpool(
        people.sign_in, email, password, address=_address(request), now=now
    )
    if isinstance(outcome, SignedIn):
        return await _signed_in(request, people, _to(target), outcome)
    return _to("/signin", error=outcome, **back)


@router.post("/password")
async def change_password(request: Request, people: PeopleDep) -> Response:
    """A signed-in person's new password (form: `current_password`, `password`,
    `csrf_token`, `next`): 303 to `next` with `password=changed`, signed in afresh
    while every other session ends; or back to `next` with `error=bad_credentials`,
    `rate_limited` or `weak_password`. The CSRF middleware has checked the token."""
    form = await request.form()
    target = local_path(_field(form, "next"))
    principal = await run_in_threadpool(signed_in, request)
    if principal is None or principal.person_id is None:
        return _to("/signin", next=target)
    try:
        outcome = await run_in_threadpool(
            people.change_password, principal.person_id, _field(form, "current_password"),
            _field(form, "password"), address=_address(request), now=datetime.now(UTC),
        )  # fmt: skip
    except Invalid:
        return _to(_with(target, error="weak_password"))
    if isinstance(outcome, SignedIn):
        response = _to(_with(target, password="changed"))  # noqa: S106 - a notice, no secret
        set_session(request, response, outcome.session_id)  # the old one has just ended
        return response
    return _to(_with(target, error=outcome))


def _with(path: str, **query: str) -> str:
    """`path` with `query` added to what it already asks."""
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(query)


@router.post("/signout")
async def sign_out(request: Request, people: PeopleDep) -> Response:
    """End the session (the CSRF middleware has checked the form's token)."""
    raw = session_id(request)
    if raw is not None:
        await run_in_threadpool(people.sign_out, raw, now=datetime.now(UTC))
    response = _to("/signin")
    clear_session(request, response)
    return response


async def _send_link(request: Request, people: People, kind: Kind) -> Response:
    form = await request.form()
    if not _csrf_ok(request, people, form):
        return _to("/signin", error="csrf")
    email = _field(form, "email")
    if not email or len(email) > 320:
        return _to("/signin", sent="link" if kind == "signin" else "reset")
    outcome = await run_in_threadpool(
        people.send_link, kind, email, address=_address(request),
        base_url=_base_url(request), now=datetime.now(UTC),
    )  # fmt: skip
    if outcome == "rate_limited":
        return _to("/signin", error="rate_limited")
    return _to("/signin", sent="link" if kind == "signin" else "reset")


@router.post("/signin/link")
async def send_signin_link(request: Request, people: PeopleDep) -> Response:
    """E-mail a one-time sign-in link; the same answer whether the address is known or not."""
    return await _send_link(request, people, "signin")


@router.get("/signin/link/{token}")
async def follow_signin_link(token: TokenPath, request: Request, people: PeopleDep) -> Response:
    """The link from the e-mail: once, before it expires; a session, and on to `/`."""
    signed = None
    if _TOKEN.match(token):
        signed = await run_in_threadpool(people.redeem_link, token, now=datetime.now(UTC))
    if signed is None:
        return _to("/signin", error="link_expired")
    return await _signed_in(request, people, _to("/"), signed)


@router.post("/password/forgot")
async def forgot_password(request: Request, people: PeopleDep) -> Response:
    """E-mail a one-time password reset link; the same answer whether the address is known."""
    return await _send_link(request, people, "reset")


@router.get("/password/reset/{token}")
def follow_reset_link(token: TokenPath) -> Response:
    """The link from the e-mail leads to the page that asks for the new password (the
    token is spent only when that form is posted)."""
    if not _TOKEN.match(token):
        return _to("/signin", error="link_expired")
    return _to("/password/reset", token=token)


@router.post("/password/reset")
async def reset_password(request: Request, people: PeopleDep) -> Response:
    """Set the new password, end every session of the person, on to the sign-in page."""
    form = await request.form()
    token = _field(form, "token")
    if not _TOKEN.match(token):
        return _to("/signin", error="link_expired")
    if not _csrf_ok(request, people, form):
        return _to("/password/reset", token=token, error="csrf")
    try:
        person = await run_in_threadpool(
            people.reset_password, token, _field(form, "password"), now=datetime.now(UTC)
        )
    except Invalid:
        return _to("/password/reset", token=token, error="weak_password")
    if person is None:
        return _to("/signin", error="link_expired")
    response = _to("/signin", reset="done")
    clear_session(request, response)
    return response
