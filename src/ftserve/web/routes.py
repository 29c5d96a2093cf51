"""The dashboard's routes, served by the API process at the root: ``/`` (jobs), ``/jobs/{id}``,
``/new`` (upload a file, start a job), ``/chat`` and ``/static/app.{js,css}``.

None of these paths starts with an API prefix (``/v1``, ``/openai``), and they are not part of
the OpenAI API, so the OpenAPI document does not list them. The pages hold no data and need no
key: the script asks for the key once, keeps it in the tab's sessionStorage and reads everything
from the public API with ``Authorization: Bearer``, so the dashboard can show nothing the API
would not show that key. An unknown path under them is the API's 404 envelope, as anywhere.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from . import pages

ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

# Everything the pages use comes from this process: no CDN, no fonts, no inline script or style.
# connect-src 'self' keeps the script talking to this server only, so the key it holds cannot
# be sent anywhere else.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Each asset's bytes and ETag, read once from the package (works from a wheel too)."""
    root = resources.files(__package__) / "static"
    loaded = {}
    for name in ASSETS:
        body = (root / name).read_bytes()
        loaded[name] = (body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return loaded


def build_routes() -> list[BaseRoute]:
    assets = _load_assets()
    # The asset URLs carry their hash, so a browser never runs a script from an older server
    # with a page from a newer one.
    versions = {name: etag.strip('"') for name, (_, etag) in assets.items()}

    def page(html: str) -> Response:
        return HTMLResponse(html, headers=_SECURITY_HEADERS)

    async def jobs_page(request: Request) -> Response:
        return page(pages.jobs(versions))

    async def job_page(request: Request) -> Response:
        return page(pages.job(versions, request.path_params["job_id"]))

    async def new_page(request: Request) -> Response:
        return page(pages.new_job(versions))

    async def chat_page(request: Request) -> Response:
        return page(pages.chat(versions))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            raise HTTPException(404)  # rendered as the API's 404 envelope
        body, etag = assets[name]
        headers = {**_SECURITY_HEADERS, "etag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=ASSETS[name], headers=headers)

    return [
        Route("/", jobs_page, methods=["GET"]),
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Route("/new", new_page, methods=["GET"]),
        Route("/chat", chat_page, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
    ]
