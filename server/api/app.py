"""The REST API's app factory: its routers, its error mapping and its body limit.

```python
from ruche.server.api.app import create_app
from ruche.server.storage.db import make_engine, make_sessions, run_migrations

run_migrations(url)
app = create_app(sessions=make_sessions(make_engine(url)), commands=sender, listener=listener)
```
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.access.sender import CommandSender
from ruche.server.api.body_limit import BodyLimit, BodyLimitStats
from ruche.server.api.csrf import CsrfMiddleware
from ruche.server.api.schemas import ErrorPublic, FieldError
from ruche.server.errors import Conflict, DomainError, Invalid, NotFound
from ruche.server.people.mail import SmtpMailer
from ruche.server.people.signin import People
from ruche.server.registry.listener import RegistryListener
from ruche.server.settings import DEFAULT_MAX_BODY_BYTES, ServerMail

if TYPE_CHECKING:
    from ruche.server.occupancy.live import LiveHub

from ruche.server.api import pages
from ruche.server.api.deps import Services
from ruche.server.api.pages import guard
from ruche.server.api.pages.rendering import ASSETS, STATIC
from ruche.server.api.routes import (
    audit,
    billing,
    bookings,
    doors,
    keys,
    members,
    sites,
    utilisation,
)
from ruche.server.api.routes import health as health_routes
from ruche.server.api.routes import live as live_routes
from ruche.server.api.routes import signin as signin_routes
from ruche.server.api.routes.health import HealthChecks

T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)

API_TITLE = "Ruche"
API_VERSION = "1"
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

# --- errors, documented once ---------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic, "description": "The body could not be parsed as JSON."},
    401: {"model": ErrorPublic, "description": "No API key, or an unknown or revoked one."},
    403: {"model": ErrorPublic, "description": "The key's role does not reach this resource."},
    404: {"model": ErrorPublic, "description": "The resource named does not exist."},
    409: {"model": ErrorPublic, "description": "The change clashes with what is stored."},
    422: {"model": ErrorPublic, "description": "The input is malformed or breaks a rule."},
}
"""Every route's error answers, for the OpenAPI document; each is an `ErrorPublic`."""

_STATUS: dict[type[DomainError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Invalid: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    code = next(
        (code for kind, code in _STATUS.items() if isinstance(exc, kind)),
        status.HTTP_400_BAD_REQUEST,
    )
    return JSONResponse(ErrorPublic(detail=str(exc)).model_dump(), status_code=code)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    errors = [
        FieldError(loc=[str(part) for part in error.get("loc", ())], message=str(error["msg"]))
        for error in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.message}" for e in errors)
    body = ErrorPublic(detail=detail or "invalid request", errors=errors)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


# --- the app -----------------------------------------------------------------------------


def create_app(
    *,
    sessions: sessionmaker[Session],
    commands: CommandSender,
    listener: RegistryListener,
    live: LiveHub | None = None,
    health: HealthChecks | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    mail: ServerMail | None = None,
) -> FastAPI:
    """The REST API over `sessions` (a migrated database), sending through `commands` and
    telling `listener` which sites changed; with `live`, the floor page streams from it.
    `health`: what `/readyz` probes and `/metrics` shows (by default: the database, and
    a registry of the app's own). A request body over `max_body_bytes` is refused
    before anything reads it (`BodyLimit`), authentication included. `mail`: the SMTP
    server that sends sign-in and password reset links (none: they are not sent)."""
    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Ruche: desks, doors, members and bookings of coworking sites.",
        # FastAPI's /docs and /redoc load from CDNs; pages.apidocs serves vendored copies.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ruche = Services(sessions=sessions, commands=commands, listener=listener)
    app.state.live = live
    app.state.health = health or HealthChecks(sessions)
    app.state.people = People(
        sessions,
        mailer=None if mail is None else SmtpMailer(mail),
        base_url=None if mail is None else mail.base_url,
    )
    app.state.health.metrics.watch_signins(app.state.people.limits.stats)
    # Added first, so inside BodyLimit: a form is read here only once its size is known.
    app.add_middleware(CsrfMiddleware, signer=app.state.people.signer)
    bodies = BodyLimitStats()
    app.add_middleware(BodyLimit, limit=max_body_bytes, stats=bodies)
    app.state.health.metrics.watch_bodies(bodies)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # No key on these: bind the server to the private network (docs/operations.md).
    app.include_router(health_routes.router)
    app.include_router(signin_routes.router)  # no key: they are how one signs in
    for page_router in pages.routers():  # each page checks its reader itself (pages.guard)
        app.include_router(page_router)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="assets")

    for module in (
        sites,
        doors,
        members,
        bookings,
        keys,
        audit,
        live_routes,
        utilisation,
        billing,
    ):
        app.include_router(module.router, responses=ERRORS)
    if live is not None:
        # Without a hub there is no live data: no endpoints, rather than ones that fail.
        app.include_router(live_routes.stream_router, responses=ERRORS)
    guard.install(app)  # after the API's handlers: pages keep them for every other path
    return app
