"""`/healthz`, `/readyz` and `/metrics`: no key, for probes and Prometheus on the private network.

- `/healthz`: the process serves HTTP; 200 whatever its dependencies do.
- `/readyz`: 200 when SQL answers, every MQTT worker is connected and InfluxDB (when
  configured) answers; else 503. Both say each dependency's state:
  `{"ready": false, "checks": {"database": "ok", "mqtt": "ok",
  "influxdb": "down: connection refused (spool holds 1234 points)"}}`.
- `/metrics`: this process's metrics in Prometheus's text format.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.api.schemas import HealthPublic
from ruche.server.ops.health import (
    Readiness,
    database_state,
    first_line,
    influx_state,
    mqtt_state,
    readiness,
)
from ruche.server.ops.metrics import CONTENT_TYPE, ProcessMetrics
from ruche.server.timeseries.influx import InfluxWriter

router = APIRouter(tags=["health"])


@dataclass
class HealthChecks:
    """What `/readyz` probes and `/metrics` reads, for one server process.

    - `mqtt`: each MQTT worker's name and a function saying whether it is connected.
    - `influx`: the process's InfluxDB writer, when points go to InfluxDB.
    - `sql_timeout_s`, `ping_timeout_s`: a dependency slower than this is down.
    """

    sessions: sessionmaker[Session]
    metrics: ProcessMetrics = field(default_factory=ProcessMetrics)
    mqtt: Mapping[str, Callable[[], bool]] = field(default_factory=dict)
    influx: InfluxWriter | None = None
    sql_timeout_s: float = 2.0
    ping_timeout_s: float = 1.0

    def check(self) -> Readiness:
        checks = {"database": database_state(self._sql_error())}
        if self.mqtt:
            checks["mqtt"] = mqtt_state({name: up() for name, up in self.mqtt.items()})
        if self.influx is not None:
            stats = self.influx.stats()
            checks["influxdb"] = influx_state(
                ping_error=self._ping_error(self.influx),
                up=stats.up,
                last_error=stats.last_error,
                spooled_points=stats.spooled_points,
                refusing=stats.refusing,
            )
        return readiness(checks)

    def _sql_error(self) -> str | None:
        """Why `SELECT 1` failed, or None; on a thread of its own, so that a database
        that does not answer at all makes the check fail in time instead of hang."""
        outcome: list[str | None] = []

        def probe() -> None:
            try:
                with self.sessions() as session:
                    session.execute(text("SELECT 1"))
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - any failure is the state to report
                outcome.append(first_line(getattr(exc, "orig", None) or exc))

        thread = threading.Thread(target=probe, name="readyz-sql", daemon=True)
        thread.start()
        thread.join(self.sql_timeout_s)
        if not outcome:
            return f"no answer in {self.sql_timeout_s:g} s"
        return outcome[0]

    def _ping_error(self, influx: InfluxWriter) -> str | None:
        try:
            response = influx.ping(self.ping_timeout_s)
        except httpx.TimeoutException:
            return f"no answer in {self.ping_timeout_s:g} s"
        except httpx.ConnectError as exc:
            reason = first_line(exc)
            return "connection refused" if "refused" in reason.lower() else reason
        except httpx.HTTPError as exc:
            return first_line(exc)
        if response.status_code >= 300:
            return f"ping answered {response.status_code}"
        return None


class ReadinessPublic(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(
        description="Each dependency's state: `ok`, or what is wrong with it.",
        examples=[{"database": "ok", "mqtt": "ok", "influxdb": "ok"}],
    )


def _checks(request: Request) -> HealthChecks:
    checks = request.app.state.health
    assert isinstance(checks, HealthChecks)  # noqa: S101 - set by create_app
    return checks


Checks = Annotated[HealthChecks, Depends(_checks)]


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """Whether the server answers; no key needed."""
    return HealthPublic()


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "A dependency is down."}},
)
def readyz(checks: Checks) -> JSONResponse:
    """Whether SQL, the broker and InfluxDB answer; 503 naming what is down. No key needed."""
    verdict = checks.check()
    code = status.HTTP_200_OK if verdict.ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(verdict.as_json(), status_code=code)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(checks: Checks) -> Response:
    """This process's metrics for Prometheus; no key needed."""
    return Response(checks.metrics.exposition(), media_type=CONTENT_TYPE)
