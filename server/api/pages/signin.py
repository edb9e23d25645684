"""The pages a person reads before signing in: sign in (with a password or a link by
mail), forgot password, reset password; and the language switch.

Only the GETs live here: the forms post to `POST /signin`, `/signin/link`,
`/password/forgot` and `/password/reset`, which redirect back with `error=` or a notice
(`sent=link`, `sent=reset`, `reset=done`) that these pages put into words.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ruche.server.api.pages.rendering import LANGUAGE_COOKIE, render, safe_next
from ruche.server.i18n import LOCALES, N_

router = APIRouter(include_in_schema=False)

ERRORS: Final = {
    "bad_credentials": N_("Wrong email or password."),
    "rate_limited": N_("Too many attempts. Wait a few minutes, then try again."),
    "csrf": N_("This form had expired. Please try again."),
    "link_expired": N_("This link has expired or has already been used. Ask for a new one below."),
    "weak_password": N_("This password was refused as too weak: choose a longer one."),
}
"""What each `error=` code the sign-in endpoints redirect with says; unknown codes say
nothing rather than fail the page."""

NOTICES: Final = {
    ("sent", "link"): N_(
        "If an account uses this address, a sign-in link is on its way. Check your mail."
    ),
    ("sent", "reset"): N_(
        "If an account uses this address, a link to choose a new password is on its way."
        " Check your mail."
    ),
    ("reset", "done"): N_("Your password has been changed. Sign in with it now."),
}

_ONE_YEAR_S: Final = 365 * 24 * 3600
Code = Annotated[str | None, Query(max_length=40)]


def _message(error: str | None, notices: dict[str, str | None]) -> dict[str, str] | None:
    if error in ERRORS:
        return {"kind": "error", "text": ERRORS[error]}
    for (name, value), text in NOTICES.items():
        if notices.get(name) == value:
            return {"kind": "success", "text": text}
    return None


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    request: Request,
    error: Code = None,
    sent: Code = None,
    reset: Code = None,
    next_: Annotated[str | None, Query(alias="next")] = None,
) -> HTMLResponse:
    """Sign in with email and password, or ask for a one-time link by mail."""
    message = _message(error, {"sent": sent, "reset": reset})
    return render(request, "signin.html", message=message, next=safe_next(next_))


@router.get("/password/forgot", response_class=HTMLResponse)
def forgot_page(request: Request, error: Code = None, sent: Code = None) -> HTMLResponse:
    """Ask for a link that sets a new password."""
    message = _message(error, {"sent": sent})
    return render(request, "password_forgot.html", message=message)


@router.get("/password/reset", response_class=HTMLResponse)
def reset_page(
    request: Request,
    token: Annotated[str | None, Query(max_length=500)] = None,
    error: Code = None,
) -> HTMLResponse:
    """Choose a new password with the token the mail's link carries; without one, the page
    says so and points to the forgot page."""
    return render(request, "password_reset.html", token=token or "", message=_message(error, {}))


@router.get("/language/{locale}")
def switch_language(
    request: Request, locale: str, next_: Annotated[str | None, Query(alias="next")] = None
) -> RedirectResponse:
    """Remember `locale` in a cookie and go back to `next`: the switch works without
    JavaScript and before anyone signs in. An unknown locale keeps the current one."""
    response = RedirectResponse(safe_next(next_), status_code=303)
    if locale in LOCALES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            locale,
            max_age=_ONE_YEAR_S,
            path="/",
            samesite="lax",
            httponly=True,
            secure=request.url.scheme == "https",
        )
    return response
