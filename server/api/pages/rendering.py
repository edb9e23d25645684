"""Pages rendered on the server: the Jinja2 environment of each language, the layout's
context (who is reading, in which language, the navigation their role opens), and
`render`, which routes call.

```python
@router.get("/signin")
def signin_page(request: Request) -> HTMLResponse:
    return render(request, "signin.html", next="/")
```
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.routing import BaseRoute, Match

from ruche.server.api.cookies import session_id
from ruche.server.i18n import LOCALES, N_, Formats, choose_locale, translations
from ruche.server.i18n.formats import Width
from ruche.server.people.signin import People
from ruche.server.storage.enums import Role

TEMPLATES: Final = Path(__file__).parents[1] / "templates"
STATIC: Final = Path(__file__).parents[1] / "static"
ASSETS: Final = "/assets"
"""Where `STATIC` is served (the live floor's script and style too)."""
LANGUAGE_COOKIE: Final = "ruche_lang"
"""The language picked with the switch, for a reader who is not signed in."""
SITE_NAME: Final = "Ruche"
LANGUAGE_NAMES: Final = {"fr": "Français", "en": "English"}
"""Each language named in itself: a reader looks for their own language's name."""
_MAX_NEXT: Final = 2000


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person reading a page: what the layout needs of them."""

    name: str
    role: Role
    locale: str | None = None
    """Their own language setting: it outranks the browser's, and this browser's switch
    outranks it."""


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str
    """An English msgid, marked with `N_` and translated when rendered."""
    roles: frozenset[Role]


_STAFF: Final = frozenset({Role.MANAGER, Role.ADMIN})
_MEMBER: Final = frozenset({Role.MEMBER})

NAVIGATION: Final = (
    NavItem("/", N_("Live floor"), _STAFF),
    NavItem("/manage/alarms", N_("Alarms"), _STAFF),
    NavItem("/manage/members", N_("Members"), _STAFF),
    NavItem("/manage/bookings", N_("Bookings"), _STAFF),
    NavItem("/manage/guests", N_("Guests"), _STAFF),
    NavItem("/manage/utilisation", N_("Utilisation"), _STAFF),
    NavItem("/manage/invoices", N_("Invoices"), _STAFF),
    NavItem("/manage/audit", N_("Audit log"), _STAFF),
    NavItem("/my/book", N_("Book a desk"), _MEMBER),
    NavItem("/my/bookings", N_("My bookings"), _MEMBER),
    NavItem("/my/guests", N_("My guests"), _MEMBER),
    NavItem("/my/usage", N_("My usage"), _MEMBER),
    NavItem("/my/invoices", N_("My invoices"), _MEMBER),
    NavItem("/my/badge", N_("My badge"), _MEMBER),
    NavItem("/my/data", N_("My data"), _MEMBER),
    NavItem("/docs", N_("API"), frozenset({Role.ADMIN})),
)
"""The header's links, each for the roles it serves; a link shows once the app serves
its page (`navigation`), so a new page adds its route and, here, its row."""


def navigation(viewer: Viewer | None, served: frozenset[str] = frozenset()) -> list[NavItem]:
    """The links `viewer` may follow among the `served` paths (all, if none given);
    none for a reader who is not signed in."""
    if viewer is None:
        return []
    return [item for item in NAVIGATION
            if viewer.role in item.roles and (not served or item.path in served)]  # fmt: skip


def served_paths(request: Request) -> frozenset[str]:
    """The navigation's paths this app answers GET on (one without the live hub has no
    floor), worked out once per app by matching each path as a request would."""
    state = request.app.state
    served = getattr(state, "navigation_served", None)
    if not isinstance(served, frozenset):
        routes = request.app.router.routes
        served = frozenset(item.path for item in NAVIGATION if _answers_get(routes, item.path))
        state.navigation_served = served
    return served


def _answers_get(routes: Sequence[BaseRoute], path: str) -> bool:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
             "headers": [], "query_string": b""}  # fmt: skip
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def csrf_token(request: Request) -> str:
    """The CSRF token the middleware put on this request, or "" where none runs."""
    token = getattr(request.state, "csrf_token", "")
    return token if isinstance(token, str) else ""


def safe_next(value: str | None) -> str:
    """`value` when it is a path on this server, else `/`: a `next` that points elsewhere
    (`//evil.example`, `https://...`) would make the sign-in form an open redirect.

    >>> safe_next("/live?site=a"), safe_next("//evil.example"), safe_next("https://x")
    ('/live?site=a', '/', '/')
    """
    if not value or len(value) > _MAX_NEXT or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or any(ord(c) < 32 or c == "\\" for c in value):
        return "/"
    return value


def page_locale(request: Request, viewer: Viewer | None = None) -> str:
    """The reader's language: the switch's cookie (chosen in this browser, so it wins),
    else their own setting (what their e-mails use), else their browser's
    Accept-Language, else French."""
    setting = request.cookies.get(LANGUAGE_COOKIE) or (viewer.locale if viewer else None)
    return choose_locale(setting=setting, accept_language=request.headers.get("accept-language"))


def viewer_of(request: Request) -> Viewer | None:
    """The person the request's session cookie signs in, if its session is live."""
    people = getattr(request.app.state, "people", None)
    if not isinstance(people, People):
        return None  # an app without sign-in (a test's): nobody is signed in
    raw = session_id(request)
    holder = None if raw is None else people.holder(raw, now=datetime.now(UTC))
    if holder is None:
        return None
    return Viewer(name=holder.name, role=holder.role, locale=holder.locale)


# --- filters: values written for the reader (the context's `formats`) ---------------------


def _formats(context: Context) -> Formats:
    formats = context["formats"]
    assert isinstance(formats, Formats)  # noqa: S101 - render always puts it there
    return formats


@pass_context
def _date(context: Context, value: date, width: Width = "medium") -> str:
    return _formats(context).date(value, width)


@pass_context
def _time(context: Context, value: datetime, width: Width = "short") -> str:
    return _formats(context).time(value, width)


@pass_context
def _datetime(context: Context, value: datetime, width: Width = "short") -> str:
    return _formats(context).datetime(value, width)


@pass_context
def _duration(context: Context, value: timedelta) -> str:
    return _formats(context).duration(value)


@pass_context
def _amount(context: Context, value: Decimal | int | float, currency: str = "EUR") -> str:
    return _formats(context).amount(value, currency)


@functools.cache
def environment(locale: str) -> Environment:
    """The templates with `locale`'s messages installed: one environment per language, so
    concurrent requests in French and English never share a gettext."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",)),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Added to Environment by the i18n extension, so mypy cannot see it. newstyle: `_()`
    # escapes its %(name)s values and `{% trans %}` formats like it.
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        date=_date, time=_time, datetime=_datetime, duration=_duration, amount=_amount
    )
    env.globals.update(asset=lambda name: f"{ASSETS}/{name}")
    return env


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None = None,
    timezone: str = "UTC",
    status_code: int = 200,
    **context: Any,  # noqa: ANN401 - whatever the template reads
) -> HTMLResponse:
    """`template` rendered for the reader of `request`, in their language, with times in
    `timezone` (the site's). The layout gets `viewer`, its navigation, the CSRF token and
    the language switch; `context` is the page's own. Without `viewer`, the person the
    session cookie signs in, if any."""
    viewer = viewer if viewer is not None else viewer_of(request)
    locale = page_locale(request, viewer)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    layout: Mapping[str, Any] = {
        "request": request,
        "locale": locale,
        "formats": Formats(locale, timezone),
        "viewer": viewer,
        "nav": navigation(viewer, served_paths(request)),
        "current_path": request.url.path,
        "csrf_token": csrf_token(request),
        "site_name": SITE_NAME,
        "languages": [
            (code, LANGUAGE_NAMES[code], f"/language/{code}?next={urllib.parse.quote(here)}")
            for code in LOCALES
        ],
    }
    html = environment(locale).get_template(template).render({**layout, **context})
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Language"] = locale
    # The same URL reads differently by language: caches must key on what picks it.
    response.headers["Vary"] = "Accept-Language, Cookie"
    # A page holds its reader's CSRF token and, signed in, their own data: never cached.
    response.headers["Cache-Control"] = "no-store"
    # No other site may frame a page to trick a click on its forms.
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
