"""GET /fine_tuning/jobs/{id}/events — the seed endpoint.

Served inline on the event loop: the keyset read is tens of microseconds on SQLite, less than a
hop to the thread pool would cost. On PostgreSQL (a round trip per read) the page is awaited on
the store's async pool instead, so the loop serves other requests meanwhile.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx
from ..api.responses import raw_json
from ..params import query_int, query_str


async def list_events(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    limit = query_int(
        q, "limit", default=20, minimum=1, maximum=ctx.services.settings.events_max_limit
    )
    events = ctx.services.events
    args = (ctx.organization, request.path_params["job_id"], query_str(q, "after"), limit)
    body = await events.page_json_async(*args) if events.awaits_store else events.page_json(*args)
    return raw_json(body)


ROUTES = [("GET", "/fine_tuning/jobs/{job_id}/events", list_events)]
