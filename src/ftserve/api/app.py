"""The ASGI application: every route under ``/v1`` (OpenAI), ``/openai/v1`` (Azure v1) and
``/openai`` (Azure classic, ``api-version`` accepted and ignored), one error envelope for all
(``envelope.py``).

Each handler is wrapped once: it gets a request id, the caller's organization from the API key,
and any exception it raises comes back as OpenAI's error envelope. Reads run on the event loop
(SQLite reads are microseconds); writes and file checks run in the thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from ..batches import routes as batch_routes
from ..batches.dispatch import serves
from ..batches.runner import BatchRunner
from ..checkpoints import routes as checkpoint_routes
from ..completions import routes as completion_routes
from ..config import Settings
from ..events import routes as event_routes
from ..files import routes as file_routes
from ..graders import routes as grader_routes
from ..ids import request_id
from ..inference.client import engine_settings
from ..inference.protocol import BATCH_ROWS_FACTOR
from ..jobs import routes as job_routes
from ..models import routes as model_routes
from ..responses import routes as response_routes
from ..web import routes as web_routes
from .context import IN_PROCESS_ORGANIZATION, Ctx, Handler
from .envelope import error_envelope, stamp
from .fastpath import EventsFastPath
from .openapi import openapi_document
from .responses import json_response, raw_json
from .services import Services, build_services

PREFIXES = (("/v1", False), ("/openai/v1", True), ("/openai", True))


def _wrap(handler: Handler, services: Services, azure: bool) -> Callable[[Request], Any]:
    keys = services.keys

    async def endpoint(request: Request) -> Response:
        rid = request_id()
        try:
            org = request.scope.get(IN_PROCESS_ORGANIZATION)
            ctx = Ctx(org if org is not None else keys.organization(request.headers), services)
            response = await handler(request, ctx)
        except Exception as exc:
            return error_envelope(
                exc, rid=rid, method=request.method, path=request.url.path, azure=azure
            )
        return stamp(response, rid, azure)

    return endpoint


def _dispatch(
    handlers: dict[str, Handler], services: Services, azure: bool
) -> Callable[[Request], Any]:
    if len(handlers) == 1:
        return _wrap(next(iter(handlers.values())), services, azure)
    wrapped = {method: _wrap(h, services, azure) for method, h in handlers.items()}

    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD on GET routes.
        call = wrapped.get(request.method) or wrapped["GET"]
        response: Response = await call(request)
        return response

    return endpoint


def _escaped(request: Request, exc: Exception) -> Response:
    """What no route's wrapper answered: an unknown URL or method (Starlette's HTTPException),
    or a failure outside the API's handlers (dashboard pages, ``/openapi.json``)."""
    path = request.url.path
    return error_envelope(
        exc,
        rid=request_id(),
        method=request.method,
        path=path,
        azure=path.startswith("/openai/"),
        escaped=True,
    )


def build_routes(services: Services) -> list[BaseRoute]:
    table = [
        *event_routes.ROUTES,  # the hot path leads the route scan
        *file_routes.ROUTES,
        *job_routes.ROUTES,
        *checkpoint_routes.ROUTES,
        *model_routes.ROUTES,
        *completion_routes.ROUTES,
        *response_routes.ROUTES,
        *batch_routes.ROUTES,
        *grader_routes.ROUTES,
    ]
    # One Route per path with all its methods, so a 405 lists every allowed method.
    by_path: dict[str, dict[str, Handler]] = {}
    for method, path, handler in table:
        by_path.setdefault(path, {})[method] = handler
    routes: list[BaseRoute] = []
    for prefix, azure in PREFIXES:
        for path, handlers in by_path.items():
            routes.append(
                Route(prefix + path, _dispatch(handlers, services, azure), methods=list(handlers))
            )

    document: list[bytes] = []  # this app's, built on first request (it takes a moment)

    async def openapi(request: Request) -> Response:
        if not document:
            document.append(orjson.dumps(openapi_document(services.settings)))
        return raw_json(document[0])

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    routes.append(Route("/health", health, methods=["GET"]))
    # The dashboard's pages and assets: outside the API prefixes, keyless (they hold no data).
    routes.extend(web_routes.build_routes())
    return routes


def _batch_runner(services: Services, app: ASGIApp) -> BatchRunner | None:
    """Batches run where inference is served: through this app's own routes (dispatch.py)."""
    if services.inference is None:
        return None
    return BatchRunner(
        services.store,
        services.files,
        app,
        lease_seconds=services.settings.lease_seconds,
        # A full decode batch, and two more lines waiting to take a row the moment one frees.
        concurrency=engine_settings(services.settings).max_batch * BATCH_ROWS_FACTOR + 2,
    )


def create_app(
    settings: Settings, services: Services | None = None, *, background: bool = True
) -> ASGIApp:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threads: list[threading.Thread] = []
        runner = _batch_runner(services, app) if background else None
        if runner is not None:
            runner.start()
            services.batches.changed = runner.wake
        if background:
            services.validator.start()
            for i, worker in enumerate(services.workers):
                thread = threading.Thread(
                    target=worker.run, name=f"ftserve-worker-{i}", daemon=True
                )
                thread.start()
                threads.append(thread)
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            if background:
                for worker in services.workers:
                    worker.stop()
                for thread in threads:
                    thread.join(timeout=30)
                services.validator.stop()
            if services.inference is not None:
                services.inference.close()
            await services.events.aclose()

    app = Starlette(
        routes=build_routes(services),
        exception_handlers={HTTPException: _escaped, Exception: _escaped},
        lifespan=lifespan,
    )
    services.batches.serves = lambda path: serves(app.routes, path)
    # "/v1/files/" is an unknown URL (404 in the envelope), not a redirect without one.
    app.router.redirect_slashes = False
    app.state.services = services
    return EventsFastPath(app, services)
