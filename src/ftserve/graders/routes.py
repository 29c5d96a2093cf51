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
from .policy import check_judges, refuse_python
from .schemas import RUN_FIELDS, VALIDATE_FIELDS, VALIDATE_RESPONSE


def _parse(body: dict[str, Any], table: tuple[Field, ...], ctx: Ctx) -> dict[str, Any]:
    if not ctx.services.settings.python_graders:
        refuse_python(body.get("grader"), "grader")
    return parse_body(body, table, unknown=unknown_parameter)


def _validate(body: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    parsed = _parse(body, VALIDATE_FIELDS, ctx)
    # The judges are checked here, not only when a sample is graded: a job's grader is checked
    # at creation the same way, and validating is how a user learns it would be refused.
    check_judges(parsed["grader"], "grader", ctx.services.models.judge(ctx.organization))
    return parsed


# Checking may probe the python sandbox once (a child process) and read the store (fine-tuned
# judges): off the event loop, as grading.
async def validate_grader(request: Request, ctx: Ctx) -> Response:
    body = await run_in_threadpool(_validate, await json_body(request), ctx)
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
