"""The API documentation pages, /docs (Swagger UI) and /redoc (ReDoc), loading nothing from
another host.

fastapi-offline ships both UIs' files, but ReDoc's bundle still shows the Redocly logo from
``https://cdn.redoc.ly/redoc/logo-mini.svg`` in its menu. /redoc is served here instead of by
fastapi-offline, with that one URL in the bundle replaced by ``data:,`` (an empty image: ReDoc's
own error handler hides it); and both pages carry a Content-Security-Policy that lets them load
only from the service, so a URL missed here would be refused by the browser, not fetched.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REDOC_URL = "/redoc"
REDOC_JS_URL = "/docs-assets/redoc.standalone.js"
_REDOC_JS = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
_REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
DOCS_PAGES = ("/docs", "/docs/oauth2-redirect", REDOC_URL)
# Both UIs start from an inline script and style their elements inline; ReDoc searches in a worker
# made from a blob. Nothing from another origin.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    """ReDoc's bundle from fastapi-offline, without the one URL it would load from elsewhere."""
    bundle = _REDOC_JS.read_bytes()
    if _REDOCLY_LOGO not in bundle:  # a new ReDoc: the page test says whether it loads anything else
        return bundle
    return bundle.replace(_REDOCLY_LOGO, b"data:,")


def add_redoc(app: FastAPI) -> None:
    """/redoc and its bundle (the app is made with fastapi-offline's ``redoc_url=None``)."""

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{REDOC_JS_URL}", with_google_fonts=False,
                              redoc_favicon_url=f"{root}/static-offline-docs/favicon.png")

    @app.get(REDOC_JS_URL, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


class DocsPolicyMiddleware:
    """The documentation pages' Content-Security-Policy (the review page sets its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PAGES:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"content-security-policy", DOCS_POLICY.encode())]
            await send(message)

        await self.app(scope, receive, send_with_policy)
