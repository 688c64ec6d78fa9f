"""``/demo``: one static page (HTML, JS and CSS from ``serving/demo/``) that shows what the service does.

The page talks only to the public ``/v1`` routes from the browser; this front just serves its three
files, read once, with a Content-Security-Policy that allows nothing from elsewhere (no CDN: the
page works offline).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ASSETS = Path(__file__).resolve().parents[1] / "demo"  # serving/demo/
FILES = {
    "index.html": "text/html; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=len(FILES))
def asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


async def page(request: Request) -> Response:
    name = request.path_params.get("name", "index.html")
    if name not in FILES:
        return Response(b"not found", status_code=404, media_type="text/plain")
    return Response(asset(name), media_type=FILES[name], headers=HEADERS)


# BentoML mounts this at /demo; Starlette redirects /demo to /demo/ (the page uses absolute asset URLs).
demo = Starlette(routes=[Route("/", page), Route("/{name}", page)])
