"""Who may read a page, with the API's own rule, and what a page says when they may not.

Pages live under `PAGE_PREFIXES`: `/manage/...` for staff, `/my/...` for members (`/me`
is the API's "who am I"). A page
asks for its reader with `Reader`, `ManagerReader` or `MemberReader`; it loads path ids
with the API's resolvers (`ruche.server.api.deps`, `MemberInScope` and the like), so a
member who changes an id in the URL gets the same 403 (or 404) the API gives, here as a
page in their language. Nobody signed in: a redirect to `/signin?next=<this page>`.

```python
@router.get("/manage/members")
def members_page(request: Request, reader: ManagerReader, session: SessionDep) -> HTMLResponse:
    site, sites = site_choice(session, reader, request.query_params.get("site"))
    ...
```
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Final

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from ruche.server.api.deps import signed_in
from ruche.server.api.pages.rendering import render
from ruche.server.api.policy import Principal
from ruche.server.errors import Conflict, DomainError, Invalid, NotFound
from ruche.server.i18n import N_
from ruche.server.storage.enums import Role
from ruche.server.storage.models import SiteRow

PAGE_PREFIXES: Final = ("/manage", "/my")
"""Paths whose errors are pages rather than the API's JSON."""
STAFF: Final = frozenset({Role.MANAGER, Role.ADMIN})


class SignInRequired(Exception):  # noqa: N818 - it is a redirect, not a failure
    """Nobody is signed in on a page that needs someone: go to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def is_page(request: Request) -> bool:
    path = request.url.path
    return any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES)


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def page_reader(request: Request) -> Principal:
    """The person the session cookie signs in; else a redirect to sign in."""
    principal = signed_in(request)
    if principal is None:
        raise SignInRequired(_here(request))
    return principal


Reader = Annotated[Principal, Depends(page_reader)]


def manager_reader(reader: Reader) -> Principal:
    """A manager (of their site) or an admin."""
    if reader.role not in STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this page is for the site's staff")
    return reader


def member_reader(reader: Reader) -> Principal:
    """A member signed in as themself (staff have no member pages of their own)."""
    if reader.member_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this page is for members")
    return reader


ManagerReader = Annotated[Principal, Depends(manager_reader)]
MemberReader = Annotated[Principal, Depends(member_reader)]


def sites_of(session: Session, reader: Principal) -> list[SiteRow]:
    """The sites `reader` runs: every site for an admin, their own for a manager."""
    query = select(SiteRow).order_by(SiteRow.name, SiteRow.id)
    if reader.role is not Role.ADMIN:
        query = query.where(SiteRow.id == reader.site_id)
    return list(session.scalars(query))


def site_choice(
    session: Session, reader: Principal, slug: str | None
) -> tuple[SiteRow, list[SiteRow]]:
    """The site a staff page shows (`?site=<slug>`, else the first of theirs) and the
    ones they could switch to. A slug outside their sites is a 404, as for a site that
    does not exist: a manager learns nothing of other sites."""
    sites = sites_of(session, reader)
    if not sites:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no site yet")
    if slug is None:
        return sites[0], sites
    for site in sites:
        if site.slug == slug:
            return site, sites
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {slug[:64]!r}")


# --- what a page says when it cannot be shown ---------------------------------------------

TITLES: Final = {
    status.HTTP_400_BAD_REQUEST: N_("This request could not be understood"),
    status.HTTP_403_FORBIDDEN: N_("You cannot open this page"),
    status.HTTP_404_NOT_FOUND: N_("This page does not exist"),
    status.HTTP_409_CONFLICT: N_("This change clashes with what is recorded"),
    status.HTTP_422_UNPROCESSABLE_CONTENT: N_("Some of what was sent is not valid"),
    status.HTTP_503_SERVICE_UNAVAILABLE: N_("This page is not available right now"),
}
EXPLANATIONS: Final = {
    status.HTTP_403_FORBIDDEN: N_(
        "It belongs to someone else, or to a role you do not have. If you think you should"
        " see it, ask the site's manager."
    ),
    status.HTTP_404_NOT_FOUND: N_("Check the address, or go back to the previous page."),
}
_DOMAIN_STATUS: Final = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Conflict, status.HTTP_409_CONFLICT),
    (Invalid, status.HTTP_422_UNPROCESSABLE_CONTENT),
)


def error_page(request: Request, code: int, detail: str | None = None) -> Response:
    """The page for HTTP status `code`, in the reader's language. `detail` is the
    server's own words (English), shown under the translated title."""
    title = TITLES.get(code, N_("Something went wrong"))
    return render(request, "page_error.html", status_code=code, title=title,
                  explanation=EXPLANATIONS.get(code), detail=detail)  # fmt: skip


def _signin_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)  # noqa: S101 - registered for it only
    target = "/signin?next=" + urllib.parse.quote(exc.next_path, safe="")
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


def install(app: FastAPI) -> None:
    """Page errors as pages: sign-in redirects, and HTTP, domain and validation errors
    under `PAGE_PREFIXES` rendered; elsewhere, the handlers the app had (the API's JSON)."""
    previous_http = app.exception_handlers.get(StarletteHTTPException)
    previous_domain = app.exception_handlers.get(DomainError)
    previous_invalid = app.exception_handlers.get(RequestValidationError)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        if is_page(request) and exc.status_code >= 400:
            if exc.status_code == status.HTTP_401_UNAUTHORIZED:
                return _signin_redirect(request, SignInRequired(_here(request)))
            return error_page(request, exc.status_code, str(exc.detail))
        if previous_http is not None:
            return await _call(previous_http, request, exc)
        return await http_exception_handler(request, exc)

    async def on_domain(request: Request, exc: Exception) -> Response:
        if is_page(request) or previous_domain is None:
            code = next((c for kind, c in _DOMAIN_STATUS if isinstance(exc, kind)), 400)
            return error_page(request, code, str(exc))
        return await _call(previous_domain, request, exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        if is_page(request) or previous_invalid is None:
            return error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, None)
        return await _call(previous_invalid, request, exc)

    app.add_exception_handler(SignInRequired, _signin_redirect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_invalid)


async def _call(handler: object, request: Request, exc: Exception) -> Response:
    result = handler(request, exc)  # type: ignore[operator]
    if hasattr(result, "__await__"):
        result = await result
    assert isinstance(result, Response)  # noqa: S101 - an exception handler's answer
    return result
