"""GET /fine_tuning/jobs/{id}/events — the seed endpoint, and its live stream (``stream=true``).

The list is served inline on the event loop: the keyset read is tens of microseconds on SQLite,
less than a hop to the thread pool would cost. On PostgreSQL (a round trip per read) the page is
awaited on the store's async pool instead, so the loop serves other requests meanwhile. (The
common list request never gets here: ``ftserve.api.fastpath`` answers it; anything with
``stream`` in its query falls through to this route.)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx
from ..api.responses import raw_json
from .schemas import PAGING
from .sse import SseResponse
from .stream import check_stream_query, last_event_id, wants_stream


async def list_events(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    if wants_stream(q):
        return await stream_events(request, ctx)
    limit = PAGING.limit(q, ctx.services.settings)
    events = ctx.services.events
    args = (ctx.organization, request.path_params["job_id"], PAGING.after(q), limit)
    body = await events.page_json_async(*args) if events.awaits_store else events.page_json(*args)
    return raw_json(body)


async def stream_events(request: Request, ctx: Ctx) -> Response:
    check_stream_query(request.query_params)
    chunks = await ctx.services.events.stream(
        ctx.organization,
        request.path_params["job_id"],
        last_event_id(request.headers),
        ctx.services.settings.events_heartbeat,
    )
    response = SseResponse(chunks)
    if request.method == "HEAD":
        # The headers a GET would get, without holding the connection until the job ends.
        await chunks.aclose()
        return Response(b"", headers=dict(response.headers))
    return response


ROUTES = [("GET", "/fine_tuning/jobs/{job_id}/events", list_events)]
