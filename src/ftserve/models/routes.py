"""GET /models, GET and DELETE /models/{model}: base models, then the caller's fine-tuned ones.

``{model:path}`` so ids with ``/`` (``org/name``) route here; Starlette decodes ``%3A`` and
``%2F`` before matching, so ``ft:…`` arrives the same with raw or encoded colons.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx
from ..api.responses import json_response
from .schemas import MODEL_LIST


async def list_models(request: Request, ctx: Ctx) -> Response:
    data = ctx.services.models.list_models(ctx.organization)
    return json_response(MODEL_LIST.make(data=data))


async def retrieve_model(request: Request, ctx: Ctx) -> Response:
    wanted = request.path_params["model"]
    return json_response(ctx.services.models.retrieve(ctx.organization, wanted))


async def delete_model(request: Request, ctx: Ctx) -> Response:
    wanted = request.path_params["model"]
    # Removing the weights is file-system work: off the event loop.
    deleted = await run_in_threadpool(ctx.services.models.delete, ctx.organization, wanted)
    return json_response(deleted)


ROUTES = [
    ("GET", "/models", list_models),
    ("GET", "/models/{model:path}", retrieve_model),
    ("DELETE", "/models/{model:path}", delete_model),
]
