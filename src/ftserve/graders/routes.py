"""HTTP routes for /fine_tuning/alpha/graders."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx, json_body
from ..api.responses import json_response
from ..wire.fields import Field, parse_body, unknown_parameter
from . import grading
from .schemas import RUN_FIELDS, VALIDATE_FIELDS, VALIDATE_RESPONSE


def _parse(body: dict[str, Any], table: tuple[Field, ...]) -> dict[str, Any]:
    return parse_body(body, table, unknown=unknown_parameter)


# Checking may probe the python sandbox once (a child process): off the event loop, as grading.
async def validate_grader(request: Request, ctx: Ctx) -> Response:
    body = await run_in_threadpool(_parse, await json_body(request), VALIDATE_FIELDS)
    return json_response(VALIDATE_RESPONSE.make(grader=body["grader"]))


async def run_grader(request: Request, ctx: Ctx) -> Response:
    body = await run_in_threadpool(_parse, await json_body(request), RUN_FIELDS)
    result = await run_in_threadpool(
        grading.run, body["grader"], body["model_sample"], body["item"] or {}
    )
    return json_response(result)


ROUTES = [
    ("POST", "/fine_tuning/alpha/graders/validate", validate_grader),
    ("POST", "/fine_tuning/alpha/graders/run", run_grader),
]
