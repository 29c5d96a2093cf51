"""ftserve's own OpenAPI 3.1 document, served at ``GET /openapi.json`` (no auth).

An assembler: every schema, parameter and operation comes from its domain's declarations
(``<domain>/schemas.py`` and ``<domain>/openapi.py``), the same ones the handlers check requests
against and build responses with, so the document cannot say one bound and the server check
another. It is built for one server's :class:`~ftserve.config.Settings` (the list bound
``FTSERVE_EVENTS_MAX_LIMIT``, the events heartbeat), and the app caches it per app.

It describes what ftserve does, which is OpenAI's fine-tuning contract plus a few documented
differences (``paused``, the ``ftserve`` extension object, ``trainingType``, strict bounds on list
limits, the error envelope everywhere). Only the ``/v1`` prefix is written out;
``info.description`` says how the Azure prefixes map onto it. Schemas shared by several
operations live under ``components`` and are referenced by ``$ref``.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..batches import openapi as batches
from ..batches.schemas import schemas as batch_schemas
from ..checkpoints import openapi as checkpoints
from ..checkpoints.schemas import schemas as checkpoint_schemas
from ..completions import openapi as completions
from ..completions.schemas import schemas as completion_schemas
from ..config import Settings
from ..events import openapi as events
from ..events.schemas import schemas as event_schemas
from ..files import openapi as files
from ..files.schemas import MAX_LIST_LIMIT as FILES_MAX_LIMIT
from ..files.schemas import schemas as file_schemas
from ..graders import openapi as graders
from ..graders.schemas import schemas as grader_schemas
from ..jobs import openapi as jobs
from ..jobs.objects import schemas as job_schemas
from ..models import openapi as models
from ..models.schemas import schemas as model_schemas
from ..responses import openapi as responses
from ..responses.schemas import schemas as response_schemas
from ..wire.operations import error_response
from ..wire.shapes import ERROR, ERROR_RESPONSE, STR, components
from .context import MAX_JSON_BODY

Json = dict[str, Any]


def _description(settings: Settings) -> str:
    list_max = settings.events_max_limit
    default_max = Settings().events_max_limit
    return f"""\
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
`first_id`/`last_id`. `limit` is checked: 1..{FILES_MAX_LIMIT} for files; 1..{list_max} for jobs,
events and checkpoints (that upper bound is the server setting `FTSERVE_EVENTS_MAX_LIMIT`, default
{default_max}).

**Differences from OpenAI.** Job status adds `paused`; `error` is null unless the job failed;
`method.type` `reinforcement` is refused; job creation also accepts Azure's `trainingType`
(recorded in `ftserve.training_type`) and ftserve's own extension object
`"ftserve": {{"adapter": "lora" | "full", "lora_rank": int, "packing": bool, …}}` (the memory and
packing options; see `CreateFineTuningJobRequest`), echoed, resolved, on every job object.
Base models are the built-ins `ftserve-tiny` and `smollm2-135m-instruct` (when installed), GGUF
files, local Hugging Face model directories, models in the local Hugging Face cache and configured
aliases; `GET /models` lists them and the organization's fine-tuned models. A job created with an
alias echoes the alias as `model` (as OpenAI echoes the requested model); `ftserve.base_model` is
the model trained. `DELETE /models/{{model}}` of a base model is a 403 `model_not_deletable`.

**Responses** (`/responses`) are chat completions underneath: the same models (base,
fine-tuned, checkpoint), tools parsed the same way, `text.format` served as the chat endpoint's
`response_format`. Stored responses (`store`, default true) are kept per organization for the
server's `FTSERVE_RESPONSES_TTL_DAYS` (default 30); another organization's id is a 404 like a
missing one. Request fields ftserve cannot honour (built-in tools, reasoning, `background`,
stored prompts and conversations, image and file inputs) are a 400 naming the param; fields that
only label or route a request (`include`, `truncation`, `prompt_cache_key`, …) are accepted.
"""


def _responses() -> Json:
    return {
        "BadRequest": error_response(
            "Invalid request: a parameter or body field is missing, of the wrong type, out of "
            "range or refers to nothing (`param` names it), or the job's state forbids the action."
        ),
        "Unauthorized": error_response(
            "No API key, or a wrong one (`code` `invalid_api_key`).",
            **{
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "^Bearer realm="},
                }
            },
        ),
        "NotFound": error_response("No such object for this API key's organization."),
        "Forbidden": error_response(
            "The object exists but cannot be changed this way (`DELETE /models/{model}` of a "
            "base model: `code` `model_not_deletable`)."
        ),
        "MethodNotAllowed": error_response(
            "A path parameter containing `/` (sent as %2F) is decoded before routing, so the URL "
            "can name another route that does not allow this method.",
            Allow={"required": True, "schema": STR},
        ),
        "PayloadTooLarge": error_response(
            f"The body is too large (JSON bodies: {MAX_JSON_BODY} bytes; uploads: the server's "
            "FTSERVE_MAX_UPLOAD_BYTES). `code` is `request_too_large`."
        ),
    }


def _security_schemes() -> Json:
    return {
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
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for a server running with ``settings``; a new one on each call (the app
    builds it once and keeps it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ftserve",
            "version": __version__,
            "description": _description(settings),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/v1", "description": "OpenAI form (also /openai/v1 and /openai)."}],
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "tags": [
            {"name": "Files", "description": "Training and validation data."},
            {"name": "Fine-tuning", "description": "Jobs, their events and checkpoints."},
            {"name": "Responses", "description": "Model responses, stored per organization."},
            {
                "name": "Models",
                "description": "Base models available here, and fine-tuned models.",
            },
        ],
        "paths": {
            **completions.paths(settings),
            **responses.paths(settings),
            **files.paths(settings),
            **jobs.paths(settings),
            **events.paths(settings),
            **checkpoints.paths(settings),
            **models.paths(settings),
            **batches.paths(settings),
            **graders.paths(settings),
        },
        "components": {
            "securitySchemes": _security_schemes(),
            "headers": {
                "RequestId": {
                    "description": "This request's id, also in the server log.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^req_[0-9a-f]{32}$"},
                },
            },
            "parameters": {
                **jobs.parameters(settings),
                **files.parameters(settings),
                **batches.parameters(settings),
                **events.parameters(settings),
                **checkpoints.parameters(settings),
                **responses.parameters(settings),
            },
            "responses": _responses(),
            "schemas": {
                **completion_schemas(),
                **components(ERROR, ERROR_RESPONSE),
                **file_schemas(),
                **job_schemas(),
                **event_schemas(),
                **checkpoint_schemas(),
                **model_schemas(),
                **response_schemas(),
                **batch_schemas(),
                **grader_schemas(),
            },
        },
    }
