"""The batch endpoints' wire shapes, declared once: the create request's field table (checks and
OpenAPI), the ``batch`` object and its list, the limits of an input file, and the statuses."""

from __future__ import annotations

from typing import Any

from ..completions.sampling import check_metadata
from ..errors import InvalidValue
from ..store.batch_records import BatchRecord
from ..wire.fields import Field, body_schema, supported_values
from ..wire.queries import Paging
from ..wire.shapes import (
    INT,
    INT_OR_NULL,
    STR,
    STR_OR_NULL,
    TIMESTAMP,
    Prop,
    Shape,
    components,
    const,
    list_shape,
    or_null,
    ref,
)

Json = dict[str, Any]

# The endpoints a batch may target (the batch's ``endpoint`` and every line's ``url``).
CHAT, COMPLETIONS, RESPONSES = "/v1/chat/completions", "/v1/completions", "/v1/responses"
ENDPOINTS = (CHAT, COMPLETIONS, RESPONSES)
WINDOWS = ("24h",)
WINDOW_SECONDS = {"24h": 86_400}
# OpenAI's limits of one input file.
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
MIN_OUTPUT_EXPIRY, MAX_OUTPUT_EXPIRY = 3600, 2_592_000

STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
FINISHED = frozenset({"failed", "completed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})

DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 100
PAGING = Paging("batch", "Batches", default_limit=DEFAULT_LIST_LIMIT, max_limit=MAX_LIST_LIMIT)


def _only_created_at(param: str, value: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': the only supported anchor is 'created_at'.", param=param
    )


CREATE_FIELDS: tuple[Field, ...] = (
    Field(
        "input_file_id",
        "string",
        "A file uploaded with purpose `batch`: JSONL, one request a line "
        f"(`custom_id`, `method` POST, `url`, `body`), at most {MAX_REQUESTS:,} lines and "
        f"{MAX_FILE_BYTES >> 20} MB.",
        required=True,
        min_length=1,
    ),
    Field(
        "endpoint",
        "string",
        "Where every line goes; each line's `url` must equal it. `/v1/responses` is served "
        "when the server has that endpoint.",
        required=True,
        enum=ENDPOINTS,
        enum_error=supported_values(ENDPOINTS),
    ),
    Field(
        "completion_window",
        "string",
        "Lines not finished within it end the batch `expired`.",
        required=True,
        enum=WINDOWS,
        enum_error=supported_values(WINDOWS),
    ),
    Field(
        "metadata", "custom", "Up to 16 string pairs.", check=check_metadata, schema=ref("Metadata")
    ),
    Field(
        "output_expires_after",
        "object",
        "When the output and error files expire, counted from their creation.",
        fields=(
            Field(
                "anchor",
                "string",
                required=True,
                enum=("created_at",),
                enum_error=_only_created_at,
            ),
            Field(
                "seconds",
                "integer",
                minimum=MIN_OUTPUT_EXPIRY,
                maximum=MAX_OUTPUT_EXPIRY,
                required=True,
            ),
        ),
    ),
)

_ERROR = Shape(
    "BatchError",
    [
        Prop("code", STR_OR_NULL),
        Prop("message", STR_OR_NULL),
        Prop("param", STR_OR_NULL),
        Prop("line", INT_OR_NULL),
    ],
)
_ERRORS = Shape(
    "BatchErrors",
    [const("object", "list"), Prop("data", {"type": "array", "items": ref("BatchError")})],
)
_COUNTS = Shape(
    "BatchRequestCounts", [Prop("total", INT), Prop("completed", INT), Prop("failed", INT)]
)
BATCH = Shape(
    "Batch",
    [
        Prop("id", {"type": "string", "pattern": "^batch_"}),
        const("object", "batch"),
        Prop("endpoint", STR),
        Prop("model", STR_OR_NULL),
        Prop("errors", or_null(ref(_ERRORS.name))),
        Prop("input_file_id", STR),
        Prop("completion_window", STR),
        Prop("status", {"type": "string", "enum": list(STATUSES)}),
        Prop("output_file_id", STR_OR_NULL),
        Prop("error_file_id", STR_OR_NULL),
        Prop("created_at", TIMESTAMP),
        Prop("in_progress_at", INT_OR_NULL),
        Prop("expires_at", INT_OR_NULL),
        Prop("finalizing_at", INT_OR_NULL),
        Prop("completed_at", INT_OR_NULL),
        Prop("failed_at", INT_OR_NULL),
        Prop("expired_at", INT_OR_NULL),
        Prop("cancelling_at", INT_OR_NULL),
        Prop("cancelled_at", INT_OR_NULL),
        Prop("request_counts", ref(_COUNTS.name)),
        Prop("metadata", or_null(ref("Metadata"))),
    ],
)
BATCH_LIST = list_shape("ListBatchesResponse", BATCH.name, ids=True)


def batch_object(b: BatchRecord) -> Json:
    errors = None if b.errors is None else _ERRORS.make(data=[_ERROR.make(**e) for e in b.errors])
    return BATCH.make(
        id=b.id,
        endpoint=b.endpoint,
        model=b.model,
        errors=errors,
        input_file_id=b.input_file_id,
        completion_window=b.completion_window,
        status=b.status,
        output_file_id=b.output_file_id,
        error_file_id=b.error_file_id,
        created_at=b.created_at,
        in_progress_at=b.in_progress_at,
        expires_at=b.expires_at,
        finalizing_at=b.finalizing_at,
        completed_at=b.completed_at,
        failed_at=b.failed_at,
        expired_at=b.expired_at,
        cancelling_at=b.cancelling_at,
        cancelled_at=b.cancelled_at,
        request_counts=_COUNTS.make(total=b.total, completed=b.completed, failed=b.failed),
        metadata=b.metadata,
    )


def batch_error(
    code: str, message: str, *, param: str | None = None, line: int | None = None
) -> Json:
    """One entry of a failed batch's ``errors.data`` (stored as is)."""
    return {"code": code, "message": message, "param": param, "line": line}


def schemas() -> Json:
    """The batches' ``components.schemas``."""
    return {
        **components(_ERROR, _ERRORS, _COUNTS, BATCH, BATCH_LIST),
        "CreateBatchRequest": body_schema(
            CREATE_FIELDS,
            description="A batch of requests to one endpoint, read from an uploaded file.",
        ),
    }
