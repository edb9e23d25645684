"""How long things may last, and how far the refresh looks: the occupancy rules' parameters."""

from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger(__name__)


STALE_AFTER = timedelta(minutes=15)
"""A session whose sensor has said nothing for this long closes at its last evidence:
about three of the agent's default heartbeats (5 minutes)."""
STUCK_AFTER = timedelta(hours=12)
"""A desk occupied longer than this without a break is suspect (a sensor stuck)."""
MAX_VISIT = timedelta(hours=12)
"""A visit with no exit tap and no desk evidence ends this long after its entry."""
BADGE_WINDOW = timedelta(minutes=10)
"""How long before a session a desk badge check-in still attributes it (`attribute`)."""
VISIT_MERGE = timedelta(minutes=5)
"""Entry taps this close together make one visit (`derive_visits`)."""
DECISION_LATENCY = timedelta(minutes=10)
"""How long after its tap an online decision may reach the audit log (it is queued)."""
DECISION_SLACK = timedelta(hours=1)
"""A tap's decision is looked for this far before the tap (clocks of agent and server)."""
FULL_REFRESH_EVERY = timedelta(hours=1)
"""The worker recomputes a site whole this often, and incrementally in between: a
booking made after the fact (which attribution reads) is taken in within the hour."""
REFRESH_NICENESS = 19
"""How much lower the refresh process's CPU priority is than the server's (see
`ruche.server.occupancy.worker`)."""
BOOKING_LOOKBACK = timedelta(days=7)
"""How far back a refresh charts started bookings (`booking` points): a server stopped
for longer leaves the bookings of the gap out of the dashboards; SQL keeps them all."""
