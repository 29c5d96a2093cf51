"""A plain ASGI fast path for the seed endpoint's successful requests.

Measured with ``bench/events_bench.py``: Starlette's middleware stack, a scan of every route,
and the Request, QueryParams and Response objects cost more per events request than the keyset
query itself. This path serves only a ``GET …/fine_tuning/jobs/{id}/events`` that authenticates,
has nothing but ``limit``, ``after`` and ``api-version`` in its query, and finds its page. Every
other outcome — any error, any unusual parameter — falls through to the Starlette app, which does
the request again and answers with the one error renderer. So the behaviour is defined in one
place (the same ``EventService``, ``KeyChecker`` and parameter checks), and this module only
short-cuts the common case.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ApiError, StoreError
from ..events.schemas import PAGING
from ..ids import request_id
from ..params import query_int, query_str
from ..wire.queries import MIN_LIMIT
from .auth import presented_key
from .envelope import error_envelope
from .services import Services

_EVENTS_PATH = re.compile(r"/(v1|openai/v1|openai)/fine_tuning/jobs/([^/]+)/events")
_QUERY_KEYS = frozenset({"limit", "after", "api-version"})
_JSON = (b"content-type", b"application/json")


def _parse_query(raw: bytes) -> dict[str, str] | None:
    """The query as a dict, or None when it holds anything but one each of the known keys.
    Ids and limits need no unquoting; only when an escape appears does parse_qsl do the work."""
    if not raw:
        return {}
    text = raw.decode("latin-1")
    pairs = (
        parse_qsl(text, keep_blank_values=True)
        if "%" in text or "+" in text
        else [part.partition("=")[::2] for part in text.split("&") if part]
    )
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query or key not in _QUERY_KEYS:
            return None
        query[key] = value
    return query


class EventsFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self._keys = services.keys
        self._events = services.events
        # The events list's declared paging, read once: this path checks the same bounds.
        self._default_limit = PAGING.default_limit
        self._max_limit = PAGING.maximum(services.settings)
        # PostgreSQL: the page is awaited on the store's async pool (SQLite: read inline).
        self._awaits = services.events.awaits_store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _EVENTS_PATH.fullmatch(scope["path"])
            if match is not None:
                try:
                    if self._awaits:
                        body = await self._page_async(scope, match.group(2))
                    else:
                        body = self._page(scope, match.group(2))
                except StoreError as exc:
                    await self._store_failed(scope, receive, send, match.group(1), exc)
                    return
                if body is not None:
                    rid = request_id().encode()
                    headers = [
                        _JSON,
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", rid),
                    ]
                    if match.group(1) != "v1":
                        headers.append((b"apim-request-id", rid))
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def _request(self, scope: Scope) -> tuple[str, str | None, int] | None:
        """(organization, after, limit) of a request the fast path can answer; None hands it
        to the app (no or a bad key, a bad query: the app's one renderer words the error)."""
        api_key = authorization = None
        for name, value in scope["headers"]:
            if name == b"api-key":
                api_key = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        presented = presented_key(api_key, authorization)
        organization = self._keys.lookup(presented) if presented else None
        if organization is None:
            return None
        query = _parse_query(scope["query_string"])
        if query is None:
            return None
        try:
            limit = query_int(
                query,
                "limit",
                default=self._default_limit,
                minimum=MIN_LIMIT,
                maximum=self._max_limit,
            )
            return organization, query_str(query, "after"), limit
        except ApiError:
            return None

    def _page(self, scope: Scope, job_id: str) -> bytes | None:
        request = self._request(scope)
        if request is None:
            return None
        try:
            return self._events.page_json(request[0], job_id, request[1], request[2])
        except ApiError:
            return None

    async def _page_async(self, scope: Scope, job_id: str) -> bytes | None:
        """:meth:`_page` awaiting the store (PostgreSQL); a StoreError comes out of it."""
        request = self._request(scope)
        if request is None:
            return None
        try:
            return await self._events.page_json_async(request[0], job_id, request[1], request[2])
        except ApiError:
            return None

    @staticmethod
    async def _store_failed(
        scope: Scope, receive: Receive, send: Send, prefix: str, exc: StoreError
    ) -> None:
        """The envelope the app renders for a failed store (503 for one that cannot be reached,
        else 500), answered here: falling through would read the failing store (and wait out
        its timeouts) a second time."""
        response = error_envelope(
            exc, rid=request_id(), method="GET", path=scope["path"], azure=prefix != "v1"
        )
        await response(scope, receive, send)
