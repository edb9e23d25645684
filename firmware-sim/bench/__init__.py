"""Benchmarks: the agent on a Pi (`edge`), tap-to-unlock latency (`access`) and event
ingestion (`ingest`), each against a real broker and server it starts itself, and the
lean MQTT client the load comes from (`mqtt_load`). `ruche bench ...` runs them."""
