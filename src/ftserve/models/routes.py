"""GET /models and /models/{id}: base models available for fine-tuning here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx
from ..api.responses import json_response
from ..errors import NotFound
from .registry import model_object


async def list_models(request: Request, ctx: Ctx) -> Response:
    data = [model_object(m) for m in ctx.services.models.available()]
    return json_response({"object": "list", "data": data})


async def retrieve_model(request: Request, ctx: Ctx) -> Response:
    wanted = request.path_params["model"]
    for m in ctx.services.models.available():
        if m.name == wanted:
            return json_response(model_object(m))
    raise NotFound(f"The model '{wanted}' does not exist", param="model", code="model_not_found")


ROUTES = [("GET", "/models", list_models), ("GET", "/models/{model:path}", retrieve_model)]
