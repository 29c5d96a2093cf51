"""The one mapping from an exception to OpenAI's error envelope (status, headers, body), used by
the app's route wrapper, its app-wide exception handler and the events fast path alike.

* :class:`~ftserve.errors.ApiError` renders itself (a 401 adds ``www-authenticate``);
* Starlette's ``HTTPException`` — no such URL, or a method the URL does not take — is the
  envelope's 404 or 405 (the latter with ``allow``);
* :class:`~ftserve.errors.StoreUnavailable` is a 503 ``database_unavailable`` that says to retry,
  logged as a warning: a database that is down or restarting is no bug, so no traceback;
* anything else is a 500 whose message names the request id and nothing internal; the details
  go to the log.

Every answer carries ``x-request-id``, and ``apim-request-id`` as well under the Azure prefixes.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..errors import (
    ApiError,
    DatabaseUnavailable,
    InvalidRequest,
    MethodNotAllowed,
    RouteNotFound,
    ServerError,
    StoreUnavailable,
)
from .responses import error_response

log = logging.getLogger("ftserve.api")


def stamp(response: Response, rid: str, azure: bool) -> Response:
    response.headers["x-request-id"] = rid
    if azure:
        response.headers["apim-request-id"] = rid
    return response


def _api_error(exc: Exception, rid: str, method: str, path: str, escaped: bool) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return RouteNotFound(method, path)
        if exc.status_code == 405:
            return MethodNotAllowed(method, path)
        return InvalidRequest(str(exc.detail), status=exc.status_code)
    if isinstance(exc, StoreUnavailable):
        log.warning("request %s %s %s: %s", rid, method, path, exc)
        return DatabaseUnavailable(rid)
    if escaped:
        # Starlette hands the exception on to the server, which logs its traceback.
        log.error("request %s %s %s failed: %r", rid, method, path, exc)
        return ServerError(f"The server had an error (request id {rid}).")
    log.error("request %s %s %s failed", rid, method, path, exc_info=exc)
    return ServerError(
        f"The server had an error while processing your request (request id {rid}). "
        "The details are in the server log."
    )


def error_envelope(
    exc: Exception, *, rid: str, method: str, path: str, azure: bool, escaped: bool = False
) -> Response:
    """The response for a request to ``path`` that ended in ``exc``.

    ``azure``: the request came under an Azure prefix. ``escaped``: the exception got past the
    route (the app-wide handler caught it, not a route's wrapper), which words the 500 more
    briefly, as this server always has.
    """
    response = error_response(_api_error(exc, rid, method, path, escaped))
    if (
        isinstance(exc, HTTPException)
        and exc.status_code == 405
        and exc.headers
        and "Allow" in exc.headers
    ):
        response.headers["allow"] = exc.headers["Allow"]
    return stamp(response, rid, azure)
