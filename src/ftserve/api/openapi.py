"""ftserve's own OpenAPI 3.1 document, served at ``GET /openapi.json`` (no auth).

Built here as Python data rather than kept as a JSON file, so the numbers in it (purposes, limits,
bounds) are the same constants the handlers check against. It describes what ftserve does, which
is OpenAI's fine-tuning contract plus a few documented differences (``paused``, the ``ftserve``
extension object, ``trainingType``, strict bounds on list limits, the error envelope everywhere).

Only the ``/v1`` prefix is written out; ``info.description`` says how the Azure prefixes map onto
it. Schemas shared by several operations live under ``components`` and are referenced by ``$ref``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from .. import __version__
from ..completions.chat_request import chat_request_schema
from ..completions.schemas import schemas as completion_schemas
from ..completions.text_request import text_request_schema
from ..config import Settings
from ..events import stream as event_stream
from ..files.service import LIST_PURPOSES, MAX_EXPIRY, MIN_EXPIRY, UPLOAD_PURPOSES
from ..jobs.schemas import MAX_SEED
from ..jobs.states import Status
from .context import MAX_JSON_BODY

Json = dict[str, Any]

_LIST_MAX = Settings().events_max_limit  # FTSERVE_EVENTS_MAX_LIMIT: jobs, events, checkpoints
_FILES_LIST_MAX = 10_000
_ID_MAX = 512  # params.query_str: longest accepted cursor

_DESCRIPTION = f"""\
A self-hosted fine-tuning service that speaks the OpenAI / Azure OpenAI v1 fine-tuning wire
protocol.

**Prefixes.** Every operation below is served under three prefixes with identical behaviour:
`/v1` (OpenAI, the one written out here), `/openai/v1` (Azure OpenAI v1) and `/openai` (Azure
classic; an `api-version` query parameter is accepted and ignored). Responses on the two Azure
prefixes also carry `apim-request-id`, equal to `x-request-id`. `GET /health` and
`GET /openapi.json` (this document) sit at the root and need no key.

**Auth.** `Authorization: Bearer KEY` or `api-key: KEY` (checked first when both are sent). A
missing or wrong key is a 401 with `WWW-Authenticate`.

**Errors.** Every error is OpenAI's envelope `{{"error": {{"message", "type", "param",
"code"}}}}`, with `param` and `code` null when they do not apply. A state conflict (cancelling a
finished job) is a 400, never a 409, because the SDKs retry 409. JSON bodies are limited to
{MAX_JSON_BODY} bytes (413 beyond).

**Lists** are `{{"object": "list", "data": [...], "has_more": bool}}`, newest first (files:
unless `order=asc`); `after` is the id of the last item of the previous page (exclusive), and an
`after` that names no item of the list is a 400. Files and checkpoints lists add
`first_id`/`last_id`. `limit` is checked: 1..{_FILES_LIST_MAX} for files; 1..{_LIST_MAX} for jobs,
events and checkpoints (that upper bound is the server setting `FTSERVE_EVENTS_MAX_LIMIT`, default
{_LIST_MAX}).

**Differences from OpenAI.** Job status adds `paused`; `error` is null unless the job failed;
`method.type` `reinforcement` is refused; job creation also accepts Azure's `trainingType`
(recorded in `ftserve.training_type`) and ftserve's own extension object
`"ftserve": {{"adapter": "lora" | "full", "lora_rank": int}}`, echoed on every job object.
Base models are the built-ins `ftserve-tiny` and `smollm2-135m-instruct` (when installed), GGUF
files, local Hugging Face model directories, models in the local Hugging Face cache and configured
aliases; `GET /models` lists them and the organization's fine-tuned models. A job created with an
alias echoes the alias as `model` (as OpenAI echoes the requested model); `ftserve.base_model` is
the model trained. `DELETE /models/{{model}}` of a base model is a 403 `model_not_deletable`.
"""


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _or_null(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: Json, *, required: tuple[str, ...] | None = None, **extra: Any) -> Json:
    """A closed object; ``required`` defaults to every property (response objects)."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _const(value: str, description: str | None = None) -> Json:
    schema: Json = {"type": "string", "const": value}
    if description:
        schema["description"] = description
    return schema


_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIMESTAMP = {"type": "integer", "description": "Unix time, seconds."}
_AUTO = _const("auto")


def _whitespace_class() -> str:
    """Every character Python's ``\\s`` matches, spelled out (ECMA-262's ``\\s`` differs)."""
    chars = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    ranges: list[tuple[int, int]] = []
    for c in chars:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# -- shared schemas -----------------------------------------------------------------------------


def _hyperparameter_values(*, dpo: bool, request: bool) -> Json:
    """Each value is ``"auto"`` or a number in range; a request may also send null (= auto)."""

    def choice(schema: Json, description: str) -> Json:
        options = [_AUTO, schema] + ([{"type": "null"}] if request else [])
        return {"anyOf": options, "description": description}

    props: Json = {
        "batch_size": choice(
            {"type": "integer", "minimum": 1, "maximum": 256}, "Examples per batch."
        ),
        "learning_rate_multiplier": choice(
            {"type": "number", "exclusiveMinimum": 0}, "Scale on the base learning rate."
        ),
        "n_epochs": choice(
            {"type": "integer", "minimum": 1, "maximum": 50}, "Passes over the training file."
        ),
    }
    if dpo:
        props["beta"] = choice(
            {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
            "DPO: weight of the penalty between the policy and the reference model.",
        )
    return _obj(props, required=() if request else None)


def _method_response() -> Json:
    def variant(kind: str, hp: str) -> Json:
        return _obj(
            {
                "type": _const(kind),
                kind: _obj({"hyperparameters": _ref(hp)}),
            }
        )

    return {
        "description": "The fine-tuning method and its hyperparameters, `auto` resolved or not.",
        "oneOf": [
            variant("supervised", "SupervisedHyperparameters"),
            variant("dpo", "DpoHyperparameters"),
        ],
    }


def _method_request() -> Json:
    def variant(kind: str, hp: str) -> Json:
        other = [k for k in ("supervised", "dpo", "reinforcement") if k != kind]
        inner = _or_null(_obj({"hyperparameters": _or_null(_ref(hp))}, required=()))
        return _obj(
            {"type": _const(kind), kind: inner, **{k: {"type": "null"} for k in other}},
            required=("type",),
        )

    return {
        "description": (
            "The method: `supervised` (chat or prompt/completion examples) or `dpo` (preference "
            "examples). `reinforcement` is refused with 400 `unsupported_value`. Hyperparameters "
            "go either here or in the deprecated top-level `hyperparameters`, not both."
        ),
        "anyOf": [
            variant("supervised", "SupervisedHyperparametersRequest"),
            variant("dpo", "DpoHyperparametersRequest"),
            {"type": "null"},
        ],
    }


def _integration(*, request: bool) -> Json:
    wandb = _obj(
        {
            "project": {"type": "string", "minLength": 1},
            "name": {"type": ["string", "null"]},
            "entity": {"type": ["string", "null"]},
            "tags": _or_null({"type": "array", "items": {"type": "string", "maxLength": 64}}),
        },
        required=("project",) if request else None,
    )
    return _obj({"type": _const("wandb"), "wandb": wandb})


def _job() -> Json:
    return _obj(
        {
            "object": _const("fine_tuning.job"),
            "id": {"type": "string", "pattern": "^ftjob-"},
            "model": {
                "type": "string",
                "description": "The base model as requested (an alias stays the alias; "
                "`ftserve.base_model` names the model trained).",
            },
            "created_at": _TIMESTAMP,
            "finished_at": {"type": ["integer", "null"]},
            "fine_tuned_model": {"type": ["string", "null"]},
            "organization_id": {"type": "string", "pattern": "^org-"},
            "result_files": {"type": "array", "items": _STR},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "validation_file": {"type": ["string", "null"]},
            "training_file": _STR,
            "hyperparameters": {
                **_ref("SupervisedHyperparameters"),
                "description": "Deprecated mirror of the method's common hyperparameters.",
            },
            "trained_tokens": {"type": ["integer", "null"]},
            "error": _or_null(
                _obj(
                    {
                        "code": _STR,
                        "message": _STR,
                        "param": {"type": ["string", "null"]},
                    }
                )
            ),
            "user_provided_suffix": {"type": ["string", "null"]},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
            "estimated_finish": {"type": ["integer", "null"]},
            "integrations": {"type": "array", "items": _ref("WandbIntegration")},
            "metadata": _or_null(_ref("Metadata")),
            "method": _ref("FineTuneMethod"),
            "ftserve": _obj(
                {
                    "adapter": {"type": "string", "enum": ["lora", "full"]},
                    "lora_rank": {"type": "integer", "minimum": 1, "maximum": 1024},
                    "training_type": {"type": "string", "maxLength": 64},
                    "base_model": {
                        "type": "string",
                        "description": "The model actually trained (differs from `model` when "
                        "`model` is an alias).",
                    },
                    "training_format": {
                        "type": "string",
                        "enum": ["chat", "prompt_completion", "preference"],
                        "description": "The training file's format, once validated.",
                    },
                    "model_path": {
                        "type": "string",
                        "description": "Where the final model or adapter lies (succeeded jobs).",
                    },
                },
                required=("adapter", "lora_rank"),
                description="ftserve's extension; `training_type` is the request's `trainingType`.",
            ),
        },
        description="A fine-tuning job (`status` adds `paused` to OpenAI's values).",
    )


def _create_job_request() -> Json:
    file_id = {"type": "string", "minLength": 1, "maxLength": 256}
    return _obj(
        {
            "model": {
                "type": "string",
                "minLength": 1,
                "maxLength": 4096,
                "description": "A base model from `GET /models`, an alias, a local Hugging Face "
                "model directory or a model id in the local Hugging Face cache.",
                "examples": ["ftserve-tiny"],
            },
            "training_file": {**file_id, "description": "A file uploaded with purpose fine-tune."},
            "validation_file": {**file_id, "type": ["string", "null"]},
            "hyperparameters": {
                **_or_null(_ref("DpoHyperparametersRequest")),
                "description": "Deprecated: use `method`. `beta` only with `method.type` `dpo`.",
            },
            "method": _method_request(),
            "suffix": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 64,
                "pattern": f"^[^:{_whitespace_class()}]+$",
                "description": "Part of the fine-tuned model's name: no `:` and no whitespace.",
            },
            "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SEED},
            "metadata": _or_null(_ref("Metadata")),
            "integrations": _or_null(
                {
                    "type": "array",
                    "maxItems": 5,
                    "items": _ref("WandbIntegrationRequest"),
                }
            ),
            "ftserve": _or_null(
                _obj(
                    {
                        "adapter": {"type": ["string", "null"], "enum": ["lora", "full", None]},
                        "lora_rank": {"type": ["integer", "null"], "minimum": 1, "maximum": 1024},
                    },
                    required=(),
                    description="ftserve's extension (default: adapter `lora`, lora_rank 8).",
                )
            ),
            "trainingType": {
                "type": ["string", "null"],
                "maxLength": 64,
                "description": "Azure's training tier; recorded, has no effect here.",
            },
        },
        required=("model", "training_file"),
        description="Unknown keys are refused (400 `unknown_parameter`).",
    )


def _schemas() -> Json:
    return {
        **completion_schemas(),
        "Error": _obj(
            {
                "message": _STR,
                "type": {"type": "string", "enum": ["invalid_request_error", "server_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            }
        ),
        "ErrorResponse": _obj({"error": _ref("Error")}),
        "OpenAIFile": _obj(
            {
                "object": _const("file"),
                "id": {"type": "string", "pattern": "^file-"},
                "purpose": {"type": "string", "enum": list(LIST_PURPOSES)},
                "filename": _STR,
                "bytes": {"type": "integer", "minimum": 0},
                "created_at": _TIMESTAMP,
                "expires_at": {"type": ["integer", "null"]},
                "status": {
                    "type": "string",
                    "enum": ["processed"],
                    "description": "Deprecated; always `processed`: uploads are checked before the "
                    "response is sent.",
                },
                "status_details": {"type": ["string", "null"]},
            }
        ),
        "ListFilesResponse": _obj(
            {
                "object": _const("list"),
                "data": {"type": "array", "items": _ref("OpenAIFile")},
                "has_more": {"type": "boolean"},
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"]},
            }
        ),
        "DeleteFileResponse": _obj(
            {
                "object": _const("file"),
                "id": _STR,
                "deleted": {"type": "boolean", "const": True},
            }
        ),
        "CreateFileRequest": {
            "type": "object",
            "required": ["file", "purpose"],
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "The file. With purpose `fine-tune` it must be JSONL in "
                    "the chat, prompt/completion or preference format.",
                },
                "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
                "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                "expires_after[seconds]": {
                    "type": "integer",
                    "minimum": MIN_EXPIRY,
                    "maximum": MAX_EXPIRY,
                },
            },
            "dependentRequired": {
                "expires_after[anchor]": ["expires_after[seconds]"],
                "expires_after[seconds]": ["expires_after[anchor]"],
            },
            "description": "Form fields as OpenAI's SDKs send them; `expires_after` is the two "
            "bracketed fields, both or neither.",
        },
        "Metadata": {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"maxLength": 64},
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
        "SupervisedHyperparameters": _hyperparameter_values(dpo=False, request=False),
        "DpoHyperparameters": _hyperparameter_values(dpo=True, request=False),
        "SupervisedHyperparametersRequest": _hyperparameter_values(dpo=False, request=True),
        "DpoHyperparametersRequest": _hyperparameter_values(dpo=True, request=True),
        "FineTuneMethod": _method_response(),
        "WandbIntegration": _integration(request=False),
        "WandbIntegrationRequest": _integration(request=True),
        "CreateFineTuningJobRequest": _create_job_request(),
        "FineTuningJob": _job(),
        "ListPaginatedFineTuningJobsResponse": _obj(
            {
                "object": _const("list"),
                "data": {"type": "array", "items": _ref("FineTuningJob")},
                "has_more": {"type": "boolean"},
            }
        ),
        "FineTuningJobEvent": _obj(
            {
                "object": _const("fine_tuning.job.event"),
                "id": {"type": "string", "pattern": "^ftevent-"},
                "created_at": _TIMESTAMP,
                "level": {"type": "string", "enum": ["info", "warn", "error"]},
                "message": _STR,
                "data": {"type": ["object", "null"]},
                "type": {"type": "string", "enum": ["message", "metrics"]},
            }
        ),
        "ListFineTuningJobEventsResponse": _obj(
            {
                "object": _const("list"),
                "data": {"type": "array", "items": _ref("FineTuningJobEvent")},
                "has_more": {"type": "boolean"},
            }
        ),
        "FineTuningJobCheckpoint": _obj(
            {
                "object": _const("fine_tuning.job.checkpoint"),
                "id": {"type": "string", "pattern": "^ftckpt_"},
                "created_at": _TIMESTAMP,
                "fine_tuned_model_checkpoint": _STR,
                "fine_tuning_job_id": _STR,
                "metrics": _obj(
                    {
                        "step": {"type": "number"},
                        "train_loss": {"type": "number"},
                        "train_mean_token_accuracy": {"type": "number"},
                        "valid_loss": {"type": "number"},
                        "valid_mean_token_accuracy": {"type": "number"},
                        "full_valid_loss": {"type": "number"},
                        "full_valid_mean_token_accuracy": {"type": "number"},
                    },
                    required=(),
                ),
                "step_number": _INT,
            }
        ),
        "ListFineTuningJobCheckpointsResponse": _obj(
            {
                "object": _const("list"),
                "data": {"type": "array", "items": _ref("FineTuningJobCheckpoint")},
                "has_more": {"type": "boolean"},
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"]},
            }
        ),
        "Model": _obj(
            {
                "id": _STR,
                "object": _const("model"),
                "created": {
                    "type": "integer",
                    "description": "Unix time, seconds. Fine-tuned models: the job's "
                    "`finished_at`; checkpoint models: when the checkpoint was saved.",
                },
                "owned_by": {
                    "type": "string",
                    "description": "`ftserve` (built-in), `local`, `alias`, the Hugging Face "
                    "org of a cached model, or the organization of a fine-tuned model.",
                },
            }
        ),
        "ListModelsResponse": _obj(
            {
                "object": _const("list"),
                "data": {"type": "array", "items": _ref("Model")},
            },
            description="Base models first, then the organization's fine-tuned models, each "
            "followed by its checkpoint models (`…:ckpt-step-N`). No paging.",
        ),
        "ModelDeleted": _obj(
            {
                "id": _STR,
                "object": _const("model"),
                "deleted": {"type": "boolean"},
            }
        ),
    }


# -- responses and parameters -------------------------------------------------------------------


def _request_id_header() -> Json:
    return {"x-request-id": {"$ref": "#/components/headers/RequestId"}}


def _error_response(description: str, **headers: Json) -> Json:
    return {
        "description": description,
        "headers": {**_request_id_header(), **headers},
        "content": {"application/json": {"schema": _ref("ErrorResponse")}},
    }


def _responses() -> Json:
    return {
        "BadRequest": _error_response(
            "Invalid request: a parameter or body field is missing, of the wrong type, out of "
            "range or refers to nothing (`param` names it), or the job's state forbids the action."
        ),
        "Unauthorized": _error_response(
            "No API key, or a wrong one (`code` `invalid_api_key`).",
            **{
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "^Bearer realm="},
                }
            },
        ),
        "NotFound": _error_response("No such object for this API key's organization."),
        "Forbidden": _error_response(
            "The object exists but cannot be changed this way (`DELETE /models/{model}` of a "
            "base model: `code` `model_not_deletable`)."
        ),
        "MethodNotAllowed": _error_response(
            "A path parameter containing `/` (sent as %2F) is decoded before routing, so the URL "
            "can name another route that does not allow this method.",
            Allow={"required": True, "schema": _STR},
        ),
        "PayloadTooLarge": _error_response(
            f"The body is too large (JSON bodies: {MAX_JSON_BODY} bytes; uploads: the server's "
            "FTSERVE_MAX_UPLOAD_BYTES). `code` is `request_too_large`."
        ),
    }


def _parameters() -> Json:
    def cursor(what: str) -> Json:
        return {
            "name": "after",
            "in": "query",
            "required": False,
            "description": f"The id of the last {what} of the previous page; a value that names "
            f"no {what} of this list is a 400.",
            "schema": {"type": "string", "minLength": 1, "maxLength": _ID_MAX},
        }

    def limit(default: int, maximum: int) -> Json:
        return {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        }

    def path(name: str, description: str) -> Json:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string", "minLength": 1},
        }

    return {
        "JobId": path("fine_tuning_job_id", "The job's id (`ftjob-...`)."),
        "FileId": path("file_id", "The file's id (`file-...`)."),
        "EventsAfter": cursor("event"),
        "JobsAfter": cursor("job"),
        "CheckpointsAfter": cursor("checkpoint"),
        "FilesAfter": cursor("file"),
        "EventsLimit": limit(20, _LIST_MAX),
        "JobsLimit": limit(20, _LIST_MAX),
        "CheckpointsLimit": limit(10, _LIST_MAX),
        "FilesLimit": limit(_FILES_LIST_MAX, _FILES_LIST_MAX),
    }


def _param(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


def _ok(schema: str, description: str) -> Json:
    return {
        "description": description,
        "headers": _request_id_header(),
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _errors(*codes: int) -> Json:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "PayloadTooLarge",
    }
    return {str(c): {"$ref": f"#/components/responses/{names[c]}"} for c in codes}


def _op(op_id: str, tag: str, summary: str, responses: Json, **extra: Any) -> Json:
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": responses,
    }


def _empty_body(action: str) -> Json:
    return {
        "required": False,
        "description": f"Optional; when sent it must be a JSON object, and is ignored. {action}",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _completion_paths() -> Json:
    """``/chat/completions`` and ``/completions``; request schemas come from the field tables in
    ``ftserve.completions``, response schemas from ``ftserve.completions.schemas``."""

    def op(op_id: str, summary: str, request: Json, response: str, chunk: str) -> Json:
        ok = {
            "description": "The completion; with `stream: true` data-only server-sent events, "
            f"each `data:` a `{chunk}` JSON object, the last `data: [DONE]`. An error after the "
            'stream started comes in band as `data: {"error": {...}}`, then `data: [DONE]`.',
            "headers": _request_id_header(),
            "content": {
                "application/json": {"schema": _ref(response)},
                # One server-sent event: ``data`` holds a chunk's JSON (or ``[DONE]``).
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                        "required": ["data"],
                    }
                },
            },
        }
        return _op(
            op_id,
            "Completions",
            summary,
            {
                "200": ok,
                **_errors(400, 401, 404, 413),
                "500": _error_response("The inference process failed or stopped (retryable)."),
                "503": _error_response(
                    "Inference is turned off on this server (`code` `inference_disabled`)."
                ),
            },
            requestBody={"required": True, "content": {"application/json": {"schema": request}}},
        )

    return {
        "/chat/completions": {
            "post": op(
                "createChatCompletion",
                "Generate the next assistant message. Also served as Azure classic's "
                "`/openai/deployments/{deployment}/chat/completions` (the deployment names the "
                "model; body `model` optional; unknown deployment: 404 `DeploymentNotFound`).",
                chat_request_schema(),
                "CreateChatCompletionResponse",
                "CreateChatCompletionStreamResponse",
            )
        },
        "/completions": {
            "post": op(
                "createCompletion",
                "Continue a text prompt (legacy). Also served as Azure classic's "
                "`/openai/deployments/{deployment}/completions`.",
                text_request_schema(),
                "CreateCompletionResponse",
                "CreateCompletionResponse",
            )
        },
    }


def _stream_params() -> list[Json]:
    """The events stream's parameters, from its declaration in ``ftserve.events.stream``."""
    refused = " and ".join(f"`{name}`" for name in event_stream.LIST_ONLY)
    return [
        {
            "name": event_stream.STREAM,
            "in": "query",
            "required": False,
            "description": "`true`: the job's events as server-sent events (`text/event-stream`)"
            f", oldest first, each once, the stream closed after the job's terminal event (a "
            f"paused job's stays open); {refused} are then refused (400 naming them). Other "
            "values than `true` and `false` are a 400.",
            "schema": {
                "type": "string",
                "enum": list(event_stream.STREAM_VALUES),
                "default": "false",
            },
        },
        {
            "name": event_stream.LAST_EVENT_ID,
            "in": "header",
            "required": False,
            "description": "With `stream=true`: resume after this event (the `id:` of the last "
            "message received). A value that names no event of this job is a 400 naming "
            f"`{event_stream.LAST_EVENT_ID}`; an empty one means none. Ignored without "
            "`stream=true`.",
            "schema": {"type": "string", "maxLength": _ID_MAX},
        },
    ]


def _events_ok() -> Json:
    ok = _ok("ListFineTuningJobEventsResponse", "A page of events.")
    ok["description"] = (
        "A page of events; with `stream=true`, a stream of server-sent events: for each event "
        "`id: <event id>` and `data: <the event, exactly as a page holds it>`, then a blank "
        f"line; a `: ping` comment every {Settings().events_heartbeat:g} s while nothing happens "
        "(`FTSERVE_EVENTS_HEARTBEAT`). Errors come before the stream starts, as JSON."
    )
    ok["content"] = {
        **ok["content"],
        # One server-sent event: ``id`` names the event, ``data`` holds its JSON.
        "text/event-stream": {
            "schema": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "data": {"type": "string"}},
                "required": ["id", "data"],
            }
        },
    }
    return ok


def _paths() -> Json:
    job = [_param("JobId")]
    tune = "Fine-tuning"
    state_change = _errors(400, 401, 404, 413)
    return {
        **_completion_paths(),
        "/files": {
            "post": _op(
                "createFile",
                "Files",
                "Upload a file (streamed to disk; fine-tune files are checked as JSONL).",
                {"200": _ok("OpenAIFile", "The stored file."), **_errors(400, 401, 413)},
                requestBody={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _ref("CreateFileRequest")}},
                },
            ),
            "get": _op(
                "listFiles",
                "Files",
                "List files, newest first unless `order=asc`.",
                {"200": _ok("ListFilesResponse", "A page of files."), **_errors(400, 401)},
                parameters=[
                    {
                        "name": "purpose",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(LIST_PURPOSES)},
                    },
                    _param("FilesLimit"),
                    {
                        "name": "order",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
                    },
                    _param("FilesAfter"),
                ],
            ),
        },
        "/files/{file_id}": {
            "parameters": [_param("FileId")],
            "get": _op(
                "retrieveFile",
                "Files",
                "Describe a file.",
                {"200": _ok("OpenAIFile", "The file."), **_errors(401, 404)},
            ),
            "delete": _op(
                "deleteFile",
                "Files",
                "Delete a file and its content.",
                {"200": _ok("DeleteFileResponse", "The file is gone."), **_errors(401, 404, 405)},
            ),
        },
        "/files/{file_id}/content": {
            "parameters": [_param("FileId")],
            "get": _op(
                "downloadFile",
                "Files",
                "The file's bytes, as uploaded.",
                {
                    "200": {
                        "description": "The content, as an attachment named after the file.",
                        "headers": {
                            **_request_id_header(),
                            "Content-Disposition": {
                                "required": True,
                                "schema": {"type": "string", "pattern": "^attachment;"},
                            },
                        },
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"},
                            }
                        },
                    },
                    **_errors(401, 404),
                },
            ),
        },
        "/fine_tuning/jobs": {
            "post": _op(
                "createFineTuningJob",
                tune,
                "Create a job; it starts in `validating_files` while its files are checked.",
                {"200": _ok("FineTuningJob", "The new job."), **_errors(400, 401, 413)},
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateFineTuningJobRequest"),
                        }
                    },
                },
            ),
            "get": _op(
                "listPaginatedFineTuningJobs",
                tune,
                "List jobs, newest first.",
                {
                    "200": _ok("ListPaginatedFineTuningJobsResponse", "A page of jobs."),
                    **_errors(400, 401),
                },
                parameters=[
                    _param("JobsAfter"),
                    _param("JobsLimit"),
                    {
                        "name": "metadata",
                        "in": "query",
                        "required": False,
                        "style": "deepObject",
                        "explode": True,
                        "description": "Only jobs whose metadata has every `metadata[key]=value` "
                        "pair given; `metadata=null` (or empty) means no filter.",
                        "schema": {"type": "object", "additionalProperties": _STR},
                    },
                ],
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}": {
            "parameters": job,
            "get": _op(
                "retrieveFineTuningJob",
                tune,
                "Describe a job.",
                {"200": _ok("FineTuningJob", "The job."), **_errors(401, 404, 405)},
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/cancel": {
            "parameters": job,
            "post": _op(
                "cancelFineTuningJob",
                tune,
                "Cancel a job that is validating_files, queued, running or paused.",
                {"200": _ok("FineTuningJob", "The job, `cancelled`."), **state_change},
                requestBody=_empty_body("A finished job is a 400 `invalid_job_state`."),
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/pause": {
            "parameters": job,
            "post": _op(
                "pauseFineTuningJob",
                tune,
                "Pause a queued or running job (a running one checkpoints and stops).",
                {"200": _ok("FineTuningJob", "The job, `paused`."), **state_change},
                requestBody=_empty_body("Any other state is a 400 `invalid_job_state`."),
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/resume": {
            "parameters": job,
            "post": _op(
                "resumeFineTuningJob",
                tune,
                "Resume a paused job (it goes back to `queued`).",
                {"200": _ok("FineTuningJob", "The job, `queued`."), **state_change},
                requestBody=_empty_body("Any other state is a 400 `invalid_job_state`."),
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/events": {
            "parameters": job,
            "get": _op(
                "listFineTuningEvents",
                tune,
                "A job's events, newest first; with `stream=true`, live, oldest first.",
                {"200": _events_ok(), **_errors(400, 401, 404)},
                parameters=[_param("EventsAfter"), _param("EventsLimit"), *_stream_params()],
            ),
        },
        "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": {
            "parameters": job,
            "get": _op(
                "listFineTuningJobCheckpoints",
                tune,
                "A job's checkpoints, newest first.",
                {
                    "200": _ok("ListFineTuningJobCheckpointsResponse", "A page of checkpoints."),
                    **_errors(400, 401, 404),
                },
                parameters=[_param("CheckpointsAfter"), _param("CheckpointsLimit")],
            ),
        },
        "/models": {
            "get": _op(
                "listModels",
                "Models",
                "Base models available here, then this organization's fine-tuned models and "
                "their checkpoint models.",
                {
                    "200": _ok("ListModelsResponse", "Every model this key can use."),
                    **_errors(401),
                },
            ),
        },
        "/models/{model}": {
            "parameters": [
                {
                    "name": "model",
                    "in": "path",
                    "required": True,
                    "description": "A model id from `GET /models`; may contain `/` (org/name) "
                    "and `:` (raw or as %3A).",
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
            "get": _op(
                "retrieveModel",
                "Models",
                "Describe one model. Another organization's, a deleted one, or one whose job has "
                "not succeeded is a 404 `model_not_found`.",
                {"200": _ok("Model", "The model."), **_errors(401, 404)},
            ),
            "delete": _op(
                "deleteModel",
                "Models",
                "Delete a fine-tuned model (with its checkpoint models) or one checkpoint model: "
                "its weights are removed and it is no longer listed or served; the job keeps "
                "naming it. A base model is a 403; an unknown, deleted or foreign one a 404.",
                {"200": _ok("ModelDeleted", "The model is deleted."), **_errors(401, 403, 404)},
            ),
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document; built once. Callers must not mutate it (it is shared)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ftserve",
            "version": __version__,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/v1", "description": "OpenAI form (also /openai/v1 and /openai)."}],
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "tags": [
            {"name": "Files", "description": "Training and validation data."},
            {"name": "Fine-tuning", "description": "Jobs, their events and checkpoints."},
            {
                "name": "Models",
                "description": "Base models available here, and fine-tuned models.",
            },
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer KEY` (OpenAI).",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "api-key",
                    "description": "`api-key: KEY` (Azure).",
                },
            },
            "headers": {
                "RequestId": {
                    "description": "This request's id, also in the server log.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^req_[0-9a-f]{32}$"},
                },
            },
            "parameters": _parameters(),
            "responses": _responses(),
            "schemas": _schemas(),
        },
    }
