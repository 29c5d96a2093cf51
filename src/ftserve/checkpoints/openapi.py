"""The checkpoints endpoint in the OpenAPI document, from :mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import errors, ok, op, param
from .schemas import CHECKPOINT_LIST, PAGING

Json = dict[str, Any]


def parameters(settings: Settings) -> Json:
    return PAGING.parameters(settings)


def paths(settings: Settings) -> Json:
    return {
        "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": {
            "parameters": [param("JobId")],
            "get": op(
                "listFineTuningJobCheckpoints",
                "Fine-tuning",
                "A job's checkpoints, newest first.",
                {
                    "200": ok(CHECKPOINT_LIST.name, "A page of checkpoints."),
                    **errors(400, 401, 404),
                },
                parameters=[param("CheckpointsAfter"), param("CheckpointsLimit")],
            ),
        },
    }
