"""`/docs` (Swagger UI) and `/redoc` served from files vendored in `static/vendor/`.

FastAPI's own pages load their JavaScript, CSS, favicon and (ReDoc) fonts from CDNs, which a
site on an offline LAN cannot reach. The files are copied from the npm registry's
`swagger-ui-dist` and `redoc` (versions in `static/vendor/README.md`) rather than taken
from a PyPI package: those wrappers lag the upstream releases and pull in their own routes.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from ruche.server.api.pages.rendering import ASSETS

router = APIRouter(include_in_schema=False)

VENDOR: Final = f"{ASSETS}/vendor"
POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        # Both pages start with an inline script; ReDoc styles inline and runs its search
        # in a worker made from a blob.
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "worker-src 'self' blob:",
        # ReDoc's sidebar shows Redocly's logo from their CDN, unconditionally: the browser
        # is told not to ask for it (the image hides itself when it does not load).
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    )
)
"""The browser loads nothing but this server's files on these pages."""


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


def _openapi_url(request: Request) -> str:
    url: str | None = request.app.openapi_url
    if url is None:
        raise RuntimeError("the API documentation pages need the app's openapi_url")
    return url


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon.png",
    )
    return _local_only(page)


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon.png",
        with_google_fonts=False,
    )
    return _local_only(page)
