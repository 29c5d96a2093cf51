"""The OpenAPI vocabulary the per-domain ``openapi`` modules write their operations in: an
operation, its success and error responses, references to shared components."""

from __future__ import annotations

from typing import Any

from .shapes import ref

Json = dict[str, Any]

ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
}


def request_id_header() -> Json:
    return {"x-request-id": {"$ref": "#/components/headers/RequestId"}}


def error_response(description: str, **headers: Json) -> Json:
    return {
        "description": description,
        "headers": {**request_id_header(), **headers},
        "content": {"application/json": {"schema": ref("ErrorResponse")}},
    }


def param(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


def ok(schema: str, description: str) -> Json:
    return {
        "description": description,
        "headers": request_id_header(),
        "content": {"application/json": {"schema": ref(schema)}},
    }


def errors(*codes: int) -> Json:
    return {str(c): {"$ref": f"#/components/responses/{ERROR_RESPONSES[c]}"} for c in codes}


def op(op_id: str, tag: str, summary: str, responses: Json, **extra: Any) -> Json:
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": responses,
    }


def json_body(schema: Json) -> Json:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def empty_body(action: str) -> Json:
    return {
        "required": False,
        "description": f"Optional; when sent it must be a JSON object, and is ignored. {action}",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def path_param(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }
