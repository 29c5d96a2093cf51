"""The grader endpoints in the OpenAPI document, from the declarations in :mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import errors, json_body, ok, op
from ..wire.shapes import ref
from .schemas import RUN_RESPONSE, VALIDATE_RESPONSE

Json = dict[str, Any]
_TAG = "Fine-tuning"


def paths(settings: Settings) -> Json:
    return {
        "/fine_tuning/alpha/graders/validate": {
            "post": op(
                "validateGrader",
                _TAG,
                "Check a grader; it is echoed as understood, a bad one is a 400 naming the path "
                "of what is wrong.",
                {"200": ok(VALIDATE_RESPONSE.name, "The grader."), **errors(400, 401)},
                requestBody=json_body(ref("ValidateGraderRequest")),
            )
        },
        "/fine_tuning/alpha/graders/run": {
            "post": op(
                "runGrader",
                _TAG,
                "Grade one model sample against an item. A grader that fails on the sample "
                "scores 0 with its error flag set.",
                {
                    "200": ok(RUN_RESPONSE.name, "The reward and how it came about."),
                    **errors(400, 401),
                },
                requestBody=json_body(ref("RunGraderRequest")),
            )
        },
    }
