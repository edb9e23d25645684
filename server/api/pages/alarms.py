"""The alarms page: a site's doors forced or held open and its agents offline, for its
staff to acknowledge.

`GET /manage/alarms` is the page; `GET /manage/alarms/board` the part of it that lists the
alarms, which `static/alarms.js` fetches every second so that a new alarm shows within
two seconds without a reload (without JavaScript, reloading the page does the same).
`POST /manage/alarms/ack` acknowledges one (`ruche.server.access.alarms.acknowledge`:
who and when, and an `alarm_ack` row in the audit log, in one transaction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ruche.server.access.alarms import (
    AlarmBoard,
    AlarmKind,
    Link,
    acknowledge,
    actor_name,
    alarm_board,
)
from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.i18n import N_
from ruche.server.occupancy.live import LiveHub
from ruche.server.storage.db import READ_ONLY
from ruche.server.storage.models import SiteRow

router = APIRouter(include_in_schema=False)

PATH: Final = "/manage/alarms"
NOTICES: Final = {"acknowledged": N_("The alarm is acknowledged.")}
KINDS: Final = {
    AlarmKind.FORCED: N_("Door forced open"),
    AlarmKind.HELD_OPEN: N_("Door held open"),
    AlarmKind.AGENT_OFFLINE: N_("Agent offline"),
}
SiteSlug = Annotated[str | None, Query(max_length=64)]


def _hub(request: Request) -> LiveHub | None:
    hub = getattr(request.app.state, "live", None)
    return hub if isinstance(hub, LiveHub) else None


def _links(request: Request, site: SiteRow) -> Mapping[str, Link] | None:
    """What the live hub heard of the site's agents; None without a hub (nothing knows)."""
    hub = _hub(request)
    return None if hub is None else hub.agent_links(site.slug)


def _version(board: AlarmBoard) -> str:
    """A digest of what the board shows: the script swaps the list only when it changes."""
    shown = [(a.key, a.ack is not None) for a in (*board.open, *board.acknowledged)]
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


def _board(request: Request, session: SessionDep, reader: ManagerReader, slug: str | None,
           template: str) -> HTMLResponse:  # fmt: skip
    session.connection(execution_options=READ_ONLY)  # polled every second: no write lock
    site, sites = site_choice(session, reader, slug)
    links = _links(request, site)
    board = alarm_board(session, site, links=links or {})
    return render(
        request, template, timezone=site.timezone, site=site, sites=sites, board=board,
        kinds=KINDS, version=_version(board), agents_known=links is not None,
        message=outcome(request, {}, NOTICES), path=PATH, actor_name=actor_name,
    )  # fmt: skip


@router.get(PATH, response_class=HTMLResponse)
def alarms_page(
    request: Request, reader: ManagerReader, session: SessionDep, site: SiteSlug = None
) -> HTMLResponse:
    """The site's open alarms, each with an acknowledge button, and the latest ones
    acknowledged (who, when)."""
    return _board(request, session, reader, site, "alarms/page.html")


@router.get(PATH + "/board", response_class=HTMLResponse)
def alarms_board(
    request: Request, reader: ManagerReader, session: SessionDep, site: SiteSlug = None
) -> HTMLResponse:
    """The page's list of alarms alone, for the script that keeps it current."""
    return _board(request, session, reader, site, "alarms/board.html")


@router.post(PATH + "/ack")
def acknowledge_alarm(
    reader: ManagerReader,
    session: SessionDep,
    alarm: Annotated[str, Form(max_length=200)],
    site: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    """Acknowledge an alarm of a site the reader runs; again: nothing more is recorded.
    An alarm of another site is a 404, as one that does not exist."""
    row, _ = site_choice(session, reader, site)
    acknowledge(session, key=alarm, site=row, actor=reader.actor, now=datetime.now(UTC))
    session.commit()
    return back(PATH, done="acknowledged", site=row.slug)
