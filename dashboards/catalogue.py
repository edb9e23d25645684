"""Every Ruche dashboard, in the order the folder lists them."""

from __future__ import annotations

from ruche.dashboards import bookings, doors, health, live, utilisation
from ruche.dashboards.model import Dashboard

DASHBOARDS: tuple[Dashboard, ...] = (
    live.DASHBOARD,
    utilisation.DASHBOARD,
    bookings.DASHBOARD,
    doors.DASHBOARD,
    health.DASHBOARD,
)
