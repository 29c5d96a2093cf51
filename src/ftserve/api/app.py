"""The ASGI application: every route under ``/v1`` (OpenAI), ``/openai/v1`` (Azure v1) and
``/openai`` (Azure classic, ``api-version`` accepted and ignored), one error renderer for all.

Each handler is wrapped once: it gets a request id, the caller's organization from the API key,
and any exception it raises comes back as OpenAI's error envelope. Reads run on the event loop
(SQLite reads are microseconds); writes and file checks run in the thread pool.
"""

from __future__ import annotations

import logging
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

from ..checkpoints import routes as checkpoint_routes
from ..completions import routes as completion_routes
from ..config import Settings
from ..errors import (
    ApiError,
    DatabaseUnavailable,
    InvalidRequest,
    MethodNotAllowed,
    RouteNotFound,
    ServerError,
    StoreUnavailable,
)
from ..events import routes as event_routes
from ..files import routes as file_routes
from ..ids import request_id
from ..jobs import routes as job_routes
from ..models import routes as model_routes
from ..web import routes as web_routes
from .context import Ctx, Handler
from .fastpath import EventsFastPath
from .openapi import openapi_document
from .responses import error_response, json_response, raw_json
from .services import Services, build_services

log = logging.getLogger("ftserve.api")

PREFIXES = (("/v1", False), ("/openai/v1", True), ("/openai", True))


def _stamp(response: Response, rid: str, azure: bool) -> Response:
    response.headers["x-request-id"] = rid
    if azure:
        response.headers["apim-request-id"] = rid
    return response


def _wrap(handler: Handler, services: Services, azure: bool) -> Callable[[Request], Any]:
    keys = services.keys

    async def endpoint(request: Request) -> Response:
        rid = request_id()
        try:
            ctx = Ctx(keys.organization(request.headers), services)
            response = await handler(request, ctx)
        except ApiError as exc:
            response = error_response(exc)
        except StoreUnavailable as exc:
            # A database that is down or restarting: no bug here, so no traceback in the log.
            log.warning("request %s %s %s: %s", rid, request.method, request.url.path, exc)
            response = error_response(DatabaseUnavailable(rid))
        except Exception:
            log.exception("request %s %s %s failed", rid, request.method, request.url.path)
            response = error_response(
                ServerError(
                    f"The server had an error while processing your request (request id {rid}). "
                    "The details are in the server log."
                )
            )
        return _stamp(response, rid, azure)

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


def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    err: ApiError
    if exc.status_code == 404:
        err = RouteNotFound(request.method, path)
    elif exc.status_code == 405:
        err = MethodNotAllowed(request.method, path)
    else:
        err = InvalidRequest(str(exc.detail), status=exc.status_code)
    response = error_response(err)
    if exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
        response.headers["allow"] = exc.headers["Allow"]
    return _stamp(response, request_id(), path.startswith("/openai/"))


def _server_error(request: Request, exc: Exception) -> Response:
    rid = request_id()
    log.error("request %s %s %s failed: %r", rid, request.method, request.url.path, exc)
    err: ApiError = (
        DatabaseUnavailable(rid)
        if isinstance(exc, StoreUnavailable)
        else ServerError(f"The server had an error (request id {rid}).")
    )
    return _stamp(
        error_response(err),
        rid,
        request.url.path.startswith("/openai/"),
    )


def build_routes(services: Services) -> list[BaseRoute]:
    table = [
        *event_routes.ROUTES,  # the hot path leads the route scan
        *file_routes.ROUTES,
        *job_routes.ROUTES,
        *checkpoint_routes.ROUTES,
        *model_routes.ROUTES,
        *completion_routes.ROUTES,
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


def create_app(
    settings: Settings, services: Services | None = None, *, background: bool = True
) -> ASGIApp:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threads: list[threading.Thread] = []
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
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        lifespan=lifespan,
    )
    # "/v1/files/" is an unknown URL (404 in the envelope), not a redirect without one.
    app.router.redirect_slashes = False
    app.state.services = services
    return EventsFastPath(app, services)
