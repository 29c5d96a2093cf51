"""The ``fine_tuning.job`` wire object, declared once: :data:`JOB` gives the OpenAPI schema and
:func:`job_object` builds every job a response carries through it. The echoed request parts
(hyperparameters, integrations, ``ftserve``) take their schemas from the request's tables."""

from __future__ import annotations

from typing import Any

from ..store.records import JobRecord
from ..wire import metadata
from ..wire.fields import field_schema, object_schema
from ..wire.shapes import (
    INT_OR_NULL,
    STR,
    STR_OR_NULL,
    TIMESTAMP,
    Prop,
    Shape,
    closed,
    components,
    const,
    list_shape,
    or_null,
    ref,
)
from .method_schemas import (
    DPO_HYPERPARAMETERS,
    REINFORCEMENT_HYPERPARAMETERS,
    SUPERVISED_HYPERPARAMETERS,
)
from .schemas import (
    EXTENSION_FIELDS,
    INTEGRATION_FIELDS,
    MAX_SEED,
    TRAINING_TYPE_MAX_LENGTH,
    extension_defaults,
    request_schema,
)
from .states import Status

Json = dict[str, Any]

TRAINING_FORMATS = ("chat", "prompt_completion", "preference", "reinforcement")


def _extension_schema() -> Json:
    # Every row of the request's table is echoed (resolved where the worker resolves it).
    table = {f.name: field_schema(f, response=True) for f in EXTENSION_FIELDS}
    return closed(
        {
            **table,
            "training_type": {"type": "string", "maxLength": TRAINING_TYPE_MAX_LENGTH},
            "base_model": {
                "type": "string",
                "description": "The model actually trained (differs from `model` when "
                "`model` is an alias).",
            },
            "training_format": {
                "type": "string",
                "enum": list(TRAINING_FORMATS),
                "description": "The training file's format, once validated.",
            },
            "model_path": {
                "type": "string",
                "description": "Where the final model or adapter lies (succeeded jobs).",
            },
        },
        required=tuple(table),
        description="ftserve's extension; `training_type` is the request's `trainingType`.",
    )


JOB = Shape(
    "FineTuningJob",
    [
        const("object", "fine_tuning.job"),
        Prop("id", {"type": "string", "pattern": "^ftjob-"}),
        Prop(
            "model",
            {
                "type": "string",
                "description": "The base model as requested (an alias stays the alias; "
                "`ftserve.base_model` names the model trained).",
            },
        ),
        Prop("created_at", TIMESTAMP),
        Prop("finished_at", INT_OR_NULL),
        Prop("fine_tuned_model", STR_OR_NULL),
        Prop("organization_id", {"type": "string", "pattern": "^org-"}),
        Prop("result_files", {"type": "array", "items": STR}),
        Prop("status", {"type": "string", "enum": [s.value for s in Status]}),
        Prop("validation_file", STR_OR_NULL),
        Prop("training_file", STR),
        Prop(
            "hyperparameters",
            {
                **ref("SupervisedHyperparameters"),
                "description": "Deprecated mirror of the method's common hyperparameters.",
            },
        ),
        Prop("trained_tokens", INT_OR_NULL),
        Prop(
            "error",
            or_null(closed({"code": STR, "message": STR, "param": STR_OR_NULL})),
        ),
        Prop("user_provided_suffix", STR_OR_NULL),
        Prop("seed", {"type": "integer", "minimum": 0, "maximum": MAX_SEED}),
        Prop("estimated_finish", INT_OR_NULL),
        Prop("integrations", {"type": "array", "items": ref("WandbIntegration")}),
        Prop("metadata", or_null(ref("Metadata"))),
        Prop("method", ref("FineTuneMethod")),
        Prop("ftserve", _extension_schema()),
    ],
    description="A fine-tuning job (`status` adds `paused` to OpenAI's values).",
)
JOB_LIST = list_shape("ListPaginatedFineTuningJobsResponse", JOB.name)


def job_object(job: JobRecord) -> dict[str, Any]:
    return JOB.make(
        id=job.id,
        model=job.model,
        created_at=job.created_at,
        finished_at=job.finished_at,
        fine_tuned_model=job.fine_tuned_model,
        organization_id="org-" + job.organization,
        result_files=job.result_files,
        status=job.status,
        validation_file=job.validation_file,
        training_file=job.training_file,
        hyperparameters=job.hyperparameters.to_json(),
        trained_tokens=job.trained_tokens,
        error=job.error,
        user_provided_suffix=job.suffix,
        seed=job.seed,
        estimated_finish=job.estimated_finish,
        integrations=job.integrations or [],
        metadata=job.metadata,
        method=job.method.to_json(),
        # A job created before a row existed ran with that row's default.
        ftserve={**extension_defaults(), **job.extensions},
    )


def _method_response() -> Json:
    def variant(kind: str, hp: str, **more: Json) -> Json:
        inner = {**more, "hyperparameters": ref(hp)}
        # response_format is echoed only when the request gave one.
        required = [k for k in inner if k != "response_format"]
        return closed({"type": const("type", kind).schema, kind: closed(inner, required=required)})

    return {
        "description": "The fine-tuning method and its hyperparameters, `auto` resolved or not "
        "(a reinforcement method's grader as `/fine_tuning/alpha/graders/validate` echoes it).",
        "oneOf": [
            variant("supervised", "SupervisedHyperparameters"),
            variant("dpo", "DpoHyperparameters"),
            variant(
                "reinforcement",
                "ReinforcementHyperparameters",
                grader=ref("Grader"),
                response_format={"type": "object"},
            ),
        ],
    }


def schemas() -> Json:
    """The jobs' ``components.schemas``."""
    return {
        "Metadata": metadata.SCHEMA,
        "SupervisedHyperparameters": object_schema(SUPERVISED_HYPERPARAMETERS, response=True),
        "DpoHyperparameters": object_schema(DPO_HYPERPARAMETERS, response=True),
        "SupervisedHyperparametersRequest": object_schema(SUPERVISED_HYPERPARAMETERS),
        "DpoHyperparametersRequest": object_schema(DPO_HYPERPARAMETERS),
        "ReinforcementHyperparameters": object_schema(REINFORCEMENT_HYPERPARAMETERS, response=True),
        "ReinforcementHyperparametersRequest": object_schema(REINFORCEMENT_HYPERPARAMETERS),
        "FineTuneMethod": _method_response(),
        "WandbIntegration": object_schema(INTEGRATION_FIELDS, response=True),
        "WandbIntegrationRequest": object_schema(INTEGRATION_FIELDS),
        "CreateFineTuningJobRequest": request_schema(),
        **components(JOB, JOB_LIST),
    }
