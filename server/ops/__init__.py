"""Running the server: readiness and health verdicts (`health`) and Prometheus metrics with
the health points written to InfluxDB (`metrics`)."""
