"""The template variables the dashboards share.

- `site`: one site, from the `site` tag of `presence`; queries filter `"site" = '$site'`.
- `desk`: one or more desks of that site (All by default); queries filter
  `"desk" =~ /^$desk$/` (Grafana writes several as `(a|b)`). A zone is a choice of
  desks: zones live in SQL, not in InfluxDB's tags (docs/dashboards.md).
- `tz`: the IANA timezone whose midnights and Mondays start day and week buckets
  (`tz('$tz')` ends those queries); InfluxDB's own buckets are UTC.
"""

from __future__ import annotations

from ruche.dashboards.model import Constant, Variable

SITE = Variable(
    name="site",
    label="Site",
    query='SHOW TAG VALUES FROM "presence" WITH KEY = "site"',
)
DESK = Variable(
    name="desk",
    label="Desks",
    query='SHOW TAG VALUES FROM "presence" WITH KEY = "desk" WHERE "site" = \'$site\'',
    multi=True,
    include_all=True,
    all_value=".*",
)
TZ = Constant(
    name="tz",
    label="Timezone",
    default="UTC",
    description="IANA name (Europe/Paris) for day and week buckets",
)
