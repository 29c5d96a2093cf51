"""HTTP routes for /fine_tuning/jobs (not events or checkpoints, which have their own)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx, json_body
from ..api.responses import json_response, list_body
from ..errors import InvalidValue
from .objects import job_object
from .schemas import PAGING


async def create_job(request: Request, ctx: Ctx) -> Response:
    body = await json_body(request)
    job = await run_in_threadpool(ctx.services.jobs.create, ctx.organization, body)
    return json_response(job_object(job))


def _metadata_filter(request: Request) -> dict[str, str] | None:
    meta: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            meta[key[len("metadata[") : -1]] = value
        elif key == "metadata" and value not in ("null", ""):
            raise InvalidValue(
                "Invalid 'metadata': filter with metadata[key]=value, or metadata=null.",
                param="metadata",
            )
    return meta or None


async def list_jobs(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    page = ctx.services.jobs.list(
        ctx.organization,
        after=PAGING.after(q),
        limit=PAGING.limit(q, ctx.services.settings),
        metadata=_metadata_filter(request),
    )
    return json_response(list_body([job_object(j) for j in page.items], page.has_more))


async def retrieve_job(request: Request, ctx: Ctx) -> Response:
    return json_response(
        job_object(ctx.services.jobs.get(ctx.organization, request.path_params["job_id"]))
    )


async def cancel_job(request: Request, ctx: Ctx) -> Response:
    await json_body(request, allow_empty=True)
    job = await run_in_threadpool(
        ctx.services.jobs.cancel, ctx.organization, request.path_params["job_id"]
    )
    return json_response(job_object(job))


async def pause_job(request: Request, ctx: Ctx) -> Response:
    await json_body(request, allow_empty=True)
    job = await run_in_threadpool(
        ctx.services.jobs.pause, ctx.organization, request.path_params["job_id"]
    )
    return json_response(job_object(job))


async def resume_job(request: Request, ctx: Ctx) -> Response:
    await json_body(request, allow_empty=True)
    job = await run_in_threadpool(
        ctx.services.jobs.resume, ctx.organization, request.path_params["job_id"]
    )
    return json_response(job_object(job))


ROUTES = [
    ("POST", "/fine_tuning/jobs", create_job),
    ("GET", "/fine_tuning/jobs", list_jobs),
    ("GET", "/fine_tuning/jobs/{job_id}", retrieve_job),
    ("POST", "/fine_tuning/jobs/{job_id}/cancel", cancel_job),
    ("POST", "/fine_tuning/jobs/{job_id}/pause", pause_job),
    ("POST", "/fine_tuning/jobs/{job_id}/resume", resume_job),
]
