"""Doors: who may open which door when, and what happened at them.

- `rules`: the pure access decision (`decide_access`) and its value types;
- `facts`: the registry read into those values (SQL), with a per-site snapshot cache;
- `taps`: the MQTT worker answering tap requests (`DoorWorker`), audited;
- `allowlists`: each agent's retained allow-list, republished when its site changes;
- `door_events`: agents' alarms and offline decisions into the audit log;
- `audit`: the hash-chained audit log;
- `sender`: the seam the REST API sends agents' commands through.

The tap path: reader -> agent (`ruche.edge`) -> broker -> `taps.DoorWorker` ->
`facts.FactsCache` -> `rules.decide_access` -> `Unlock`/`Deny` on the agent's `cmd` topic."""
