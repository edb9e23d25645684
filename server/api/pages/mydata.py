"""A member's own data (`/my/data`): what Ruche holds about them, and the link that
downloads all of it as one JSON file (`/my/data/export.json`,
`ruche.server.people.export`), their right of access. Only the reader's own: the
download takes no id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.guard import MemberReader, member_reader
from ruche.server.api.pages.rendering import render
from ruche.server.i18n import N_
from ruche.server.people.export import personal_data, personal_data_json
from ruche.server.storage.db import READ_ONLY

router = APIRouter(include_in_schema=False)

PATH: Final = "/my/data"
SECTIONS: Final = (
    N_("your profile and your sign-in account (never your password, only when it changed)"),
    N_("your memberships and plans"),
    N_("your badges, by the token Ruche keeps (never the card's number)"),
    N_("your bookings, day passes and desk check-ins"),
    N_("the guests you invited"),
    N_("your visits and desk sessions, as billing counts them"),
    N_("the audit log's rows about you: door decisions and what you did"),
    N_("your invoices, with their lines and the usage behind them"),
)


@router.get(PATH, response_class=HTMLResponse, dependencies=[Depends(member_reader)])
def data_page(request: Request) -> HTMLResponse:
    """What the download holds, and the link to it."""
    return render(request, "mydata/page.html", sections=SECTIONS, path=PATH)


@router.get(PATH + "/export.json")
def data_export(reader: MemberReader, session: SessionDep) -> Response:
    """Everything Ruche holds about the reader, as one JSON file to keep."""
    session.connection(execution_options=READ_ONLY)
    assert reader.member_id is not None  # noqa: S101 - a MemberReader has one
    now = datetime.now(UTC)
    body = personal_data_json(personal_data(session, reader.member_id, now=now))
    name = f"ruche-my-data-{now:%Y-%m-%d}.json"
    return Response(body, media_type="application/json; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
