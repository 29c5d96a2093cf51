"""GET /fine_tuning/jobs/{id}/checkpoints."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx
from ..api.responses import json_response, list_body
from .schemas import PAGING, checkpoint_object


async def list_checkpoints(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    page = ctx.services.checkpoints.list(
        ctx.organization,
        request.path_params["job_id"],
        after=PAGING.after(q),
        limit=PAGING.limit(q, ctx.services.settings),
    )
    data = [checkpoint_object(c) for c in page.items]
    return json_response(list_body(data, page.has_more, ids=True))


ROUTES = [("GET", "/fine_tuning/jobs/{job_id}/checkpoints", list_checkpoints)]
