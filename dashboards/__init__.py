"""Grafana dashboards as code.

- `model`: dashboards, panels and queries as values, and the JSON Grafana reads;
- `live`, `utilisation`, `bookings`, `doors`, `health`: one dashboard each, listed in
  `catalogue.DASHBOARDS`; `variables`: the template variables they share;
- `datasource`: the InfluxDB (InfluxQL) data source;
- `export`: provisioning files; `push`: upload through Grafana's API (grafana-client);
- `macros`: a query as Grafana sends it, `$timeFilter` and variables filled in.

Nothing here is imported by the package itself: `export` needs PyYAML and `push`
grafana-client (the `dashboards` extra).
"""
