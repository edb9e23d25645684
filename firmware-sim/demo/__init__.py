"""`ruche demo`: a whole coworking day on one machine. `plan` describes the site and its
day as values, `site` writes them to the registry, `run` starts the services and plays
the day, `report` reads the summary back from the stores."""
