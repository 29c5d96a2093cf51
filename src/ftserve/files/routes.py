"""HTTP routes for /files."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..api.context import Ctx
from ..api.responses import json_response, list_body
from ..params import query_choice, query_str
from .schemas import DEFAULT_ORDER, LIST_PURPOSES, ORDERS, PAGING, file_deleted, file_object
from .upload import receive_upload


async def create_file(request: Request, ctx: Ctx) -> Response:
    files = ctx.services.files
    upload = await receive_upload(request, files.tmp_dir, ctx.services.settings.max_upload_bytes)
    record = await run_in_threadpool(files.create_from_upload, ctx.organization, upload)
    return json_response(file_object(record))


async def list_files(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    purpose = query_str(q, "purpose")
    if purpose is not None:
        query_choice(q, "purpose", LIST_PURPOSES, purpose)
    page = ctx.services.files.list(
        ctx.organization,
        purpose=purpose,
        after=PAGING.after(q),
        limit=PAGING.limit(q, ctx.services.settings),
        ascending=query_choice(q, "order", ORDERS, DEFAULT_ORDER) == "asc",
    )
    return json_response(list_body([file_object(f) for f in page.items], page.has_more, ids=True))


async def retrieve_file(request: Request, ctx: Ctx) -> Response:
    record = ctx.services.files.get(ctx.organization, request.path_params["file_id"])
    return json_response(file_object(record))


async def delete_file(request: Request, ctx: Ctx) -> Response:
    record = await run_in_threadpool(
        ctx.services.files.delete, ctx.organization, request.path_params["file_id"]
    )
    return json_response(file_deleted(record))


async def file_content(request: Request, ctx: Ctx) -> Response:
    files = ctx.services.files
    record = files.get(ctx.organization, request.path_params["file_id"])
    # From a remote blob store the first read downloads the file: off the event loop.
    path = await run_in_threadpool(files.blob_path, record) if files.remote else None
    return FileResponse(
        path or files.blob_path(record),
        media_type="application/octet-stream",
        filename=record.filename,
        content_disposition_type="attachment",
    )


ROUTES = [
    ("POST", "/files", create_file),
    ("GET", "/files", list_files),
    ("GET", "/files/{file_id}", retrieve_file),
    ("DELETE", "/files/{file_id}", delete_file),
    ("GET", "/files/{file_id}/content", file_content),
]
