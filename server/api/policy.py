"""Who may act on what: one pure rule, `permits(principal, scope)`.

Every route names the scope of what it touches through a dependency (`ManagedSite`,
`DoorInScope`, `BookingInScope`, `AdminKey`, ... in `ruche.server.api.deps`) or, for a
body that names a site or member, by calling `authorize(key, Scope(...))`; no route
compares ids itself. The rules:

| role | may act on |
|---|---|
| admin | everything |
| manager | what belongs to its site (`principal.site_id in scope.sites`) |
| member | what is its own (`scope.member_id == principal.member_id`), and the floor directory |

The floor directory (`scope.members_read`: sites, their holidays, zones and desks) is
readable by members too, so that they can choose where to book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import HTTPException, status

from ruche.server.storage.enums import Role
from ruche.server.storage.models import ApiKeyRow

if TYPE_CHECKING:
    pass


# --- who is asking, and the policy -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request comes from: the holder of an API key, or a person signed in (who has
    the scope of a key of the same role)."""

    key_id: int | None = None
    """The API key (also when it logged in to the live page); None for a person."""
    person_id: int | None = None
    """The person signed in; None for a key."""
    name: str
    role: Role
    site_id: int | None = None
    """A manager's site."""
    member_id: int | None = None
    """A member key's member."""

    @classmethod
    def of(cls, key: ApiKeyRow) -> Principal:
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
        if self.person_id is not None:
            return f"person:{self.person_id}:{self.name}"[:100]
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
