"""The files endpoints in the OpenAPI document, from the declarations in :mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import errors, ok, op, param, path_param, request_id_header
from ..wire.shapes import ref
from .schemas import DEFAULT_ORDER, FILE, FILE_DELETED, FILE_LIST, LIST_PURPOSES, ORDERS, PAGING

Json = dict[str, Any]
_TAG = "Files"


def parameters(settings: Settings) -> Json:
    return {
        "FileId": path_param("file_id", "The file's id (`file-...`)."),
        **PAGING.parameters(settings),
    }


def paths(settings: Settings) -> Json:
    file_id = [param("FileId")]
    return {
        "/files": {
            "post": op(
                "createFile",
                _TAG,
                "Upload a file (streamed to disk; fine-tune files are checked as JSONL).",
                {"200": ok(FILE.name, "The stored file."), **errors(400, 401, 413)},
                requestBody={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": ref("CreateFileRequest")}},
                },
            ),
            "get": op(
                "listFiles",
                _TAG,
                "List files, newest first unless `order=asc`.",
                {"200": ok(FILE_LIST.name, "A page of files."), **errors(400, 401)},
                parameters=[
                    {
                        "name": "purpose",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(LIST_PURPOSES)},
                    },
                    param("FilesLimit"),
                    {
                        "name": "order",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "enum": list(ORDERS),
                            "default": DEFAULT_ORDER,
                        },
                    },
                    param("FilesAfter"),
                ],
            ),
        },
        "/files/{file_id}": {
            "parameters": file_id,
            "get": op(
                "retrieveFile",
                _TAG,
                "Describe a file.",
                {"200": ok(FILE.name, "The file."), **errors(401, 404)},
            ),
            "delete": op(
                "deleteFile",
                _TAG,
                "Delete a file and its content.",
                {"200": ok(FILE_DELETED.name, "The file is gone."), **errors(401, 404, 405)},
            ),
        },
        "/files/{file_id}/content": {
            "parameters": file_id,
            "get": op(
                "downloadFile",
                _TAG,
                "The file's bytes, as uploaded.",
                {
                    "200": {
                        "description": "The content, as an attachment named after the file.",
                        "headers": {
                            **request_id_header(),
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
                    **errors(401, 404),
                },
            ),
        },
    }
