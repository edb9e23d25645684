"""A member's usage (`/my/usage?month=YYYY-MM`, this month by default): per day, the time
billing counts and why (the badge-in at a door that opened a visit, the desk a sensor
saw occupied), at each site they used, and what is held back for review
(`ruche.server.billing.evidence`).

Only the reader's own usage: the page takes no member id, so there is none to change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ruche.server import billing
from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.guard import MemberReader
from ruche.server.api.pages.invoices import ERRORS, read_month, reader_wording, shift
from ruche.server.api.pages.rendering import render
from ruche.server.billing.evidence import usage_evidence
from ruche.server.billing.pricing import Period
from ruche.server.i18n import N_
from ruche.server.storage.db import READ_ONLY

router = APIRouter(include_in_schema=False)

PATH: Final = "/my/usage"
ENDINGS: Final = {
    "exit": N_("badged out"),
    "desk_session": N_("ended with your desk session"),
    "next_entry": N_("ended at your next badge-in"),
    "max_visit": N_("ended at the longest visit counted"),
    "open": N_("still open"),
    "vacant": N_("desk left"),
    "quiet": N_("ended at the sensor's last sign"),
}
"""How a visit or a desk session ended (`closed_by`), in words."""
ATTRIBUTIONS: Final = {
    "badge": N_("yours by your badge at the desk"),
    "booking": N_("yours by your booking"),
}
MonthText = Annotated[str | None, Query(max_length=32)]


@router.get(PATH, response_class=HTMLResponse)
def usage_page(
    request: Request, reader: MemberReader, session: SessionDep, month: MonthText = None
) -> HTMLResponse:
    """The member's billable days of a month, each with the evidence behind it."""
    session.connection(execution_options=READ_ONLY)
    assert reader.member_id is not None  # noqa: S101 - a MemberReader has one
    today = Period.of(datetime.now(UTC).date())
    period = read_month(month, today)
    if period is None:
        return render(request, "usage/page.html", status_code=422, period=None,
                      month_text=month or "", sites=[],
                      message={"kind": "error", "text": ERRORS["bad_month"]})  # fmt: skip
    sites = [
        (usage_evidence(session, site, reader.member_id, period),
         reader_wording(request, site.timezone, site.currency))
        for site in billing.sites_used(session, reader.member_id, period)
    ]  # fmt: skip
    timezone = sites[0][0].timezone if sites else "UTC"
    return render(
        request, "usage/page.html", timezone=timezone, period=period, month_text=str(period),
        sites=sites, words=reader_wording(request, timezone, "EUR"), endings=ENDINGS,
        attributions=ATTRIBUTIONS, previous=shift(period, -1), following=shift(period, 1),
        message=None, path=PATH,
    )  # fmt: skip
