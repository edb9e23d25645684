"""The REST API: the app factory, its dependencies and the one authorisation policy.

```python
from ruche.server.api import create_app
from ruche.server.db import make_engine, make_sessions, run_migrations

run_migrations(url)
app = create_app(sessions=make_sessions(make_engine(url)), commands=sender, listener=listener)
```

The API never talks MQTT itself: it is handed a `CommandSender` (remote unlock,
lockdown) and a `RegistryListener` (told which sites' door decisions may have changed),
and acts on both only after its transaction is committed (`Changes.commit`).

Authorisation is one pure function, `permits(principal, scope)`. Every route names the
scope of what it touches through a dependency (`ManagedSite`, `DoorInScope`,
`BookingInScope`, `AdminKey`, ...) or, for a body that names a site or member, by calling
`authorize(key, Scope(...))`; no route compares ids itself. The rules:

| role | may act on |
|---|---|
| admin | everything |
| manager | what belongs to its site (`principal.site_id in scope.sites`) |
| member | what is its own (`scope.member_id == principal.member_id`), and the floor directory |

The floor directory (`scope.members_read`: sites, their holidays, zones and desks) is
readable by members too, so that they can choose where to book.

A resolver loads the row first, so an unknown id is a 404 whoever asks, and a known id
outside the key's scope a 403.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Command
from ruche.server import registry
from ruche.server.body_limit import BodyLimit, BodyLimitStats
from ruche.server.errors import Conflict, DomainError, Invalid, NotFound
from ruche.server.models import (
    Agent,
    ApiKey,
    Badge,
    Booking,
    DayPass,
    Desk,
    Door,
    Member,
    Membership,
    Role,
    Site,
    Zone,
)
from ruche.server.ports import CommandSender, RegistryListener
from ruche.server.schemas import MAX_ID, MAX_PAGE, ErrorPublic, FieldError
from ruche.server.settings import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from ruche.server.live import LiveHub
    from ruche.server.routes_health import HealthChecks

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


# --- who is asking, and the policy -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The holder of the API key a request came with."""

    key_id: int
    name: str
    role: Role
    site_id: int | None = None
    """A manager's site."""
    member_id: int | None = None
    """A member key's member."""

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(
            key_id=key.id,
            name=key.name,
            role=key.role,
            site_id=key.site_id,
            member_id=key.member_id,
        )

    @property
    def actor(self) -> str:
        """How the audit log names who asked."""
        return f"api-key:{self.key_id}:{self.name}"[:100]


@dataclass(frozen=True)
class Scope:
    """What a resource belongs to, as the policy sees it. The empty scope is admin-only."""

    sites: frozenset[int] = field(default_factory=frozenset)
    """The sites it belongs to (a badge belongs to every site sharing its key)."""
    member_id: int | None = None
    """The member it is the own data of; None where a member may not act on it."""
    members_read: bool = False
    """The floor directory: any member key may read it."""

    @classmethod
    def site(cls, site_id: int, *, member_id: int | None = None) -> Scope:
        return cls(sites=frozenset({site_id}), member_id=member_id)


ADMIN_ONLY = Scope()


def permits(principal: Principal, scope: Scope) -> bool:
    """Whether `principal` may act on what `scope` describes: the one authorisation rule."""
    match principal.role:
        case Role.ADMIN:
            return True
        case Role.MANAGER:
            return principal.site_id is not None and principal.site_id in scope.sites
        case Role.MEMBER:
            own = scope.member_id is not None and scope.member_id == principal.member_id
            return own or scope.members_read


def authorize(principal: Principal, scope: Scope) -> None:
    """Raise 403, saying why, unless `permits(principal, scope)`."""
    if permits(principal, scope):
        return
    if scope == ADMIN_ONLY:
        detail = "only an admin key may do this"
    elif principal.role is Role.MANAGER:
        detail = f"this manager key is for site {principal.site_id} only"
    else:
        detail = f"this member key reaches only member {principal.member_id}'s own data"
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail)


def narrow(
    principal: Principal, *, site_id: int | None, member_id: int | None, per_site: bool = True
) -> tuple[int | None, int | None]:
    """List filters made to fit the key: a manager's default to its site, a member's to itself.

    Then authorised like any scope, so asking another site or member is a 403, not an
    empty page. A list that is not `per_site` (memberships) is no manager's to read.
    """
    if principal.role is Role.MANAGER and site_id is None and per_site:
        site_id = principal.site_id
    if principal.role is Role.MEMBER and member_id is None:
        member_id = principal.member_id
    sites = frozenset() if site_id is None else frozenset({site_id})
    authorize(principal, Scope(sites=sites, member_id=member_id))
    return site_id, member_id


# --- what the app holds, and its dependencies ----------------------------------------------


@dataclass(frozen=True)
class Services:
    sessions: sessionmaker[Session]
    commands: CommandSender
    listener: RegistryListener


def get_services(request: Request) -> Services:
    services = request.app.state.ruche
    assert isinstance(services, Services)  # noqa: S101 - set by create_app
    return services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key, as `Authorization: Bearer ruche_...` (`ruche admin` makes one).",
)


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def current_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthenticated("no API key: send 'Authorization: Bearer <key>'")
    secret = credentials.credentials
    key = registry.authenticate_api_key(session, secret) if _KEY_SHAPE.match(secret) else None
    if key is None:
        raise _unauthenticated("unknown or revoked API key: ask an admin for a new one")
    return Principal.of(key)


CurrentKey = Annotated[Principal, Depends(current_key)]


def admin_key(key: CurrentKey) -> Principal:
    authorize(key, ADMIN_ONLY)
    return key


AdminKey = Annotated[Principal, Depends(admin_key)]


class Changes:
    """What a request changed, acted upon only once it is committed.

    Commands go to the agents and the listener hears which sites' door decisions may
    have changed after the commit, never before: an agent must not act on, and an
    allow-list must not be rebuilt from, a change that was then rolled back.
    """

    def __init__(self, session: Session, services: Services) -> None:
        self._session = session
        self._services = services
        self._sites: dict[str, None] = {}
        self._commands: list[tuple[str, str, Command]] = []

    def site_changed(self, *slugs: str) -> None:
        self._sites.update(dict.fromkeys(slugs))

    def send(self, site: str, agent: str, command: Command) -> None:
        self._commands.append((site, agent, command))

    def commit(self) -> None:
        self._session.commit()
        for site, agent, command in self._commands:
            self._services.commands.send(site, agent, command)
        for slug in self._sites:
            self._services.listener.site_changed(slug)
        self._sites.clear()
        self._commands.clear()


def get_changes(
    session: SessionDep, services: Annotated[Services, Depends(get_services)]
) -> Changes:
    return Changes(session, services)


ChangesDep = Annotated[Changes, Depends(get_changes)]

# --- path ids resolved and authorised: one dependency per resource scope -------------------


def id_path(description: str) -> object:
    """A path id, bounded to what the database can hold."""
    return Path(ge=1, le=MAX_ID, description=description, examples=[1])


def _managed_site(
    site_id: Annotated[int, id_path("A site id.")], key: CurrentKey, session: SessionDep
) -> Site:
    site = registry.get(session, Site, site_id)
    authorize(key, Scope.site(site.id))
    return site


def _directory_site(
    site_id: Annotated[int, id_path("A site id.")], key: CurrentKey, session: SessionDep
) -> Site:
    site = registry.get(session, Site, site_id)
    authorize(key, Scope(sites=frozenset({site.id}), members_read=True))
    return site


ManagedSite = Annotated[Site, Depends(_managed_site)]
"""A site its admin or manager acts on."""
DirectorySite = Annotated[Site, Depends(_directory_site)]
"""A site read as the floor directory: members too may read it, to choose where to book."""


def _zone(
    zone_id: Annotated[int, id_path("A zone id.")], key: CurrentKey, session: SessionDep
) -> Zone:
    zone = registry.get(session, Zone, zone_id)
    authorize(key, Scope.site(zone.site_id))
    return zone


def _desk(
    desk_id: Annotated[int, id_path("A desk id.")], key: CurrentKey, session: SessionDep
) -> Desk:
    desk = registry.get(session, Desk, desk_id)
    authorize(key, Scope.site(desk.site_id))
    return desk


def _door(
    door_id: Annotated[int, id_path("A door id.")], key: CurrentKey, session: SessionDep
) -> Door:
    door = registry.get(session, Door, door_id)
    authorize(key, Scope.site(door.site_id))
    return door


def _agent(
    agent_id: Annotated[int, id_path("An agent id.")], key: CurrentKey, session: SessionDep
) -> Agent:
    agent = registry.get(session, Agent, agent_id)
    authorize(key, Scope.site(agent.site_id))
    return agent


def _member(
    member_id: Annotated[int, id_path("A member id.")], key: CurrentKey, session: SessionDep
) -> Member:
    member = registry.get(session, Member, member_id)
    authorize(key, Scope(member_id=member.id))
    return member


def _booking(
    booking_id: Annotated[int, id_path("A booking id.")], key: CurrentKey, session: SessionDep
) -> Booking:
    booking = registry.get(session, Booking, booking_id)
    authorize(key, Scope.site(booking.site_id, member_id=booking.member_id))
    return booking


def sites_of_key(session: Session, key_id: int) -> list[Site]:
    """The sites whose badges are HMAC'd under site key `key_id`."""
    return list(session.scalars(select(Site).where(Site.key_id == key_id).order_by(Site.id)))


def _badge(
    badge_id: Annotated[int, id_path("A badge id.")], key: CurrentKey, session: SessionDep
) -> Badge:
    badge = registry.get(session, Badge, badge_id)
    sites = frozenset(site.id for site in sites_of_key(session, badge.key_id))
    authorize(key, Scope(sites=sites))  # not the member's own: a member may not re-enable it
    return badge


def _day_pass(
    day_pass_id: Annotated[int, id_path("A day pass id.")], key: CurrentKey, session: SessionDep
) -> DayPass:
    day_pass = registry.get(session, DayPass, day_pass_id)
    authorize(key, Scope.site(day_pass.site_id))
    return day_pass


def _membership(
    membership_id: Annotated[int, id_path("A membership id.")],
    key: CurrentKey,
    session: SessionDep,
) -> Membership:
    membership = registry.get(session, Membership, membership_id)
    authorize(key, Scope(member_id=membership.member_id))
    return membership


ZoneInScope = Annotated[Zone, Depends(_zone)]
DeskInScope = Annotated[Desk, Depends(_desk)]
DoorInScope = Annotated[Door, Depends(_door)]
AgentInScope = Annotated[Agent, Depends(_agent)]
MemberInScope = Annotated[Member, Depends(_member)]
BookingInScope = Annotated[Booking, Depends(_booking)]
BadgeInScope = Annotated[Badge, Depends(_badge)]
DayPassInScope = Annotated[DayPass, Depends(_day_pass)]
MembershipInScope = Annotated[Membership, Depends(_membership)]


# --- pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int

    def cut(self, items: Sequence[T]) -> list[T]:
        return list(items[self.offset : self.offset + self.limit])

    def page(self, model: type[P], items: Sequence[object]) -> P:
        """One page of `items` (ORM rows) as `model`, an `XsPublic`."""
        return model.model_validate(
            {
                "data": self.cut(items),
                "total": len(items),
                "limit": self.limit,
                "offset": self.offset,
            }
        )


def _paging(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")] = 0,
) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(_paging)]


# --- the app -----------------------------------------------------------------------------


def create_app(
    *,
    sessions: sessionmaker[Session],
    commands: CommandSender,
    listener: RegistryListener,
    live: LiveHub | None = None,
    health: HealthChecks | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The REST API over `sessions` (a migrated database), sending through `commands` and
    telling `listener` which sites changed; with `live`, the floor page streams from it.
    `health`: what `/readyz` probes and `/metrics` shows (by default: the database, and
    a registry of the app's own). A request body over `max_body_bytes` is refused
    before anything reads it (`BodyLimit`), authentication included."""
    # The route modules import this module's dependencies: imported here, not at the top.
    from ruche.server import (  # noqa: PLC0415
        routes_audit,
        routes_billing,
        routes_bookings,
        routes_doors,
        routes_health,
        routes_keys,
        routes_live,
        routes_members,
        routes_sites,
        routes_utilisation,
    )

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Ruche: desks, doors, members and bookings of coworking sites.",
    )
    app.state.ruche = Services(sessions=sessions, commands=commands, listener=listener)
    app.state.live = live
    app.state.health = health or routes_health.HealthChecks(sessions)
    bodies = BodyLimitStats()
    app.add_middleware(BodyLimit, limit=max_body_bytes, stats=bodies)
    app.state.health.metrics.watch_bodies(bodies)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # No key on these: bind the server to the private network (docs/operations.md).
    app.include_router(routes_health.router)

    for module in (
        routes_sites,
        routes_doors,
        routes_members,
        routes_bookings,
        routes_keys,
        routes_audit,
        routes_live,
        routes_utilisation,
        routes_billing,
    ):
        app.include_router(module.router, responses=ERRORS)
    if live is not None:
        # Without a hub there is no live data: no endpoints, rather than ones that fail.
        app.include_router(routes_live.stream_router, responses=ERRORS)
    return app
