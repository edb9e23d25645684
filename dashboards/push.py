"""Upload the data source and dashboards to a running Grafana through its HTTP API
(grafana-client), idempotently.

    report = push("https://grafana.example", token, Datasource(url="http://influxdb:8086"))

1. the data source by its fixed uid: updated when Grafana has it, else created;
2. the folder "Ruche" by its uid: created when missing;
3. each dashboard by its uid, in that folder, with `overwrite`: Grafana keeps one
   dashboard per uid and counts versions, so pushing again updates, never duplicates.

The token is a Grafana service account token (Editor is enough for dashboards; the data
source needs Admin). Errors from Grafana or the network become `PushError`, whose
message says what to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from ruche.config import is_http_url
from ruche.dashboards.catalogue import DASHBOARDS
from ruche.dashboards.datasource import Datasource
from ruche.dashboards.export import FOLDER_TITLE, FOLDER_UID
from ruche.dashboards.model import Dashboard, dashboard_json

NOT_FOUND = 404
# What the HTTP library's nested connection errors come down to: "[Errno 111] Connection
# refused", "[Errno -2] Name or service not known".
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\"'\]]+)")


class PushError(RuntimeError):
    """Grafana refused something or could not be reached; the message says what to do."""


@dataclass(frozen=True)
class PushReport:
    """What one push did."""

    datasource: Literal["created", "updated"]
    folder: Literal["created", "existing"]
    dashboards: tuple[tuple[str, int], ...]
    """Each dashboard's uid and the version Grafana now holds."""


def _answer(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PushError(f"{what}: the answer was not Grafana's JSON: {str(value)[:200]!r}")
    return value


def _missing(fetch: Callable[[], object]) -> bool:
    """Whether `fetch` (a GET by uid) finds nothing: Grafana answers 404."""
    try:
        fetch()
    except GrafanaClientError as exc:
        if exc.status_code == NOT_FOUND:
            return True
        raise
    return False


def _explain(url: str, exc: GrafanaException) -> str:
    status = exc.status_code
    if status == 401:
        return f"Grafana at {url} refused the token (401): check --token"
    if status == 403:
        return (
            f"Grafana at {url} denied it (403): the token's service account needs the "
            "Admin role to manage data sources and Editor for dashboards"
        )
    if status == 0:
        return _unanswered(url, exc.message)
    return f"Grafana at {url} answered {status}: {exc.message}"


def _unanswered(url: str, problem: object) -> str:
    causes = _ERRNO.findall(str(problem))
    why = causes[-1].strip() if causes else str(problem)
    return (
        f"Grafana at {url} did not answer ({why}): check --url, and that Grafana is running "
        "and reachable from here"
    )


def push(
    url: str,
    token: str,
    datasource: Datasource,
    *,
    influx_token: str | None = None,
    dashboards: Sequence[Dashboard] = DASHBOARDS,
    folder_title: str = FOLDER_TITLE,
    folder_uid: str = FOLDER_UID,
    timeout: float = 10.0,
) -> PushReport:
    """Create or update the data source, the folder and every dashboard in Grafana at `url`.

    `influx_token` is the InfluxDB 2.x/3.x token Grafana should send (stored by Grafana
    as a secret); none for an InfluxDB without authentication.
    """
    if not is_http_url(url):
        raise PushError(
            f"Grafana URL {url!r} must be http:// or https://, a host and maybe a port, "
            "e.g. http://127.0.0.1:3000"
        )
    if not token:
        raise PushError("no Grafana token: give a service account token")
    # grafana-client is untyped: Any from here on, its answers checked by `_answer`.
    factory: Any = GrafanaApi
    api: Any = factory.from_url(url.rstrip("/"), credential=token, timeout=timeout)
    try:
        body = datasource.api_body(influx_token)
        if _missing(lambda: api.datasource.get_datasource_by_uid(datasource.uid)):
            _answer(api.datasource.create_datasource(body), "creating the data source")
            datasource_done: Literal["created", "updated"] = "created"
        else:
            _answer(
                api.datasource.update_datasource_by_uid(datasource.uid, body),
                "updating the data source",
            )
            datasource_done = "updated"
        folder_done: Literal["created", "existing"] = "existing"
        if _missing(lambda: api.folder.get_folder(folder_uid)):
            _answer(api.folder.create_folder(folder_title, uid=folder_uid), "creating the folder")
            folder_done = "created"
        versions = []
        for dashboard in dashboards:
            answer = _answer(
                api.dashboard.update_dashboard(
                    {
                        "dashboard": dashboard_json(dashboard, datasource_uid=datasource.uid),
                        "folderUid": folder_uid,
                        "overwrite": True,
                        "message": "ruche dashboards push",
                    }
                ),
                f"saving dashboard {dashboard.uid}",
            )
            versions.append((dashboard.uid, int(answer.get("version", 0))))
    except GrafanaException as exc:
        raise PushError(_explain(url, exc)) from exc
    except OSError as exc:  # the HTTP library's connection errors are OSErrors
        raise PushError(_unanswered(url, exc)) from exc
    finally:
        api.client.s.close()
    return PushReport(datasource_done, folder_done, tuple(versions))
