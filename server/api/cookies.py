"""The two cookies of people's browsers, and the app's `People` (sign-in flows).

- `ruche_session`: the signed id of a server-side session (`ruche.server.people.sessions`);
  HttpOnly, SameSite=Lax, Secure when the request came over https.
- `ruche_csrf`: a random value the CSRF tokens of forms are bound to (`ruche.server.api.csrf`).
"""

from __future__ import annotations

from fastapi import Request, Response

from ruche.server.people.sessions import SESSION_TTL
from ruche.server.people.signin import People

SESSION_COOKIE = "ruche_session"
CSRF_COOKIE = "ruche_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def get_people(request: Request) -> People:
    people = request.app.state.people
    assert isinstance(people, People)  # noqa: S101 - set by create_app
    return people


def session_id(request: Request) -> str | None:
    """The session id the request's cookie carries, if it was signed by this server."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 500:
        return None
    return get_people(request).signer.get().session_id(cookie)


def set_session(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        get_people(request).signer.get().session_cookie(session_id),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )  # fmt: skip
