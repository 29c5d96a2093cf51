"""HTTP routes for /fine_tuning/alpha/graders."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.from_thread
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from ..api.context import Ctx, json_body
from ..api.responses import json_response
from ..batches.dispatch import call
from ..wire.fields import Field, parse_body, unknown_parameter
from . import grading
from .judge import Chat
from .schemas import RUN_FIELDS, VALIDATE_FIELDS, VALIDATE_RESPONSE, refuse_python


def _parse(body: dict[str, Any], table: tuple[Field, ...], ctx: Ctx) -> dict[str, Any]:
    parsed = parse_body(body, table, unknown=unknown_parameter)
    if not ctx.services.settings.python_graders:
        refuse_python(parsed["grader"], "grader")
    return parsed


# Checking may probe the python sandbox once (a child process): off the event loop, as grading.
async def validate_grader(request: Request, ctx: Ctx) -> Response:
    body = await run_in_threadpool(_parse, await json_body(request), VALIDATE_FIELDS, ctx)
    return json_response(VALIDATE_RESPONSE.make(grader=body["grader"]))


def _judge(app: ASGIApp, organization: str) -> Chat:
    """The judge models, through this server's own chat route as the caller's organization
    (what it may use is what its judge may be; an unknown model is that route's 404)."""

    def chat(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # Called from the grading thread: the call itself runs on the event loop.
        answer = anyio.from_thread.run(
            call, app, organization, "/v1/chat/completions", orjson.dumps(body), asyncio.Event()
        )
        parsed = orjson.loads(answer.body) if answer.body else {}
        return answer.status, parsed if isinstance(parsed, dict) else {}

    return chat


async def run_grader(request: Request, ctx: Ctx) -> Response:
    body = await run_in_threadpool(_parse, await json_body(request), RUN_FIELDS, ctx)
    chat = _judge(request.scope["app"], ctx.organization)
    result = await run_in_threadpool(
        grading.run, body["grader"], body["model_sample"], body["item"] or {}, chat
    )
    return json_response(result)


ROUTES = [
    ("POST", "/fine_tuning/alpha/graders/validate", validate_grader),
    ("POST", "/fine_tuning/alpha/graders/run", run_grader),
]
