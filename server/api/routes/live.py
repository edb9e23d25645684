"""The live floor's data: its JSON snapshot and its SSE stream, for managers and admins.

The page itself (`/`) is `ruche.server.api.pages.floor`. Its script reads these with the
session of a person signed in (`POST /signin`); a machine sends its API key as a bearer,
or logs in once with it (`POST /login`), which opens a server-side session for that key:
the cookie holds the session's signed id, never the key (`ruche.server.api.cookies`).
Either is then checked like a bearer key (`ruche.server.api.deps.current_key`). A manager
sees its own site only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sqlalchemy import select

from ruche.server.api.cookies import clear_session, get_people, session_id, set_session
from ruche.server.api.deps import CurrentKey, SessionDep, current_key
from ruche.server.api.policy import Principal, Scope, authorize
from ruche.server.occupancy.live import Change, LiveHub
from ruche.server.people.sessions import open_session
from ruche.server.storage.enums import Role
from ruche.server.storage.models import SiteRow

router = APIRouter(tags=["live"])
"""The key login: always there."""
stream_router = APIRouter(tags=["live"])
"""The live data: only when the app has a LiveHub (ruche server run always does)."""

KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""


class LoginBody(BaseModel):
    key: str = Field(min_length=1, max_length=300, description="A manager or admin API key.")


def _page_key(key: CurrentKey) -> Principal:
    """The bearer key, else the session cookie, authenticated as the API does; managers up."""
    if key.role is Role.MEMBER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the floor page is for managers")
    return key


PageKey = Annotated[Principal, Depends(_page_key)]


def _hub(request: Request) -> LiveHub:
    hub = getattr(request.app.state, "live", None)
    if not isinstance(hub, LiveHub):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the live floor is not running")
    return hub


Hub = Annotated[LiveHub, Depends(_hub)]
SiteQuery = Annotated[str | None, Query(max_length=64, description="A site slug; all if none.")]


def _sites(session: SessionDep, key: PageKey, site: SiteQuery = None) -> frozenset[str]:
    """The slugs the key may watch: `site` (authorised), else all those in its scope."""
    rows = session.scalars(
        select(SiteRow) if site is None else select(SiteRow).where(SiteRow.slug == site)
    )
    found = list(rows)
    if site is not None:
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site!r}")
        authorize(key, Scope.site(found[0].id))
    # The stream's session lives as long as the stream, for hours: it must not keep a
    # transaction open (on SQLite, a write lock every sign-in and tap would wait on).
    session.commit()
    return frozenset(s.slug for s in found if key.role is Role.ADMIN or s.id == key.site_id)


Watched = Annotated[frozenset[str], Depends(_sites)]


@router.post("/login", status_code=status.HTTP_204_NO_CONTENT)
def login(body: LoginBody, request: Request, session: SessionDep, response: Response) -> None:
    """Check a manager or admin key and open a session for it: the cookie carries the
    session's signed id, not the key, and signing out ends it."""
    key = current_key(
        request, session, HTTPAuthorizationCredentials(scheme="Bearer", credentials=body.key)
    )
    if key.role is Role.MEMBER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the floor page is for managers")
    assert key.key_id is not None  # noqa: S101 - a bearer key always has its id
    # In the transaction that read the key: a second one would wait on SQLite's lock.
    raw = open_session(session, api_key_id=key.key_id, now=datetime.now(UTC))
    session.commit()
    set_session(request, response, raw)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, response: Response) -> None:
    """End the page's session (a replayed cookie then no longer works)."""
    raw = session_id(request)
    if raw is not None:
        get_people(request).sign_out(raw, now=datetime.now(UTC))
    clear_session(request, response)


@stream_router.get("/live/state")
def live_state(hub: Hub, sites: Watched) -> dict[str, list[Change]]:
    """Each watched site's floor: desks with x/y, zone and state; headcount; door events."""
    snapshots = (hub.snapshot(site) for site in sorted(sites))
    return {"sites": [s for s in snapshots if s is not None]}


@stream_router.get("/live/stream", response_class=StreamingResponse)
async def live_stream(request: Request, hub: Hub, sites: Watched) -> StreamingResponse:
    """Server-Sent Events: one `data:` JSON change per desk or door change of the sites."""
    return StreamingResponse(
        _events(request, hub, sites),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, hub: LiveHub, sites: frozenset[str]) -> AsyncIterator[str]:
    queue = hub.subscribe()
    try:
        yield "retry: 1000\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            try:
                change = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                idle += 1.0
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield ": keepalive\n\n"
                continue
            idle = 0.0
            if change is None:
                return
            if change["site"] in sites:
                yield f"data: {json.dumps(change)}\n\n"
    finally:
        hub.unsubscribe(queue)
