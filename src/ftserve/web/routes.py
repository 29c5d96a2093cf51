"""The dashboard's routes, served by the API process at the root: ``/`` (jobs), ``/jobs/{id}``,
``/new`` (upload a file, start a job), ``/chat`` and ``/static/{name}``: the stylesheet and the
script's ES modules (``app.js`` the entry; no build step, the browser loads each as imported).

None of these paths starts with an API prefix (``/v1``, ``/openai``), and they are not part of
the OpenAI API, so the OpenAPI document does not list them. The pages hold no data and need no
key: the script asks for the key once, keeps it in the tab's sessionStorage and reads everything
from the public API with ``Authorization: Bearer``, so the dashboard can show nothing the API
would not show that key. An unknown path under them is the API's 404 envelope, as anywhere.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from . import pages
from .facts import facts_json

# Module scripts are refused under any other type (and nosniff) than JavaScript's.
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def security_headers(script_hashes: list[str]) -> dict[str, str]:
    """Everything the pages use comes from this process: no CDN, no fonts, no inline script or
    style but the import map, allowed by its hash alone (the facts are a JSON data block, which
    is never run). connect-src 'self' keeps the script talking to this server only, so the key
    it holds cannot be sent anywhere else."""
    scripts = " ".join(["'self'", *(f"'sha256-{h}'" for h in script_hashes)])
    return {
        "content-security-policy": (
            f"default-src 'none'; script-src {scripts}; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Each asset's bytes and ETag, read once from the package (works from a wheel too)."""
    root = resources.files(__package__) / "static"
    loaded = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if any(entry.name.endswith(suffix) for suffix in MEDIA_TYPES):
            body = entry.read_bytes()
            loaded[entry.name] = (body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return loaded


def _media_type(name: str) -> str:
    return next(t for suffix, t in MEDIA_TYPES.items() if name.endswith(suffix))


def build_routes() -> list[BaseRoute]:
    assets = load_assets()
    # The asset URLs carry their hash (the modules' through the import map), so a browser never
    # runs a script from an older server with a page from a newer one.
    versions = {name: etag.strip('"') for name, (_, etag) in assets.items()}
    head = pages.assets_head(versions, facts_json())
    import_map = pages.import_map(versions).encode()
    headers = security_headers([base64.b64encode(hashlib.sha256(import_map).digest()).decode()])

    def page(html: str) -> Response:
        return HTMLResponse(html, headers=headers)

    async def jobs_page(request: Request) -> Response:
        return page(pages.jobs(head))

    async def job_page(request: Request) -> Response:
        return page(pages.job(head, request.path_params["job_id"]))

    async def new_page(request: Request) -> Response:
        return page(pages.new_job(head))

    async def chat_page(request: Request) -> Response:
        return page(pages.chat(head))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            raise HTTPException(404)  # rendered as the API's 404 envelope
        body, etag = assets[name]
        asset_headers = {**headers, "etag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=asset_headers)
        return Response(body, media_type=_media_type(name), headers=asset_headers)

    return [
        Route("/", jobs_page, methods=["GET"]),
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Route("/new", new_page, methods=["GET"]),
        Route("/chat", chat_page, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
    ]
