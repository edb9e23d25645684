"""InfluxDB: line protocol (`lineprotocol`, pure), agents' events as points (`points`) and
the spooling writer that never drops a point (`influx`)."""
