"""The API's dependencies: the app's services, the session, the caller's key, the changes
to announce after commit, paging, and one dependency per resource that loads a path id and
authorises it (`ruche.server.api.policy`).

A resolver loads the row first, so an unknown id is a 404 whoever asks, and a known id
outside the key's scope a 403. The API never talks MQTT itself: it is handed a
`CommandSender` (remote unlock, lockdown) and a `RegistryListener` (told which sites'
door decisions may have changed), and acts on both only after its transaction is
committed (`Changes.commit`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Command
from ruche.server import registry
from ruche.server.access.sender import CommandSender
from ruche.server.api.cookies import get_people, session_id
from ruche.server.api.schemas import MAX_ID, MAX_PAGE
from ruche.server.registry.listener import RegistryListener
from ruche.server.storage.models import (
    AgentRow,
    BadgeRow,
    BookingRow,
    DayPassRow,
    DeskRow,
    DoorRow,
    MemberRow,
    MembershipRow,
    SiteRow,
    ZoneRow,
)

if TYPE_CHECKING:
    pass

from ruche.server.api.policy import ADMIN_ONLY, Principal, Scope, authorize

T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)

API_TITLE = "Ruche"
API_VERSION = "1"
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

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


def signed_in(request: Request) -> Principal | None:
    """The principal of the request's session cookie, if its session is live: a person
    with the scope of a key of its role, or the key that logged in to the live page."""
    raw = session_id(request)
    holder = None if raw is None else get_people(request).holder(raw, now=datetime.now(UTC))
    if holder is None:
        return None
    return Principal(
        key_id=holder.api_key_id, person_id=holder.person_id, name=holder.name,
        role=holder.role, site_id=holder.site_id, member_id=holder.member_id,
    )  # fmt: skip


def current_key(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The bearer key's holder; without one, the session cookie's (state-changing
    requests by cookie carry a CSRF token: `ruche.server.api.csrf`)."""
    if credentials is None:
        principal = signed_in(request)
        if principal is not None:
            return principal
        raise _unauthenticated("no API key: send 'Authorization: Bearer <key>', or sign in")
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
) -> SiteRow:
    site = registry.get(session, SiteRow, site_id)
    authorize(key, Scope.site(site.id))
    return site


def _directory_site(
    site_id: Annotated[int, id_path("A site id.")], key: CurrentKey, session: SessionDep
) -> SiteRow:
    site = registry.get(session, SiteRow, site_id)
    authorize(key, Scope(sites=frozenset({site.id}), members_read=True))
    return site


ManagedSite = Annotated[SiteRow, Depends(_managed_site)]
"""A site its admin or manager acts on."""
DirectorySite = Annotated[SiteRow, Depends(_directory_site)]
"""A site read as the floor directory: members too may read it, to choose where to book."""


def _zone(
    zone_id: Annotated[int, id_path("A zone id.")], key: CurrentKey, session: SessionDep
) -> ZoneRow:
    zone = registry.get(session, ZoneRow, zone_id)
    authorize(key, Scope.site(zone.site_id))
    return zone


def _desk(
    desk_id: Annotated[int, id_path("A desk id.")], key: CurrentKey, session: SessionDep
) -> DeskRow:
    desk = registry.get(session, DeskRow, desk_id)
    authorize(key, Scope.site(desk.site_id))
    return desk


def _door(
    door_id: Annotated[int, id_path("A door id.")], key: CurrentKey, session: SessionDep
) -> DoorRow:
    door = registry.get(session, DoorRow, door_id)
    authorize(key, Scope.site(door.site_id))
    return door


def _agent(
    agent_id: Annotated[int, id_path("An agent id.")], key: CurrentKey, session: SessionDep
) -> AgentRow:
    agent = registry.get(session, AgentRow, agent_id)
    authorize(key, Scope.site(agent.site_id))
    return agent


def _member(
    member_id: Annotated[int, id_path("A member id.")], key: CurrentKey, session: SessionDep
) -> MemberRow:
    member = registry.get(session, MemberRow, member_id)
    authorize(key, Scope(member_id=member.id))
    return member


def _booking(
    booking_id: Annotated[int, id_path("A booking id.")], key: CurrentKey, session: SessionDep
) -> BookingRow:
    booking = registry.get(session, BookingRow, booking_id)
    authorize(key, Scope.site(booking.site_id, member_id=booking.member_id))
    return booking


def sites_of_key(session: Session, key_id: int) -> list[SiteRow]:
    """The sites whose badges are HMAC'd under site key `key_id`."""
    return list(
        session.scalars(select(SiteRow).where(SiteRow.key_id == key_id).order_by(SiteRow.id))
    )


def _badge(
    badge_id: Annotated[int, id_path("A badge id.")], key: CurrentKey, session: SessionDep
) -> BadgeRow:
    badge = registry.get(session, BadgeRow, badge_id)
    sites = frozenset(site.id for site in sites_of_key(session, badge.key_id))
    authorize(key, Scope(sites=sites))  # not the member's own: a member may not re-enable it
    return badge


def _day_pass(
    day_pass_id: Annotated[int, id_path("A day pass id.")], key: CurrentKey, session: SessionDep
) -> DayPassRow:
    day_pass = registry.get(session, DayPassRow, day_pass_id)
    authorize(key, Scope.site(day_pass.site_id))
    return day_pass


def _membership(
    membership_id: Annotated[int, id_path("A membership id.")],
    key: CurrentKey,
    session: SessionDep,
) -> MembershipRow:
    membership = registry.get(session, MembershipRow, membership_id)
    authorize(key, Scope(member_id=membership.member_id))
    return membership


ZoneInScope = Annotated[ZoneRow, Depends(_zone)]
DeskInScope = Annotated[DeskRow, Depends(_desk)]
DoorInScope = Annotated[DoorRow, Depends(_door)]
AgentInScope = Annotated[AgentRow, Depends(_agent)]
MemberInScope = Annotated[MemberRow, Depends(_member)]
BookingInScope = Annotated[BookingRow, Depends(_booking)]
BadgeInScope = Annotated[BadgeRow, Depends(_badge)]
DayPassInScope = Annotated[DayPassRow, Depends(_day_pass)]
MembershipInScope = Annotated[MembershipRow, Depends(_membership)]


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
