"""The server's MQTT connection: the server account, resubscribing on every (re)connect,
with manual acknowledgement for ingestion (`connection.ServerConnection`)."""
