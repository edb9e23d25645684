"""One router per resource; `ruche.server.api.app.create_app` includes them all."""
