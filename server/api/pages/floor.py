"""The live floor (`/`): each site's desks and door events as they change, for its staff.

The page is rendered in the shared layout; `static/floor.js` draws the floor from
`/live/state` and follows `/live/stream` (SSE), with the texts this page gives it in the
reader's language. Nobody signed in: a redirect to sign in; a member: to their own home,
`/my/book`. API keys are for machines (`/live/state` with a bearer key).
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse, Response

from ruche.server.api.deps import signed_in
from ruche.server.api.pages.rendering import render
from ruche.server.i18n import N_
from ruche.server.occupancy.live import LiveHub
from ruche.server.storage.enums import Role

router = APIRouter(include_in_schema=False)

MEMBER_HOME: Final = "/my/book"
STATES: Final = {
    "free": N_("free"),
    "booked": N_("booked"),
    "occupied": N_("occupied"),
    "no_show": N_("no-show"),
    "fault": N_("sensor fault"),
}
"""The desk states the floor colours, in the legend's order."""
DOOR_KINDS: Final = {
    "tap": N_("badge tapped"),
    "opened": N_("opened"),
    "closed": N_("closed"),
    "forced": N_("forced open"),
    "held_open": N_("held open"),
    "offline_decision": N_("decided offline"),
}
"""Door events as the floor lists them (an unknown kind shows as it came)."""


@router.get("/", response_class=Response)
def floor_page(request: Request) -> Response:
    """The live floor for staff; others are sent where they belong."""
    reader = signed_in(request)
    if reader is None:
        return RedirectResponse("/signin?next=/", status_code=status.HTTP_303_SEE_OTHER)
    if reader.role is Role.MEMBER:
        return RedirectResponse(MEMBER_HOME, status_code=status.HTTP_303_SEE_OTHER)
    live = isinstance(getattr(request.app.state, "live", None), LiveHub)
    return render(request, "floor/page.html", live=live, states=STATES, door_kinds=DOOR_KINDS)
