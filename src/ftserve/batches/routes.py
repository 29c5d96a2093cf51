"""HTTP routes for /batches."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx, json_body
from ..api.responses import json_response, list_body
from .schemas import PAGING, batch_object


async def create_batch(request: Request, ctx: Ctx) -> Response:
    body = await json_body(request)
    batch = await run_in_threadpool(ctx.services.batches.create, ctx.organization, body)
    return json_response(batch_object(batch))


async def list_batches(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    page = ctx.services.batches.list(
        ctx.organization, after=PAGING.after(q), limit=PAGING.limit(q, ctx.services.settings)
    )
    return json_response(list_body([batch_object(b) for b in page.items], page.has_more, ids=True))


async def retrieve_batch(request: Request, ctx: Ctx) -> Response:
    batch = ctx.services.batches.get(ctx.organization, request.path_params["batch_id"])
    return json_response(batch_object(batch))


async def cancel_batch(request: Request, ctx: Ctx) -> Response:
    await json_body(request, allow_empty=True)
    batch = await run_in_threadpool(
        ctx.services.batches.cancel, ctx.organization, request.path_params["batch_id"]
    )
    return json_response(batch_object(batch))


ROUTES = [
    ("POST", "/batches", create_batch),
    ("GET", "/batches", list_batches),
    ("GET", "/batches/{batch_id}", retrieve_batch),
    ("POST", "/batches/{batch_id}/cancel", cancel_batch),
]
