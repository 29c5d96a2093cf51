"""The files endpoints' wire shapes, declared once: the ``file`` object and its list, the
upload form (its purposes and expiry bounds, which :mod:`.service` checks against), and the
list's query parameters."""

from __future__ import annotations

from typing import Any

from ..store.records import FileRecord
from ..wire.queries import Paging
from ..wire.shapes import (
    BOOL,
    INT_OR_NULL,
    STR,
    STR_OR_NULL,
    TIMESTAMP,
    Prop,
    Shape,
    components,
    const,
    list_shape,
)

Json = dict[str, Any]

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
LIST_PURPOSES = (*UPLOAD_PURPOSES, "fine-tune-results", "assistants_output", "batch_output")
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000
EXPIRY_ANCHORS = ("created_at",)
ORDERS = ("asc", "desc")
DEFAULT_ORDER = "desc"
MAX_LIST_LIMIT = 10_000
PAGING = Paging("file", "Files", default_limit=MAX_LIST_LIMIT, max_limit=MAX_LIST_LIMIT)

FILE = Shape(
    "OpenAIFile",
    [
        const("object", "file"),
        Prop("id", {"type": "string", "pattern": "^file-"}),
        Prop("purpose", {"type": "string", "enum": list(LIST_PURPOSES)}),
        Prop("filename", STR),
        Prop("bytes", {"type": "integer", "minimum": 0}),
        Prop("created_at", TIMESTAMP),
        Prop("expires_at", INT_OR_NULL),
        Prop(
            "status",
            {
                "type": "string",
                "enum": ["processed"],
                "description": "Deprecated; always `processed`: uploads are checked before the "
                "response is sent.",
            },
        ),
        Prop("status_details", STR_OR_NULL),
    ],
)
FILE_LIST = list_shape("ListFilesResponse", FILE.name, ids=True)
FILE_DELETED = Shape(
    "DeleteFileResponse",
    [const("object", "file"), Prop("id", STR), Prop("deleted", {**BOOL, "const": True})],
)


def file_object(f: FileRecord) -> dict[str, Any]:
    return FILE.make(
        id=f.id,
        purpose=f.purpose,
        filename=f.filename,
        bytes=f.bytes,
        created_at=f.created_at,
        expires_at=f.expires_at,
        status=f.status,
        status_details=f.status_details,
    )


def file_deleted(f: FileRecord) -> dict[str, Any]:
    return FILE_DELETED.make(id=f.id, deleted=True)


def upload_form_schema() -> Json:
    return {
        "type": "object",
        "required": ["file", "purpose"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "The file. With purpose `fine-tune` it must be JSONL in "
                "the chat, prompt/completion, preference or reinforcement format (prompt "
                "`messages` ending with a user message; the row's other keys are the grader's "
                "item).",
            },
            "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
            "expires_after[anchor]": {"type": "string", "enum": list(EXPIRY_ANCHORS)},
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
    }


def schemas() -> Json:
    """The files' ``components.schemas``."""
    return {
        **components(FILE, FILE_LIST, FILE_DELETED),
        "CreateFileRequest": upload_form_schema(),
    }
