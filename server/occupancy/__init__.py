"""Who sat where, and who came in: agents' events stored once (`ingest`), desk sessions and
visits recomputed from them (`refresh`, with the pure rules in `sessions`), utilisation
figures (`utilisation`, pure) and the live floor (`live`)."""
