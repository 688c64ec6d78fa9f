"""``/`` and ``/docs``: the API page, Swagger UI over the service's own ``/docs.json``, from files it ships.

BentoML's stock page at ``/`` loads Google Tag Manager from an outside host; this one loads nothing
from elsewhere. Swagger UI's script and style come from the pinned ``swagger-ui-bundle-v2`` package
and are served under ``/docs/``, with the page's own start-up script; a Content-Security-Policy (as
the demo page's) lets the browser fetch only from this server.
"""

from __future__ import annotations

import hashlib
import html
from functools import lru_cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

HEADERS = {
    # blob: and data: for Swagger UI's icons and the images (PNG, GIF) an answer shows
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <script src="/docs/swagger-ui-bundle.js" defer></script>
  <script src="/docs/docs.js" defer></script>
</head>
<body>
  <noscript>The API page needs JavaScript; the OpenAPI document itself is <a href="/docs.json">/docs.json</a>.</noscript>
  <div id="swagger-ui"></div>
</body>
</html>
"""
# The start-up script (a file of its own: the policy runs no inline script). validatorUrl null: Swagger
# UI would otherwise send the document's URL to an outside validator for its badge.
START = b"""window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
JS, CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# /docs/<name>: Swagger UI's two files from the package (none of its others) and the start-up script
FILES = {"swagger-ui-bundle.js": JS, "swagger-ui.css": CSS, "docs.js": JS}


@lru_cache(maxsize=len(FILES))
def asset(name: str) -> tuple[bytes, str]:
    """An asset's bytes and its entity tag."""
    body = START if name == "docs.js" else (swagger_ui_path / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def pages(title: str) -> Starlette:
    """The page (at ``/`` and ``/docs``, titled ``title``) and its assets (``/docs/<name>``)."""
    page = PAGE.format(title=html.escape(title)).encode()

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FILES:
            return Response(b"not found", status_code=404, media_type="text/plain")
        body, etag = asset(name)
        headers = {**HEADERS, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=FILES[name], headers=headers)

    # A Starlette app, not a bare Router: its exception middleware answers a 404 or 405 (with Allow) itself.
    return Starlette(routes=[Route("/", index), Route("/docs", index), Route("/docs/{name}", file)])


class DocsPage:
    """ASGI middleware: ``/``, ``/docs`` and ``/docs/...`` are answered by ``pages``; the rest goes on."""

    def __init__(self, app: Any, pages: Starlette) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in ("/", "/docs") or path.startswith("/docs/"):
            await self.pages(scope, receive, send)
        else:
            await self.app(scope, receive, send)
