"""The REST API: `app.create_app` builds the FastAPI app over a session factory; `routes/`
holds one module per resource, `schemas` the request and response models, `body_limit`
the middleware that refuses oversized request bodies before anything reads them."""
