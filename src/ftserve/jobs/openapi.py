"""The jobs endpoints in the OpenAPI document, from the declarations in :mod:`.schemas` and
:mod:`.objects`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import empty_body, errors, json_body, ok, op, param, path_param
from ..wire.shapes import STR, ref
from .objects import JOB, JOB_LIST
from .schemas import PAGING

Json = dict[str, Any]
_TAG = "Fine-tuning"


def parameters(settings: Settings) -> Json:
    return {
        "JobId": path_param("fine_tuning_job_id", "The job's id (`ftjob-...`)."),
        **PAGING.parameters(settings),
    }


def _state_change(op_id: str, summary: str, result: str, refused: str) -> Json:
    return op(
        op_id,
        _TAG,
        summary,
        {"200": ok(JOB.name, f"The job, `{result}`."), **errors(400, 401, 404, 413)},
        requestBody=empty_body(refused),
    )


def paths(settings: Settings) -> Json:
    job = [param("JobId")]
    other_state = "Any other state is a 400 `invalid_job_state`."
    return {
        "/fine_tuning/jobs": {
            "post": op(
                "createFineTuningJob",
                _TAG,
                "Create a job; it starts in `validating_files` while its files are checked.",
                {"200": ok(JOB.name, "The new job."), **errors(400, 401, 413)},
                requestBody=json_body(ref("CreateFineTuningJobRequest")),
            ),
            "get": op(
                "listPaginatedFineTuningJobs",
                _TAG,
                "List jobs, newest first.",
                {"200": ok(JOB_LIST.name, "A page of jobs."), **errors(400, 401)},
                parameters=[
                    param("JobsAfter"),
                    param("JobsLimit"),
                    {
                        "name": "metadata",
                        "in": "query",
                        "required": False,
                        "style": "deepObject",
                        "explode": True,
                        "description": "Only jobs whose metadata has every `metadata[key]=value` "
                        "pair given; `metadata=null` (or empty) means no filter.",
                        "schema": {"type": "object", "additionalProperties": STR},
                    },
                ],
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}": {
            "parameters": job,
            "get": op(
                "retrieveFineTuningJob",
                _TAG,
                "Describe a job.",
                {"200": ok(JOB.name, "The job."), **errors(401, 404, 405)},
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/cancel": {
            "parameters": job,
            "post": _state_change(
                "cancelFineTuningJob",
                "Cancel a job that is validating_files, queued, running or paused.",
                "cancelled",
                "A finished job is a 400 `invalid_job_state`.",
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/pause": {
            "parameters": job,
            "post": _state_change(
                "pauseFineTuningJob",
                "Pause a queued or running job (a running one checkpoints and stops).",
                "paused",
                other_state,
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/resume": {
            "parameters": job,
            "post": _state_change(
                "resumeFineTuningJob",
                "Resume a paused job (it goes back to `queued`).",
                "queued",
                other_state,
            ),
        },
    }
