"""The server: registry, door decisions, occupancy ingestion, billing, REST API."""
