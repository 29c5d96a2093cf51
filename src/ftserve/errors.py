"""The one exception tree of ftserve.

Every error a client can see is an :class:`ApiError`; the API layer renders it, and only it,
into OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``, and one function
(``ftserve.api.envelope.error_envelope``) decides which ApiError any other exception becomes.

::

    ApiError                      (500 server_error — also the base class)
    ├── InvalidRequest            (400 invalid_request_error)
    │   ├── MissingParameter      (400, code missing_required_parameter)
    │   ├── InvalidType           (400, code invalid_type)
    │   ├── InvalidValue          (400, code invalid_value or a bound code)
    │   ├── InvalidJson           (400, body is not JSON)
    │   ├── InvalidFile           (400, param "file": a bad upload)
    │   └── StateConflict         (400 — never 409: the SDKs retry 409)
    ├── AuthenticationFailed      (401 invalid_api_key / missing key)
    ├── NotFound                  (404)
    │   ├── JobNotFound           (404 fine_tune_not_found, param fine_tune_id)
    │   ├── ModelNotFound         (404 model_not_found: the chat endpoints' wording)
    │   ├── UnknownModel          (404 model_not_found: /models/{model}'s wording)
    │   ├── RouteNotFound         (404 for an unknown URL)
    │   └── DeploymentNotFound    (404, Azure's shape: only code and message)
    ├── ModelNotDeletable         (403 model_not_deletable: DELETE of a base model)
    ├── MethodNotAllowed          (405)
    ├── PayloadTooLarge           (413)
    ├── InferenceDisabled         (503: the server runs without inference)
    ├── DatabaseUnavailable       (503 database_unavailable: the store cannot be reached now)
    └── ServerError               (500, message carries no internals)
        └── InferenceFailed       (500: the inference process failed or died)

Store drivers raise :class:`StoreError` (not an ApiError): a storage failure is a 500 whose details
go to the log, never to the client. Its subclass :class:`StoreUnavailable` (the database cannot be
reached: refused, lost or no connection free in time) is a 503 instead, which says to retry (the
SDKs retry a 503 by themselves). Neither is a refused write
(``ftserve.store.protocol.WriteRefused``), which is an answer, not a failure.
"""

from __future__ import annotations


class ApiError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class MissingParameter(InvalidRequest):
    code = "missing_required_parameter"

    def __init__(self, param: str) -> None:
        super().__init__(f"Missing required parameter: '{param}'.", param=param)


class InvalidType(InvalidRequest):
    code = "invalid_type"

    def __init__(self, param: str, expected: str, got: object) -> None:
        super().__init__(
            f"Invalid type for '{param}': expected {expected}, "
            f"but got {describe_type(got)} instead.",
            param=param,
        )


class InvalidValue(InvalidRequest):
    code = "invalid_value"


class InvalidJson(InvalidRequest):
    def __init__(self) -> None:
        super().__init__(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The API expects a JSON payload, but what "
            "was sent was not valid JSON.)"
        )


class InvalidFile(InvalidRequest):
    def __init__(self, message: str, *, code: str | None = "invalid_file_format") -> None:
        super().__init__(message, param="file", code=code)


class StateConflict(InvalidRequest):
    code = "invalid_job_state"


class AuthenticationFailed(ApiError):
    status = 401
    type = "invalid_request_error"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"


class JobNotFound(NotFound):
    code = "fine_tune_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Could not find fine tune: {job_id}", param="fine_tune_id")


class ModelNotFound(NotFound):
    """A model the caller cannot use for inference (unknown, another organization's, deleted,
    or its job not succeeded), in the chat endpoints' wording."""

    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"The model `{name}` does not exist or you do not have access to it.")


class UnknownModel(NotFound):
    """The same, in the wording of ``GET``/``DELETE /models/{model}``."""

    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"The model '{name}' does not exist", param="model")


class ModelNotDeletable(ApiError):
    """DELETE of a base model: only fine-tuned models (and their checkpoints) can be deleted."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_deletable"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The model '{name}' is a base model and cannot be deleted; only fine-tuned models "
            "(ft:…) of your organization and their checkpoints can.",
            param="model",
        )


class RouteNotFound(NotFound):
    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Invalid URL ({method} {path})")


class DeploymentNotFound(NotFound):
    """An Azure deployment route naming no model; Azure's body carries only code and message."""

    code = "DeploymentNotFound"

    def __init__(self) -> None:
        super().__init__(
            "The API deployment for this resource does not exist. If you created the deployment "
            "within the last 5 minutes, please wait a moment and try again."
        )

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Invalid method for URL ({method} {path})")


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ServerError(ApiError):
    pass


class InferenceFailed(ServerError):
    """The inference process failed or died while serving a request."""


class InferenceDisabled(ApiError):
    status = 503
    code = "inference_disabled"

    def __init__(self) -> None:
        super().__init__(
            "Inference is turned off on this server (it was started with --inference 0 or "
            "FTSERVE_INFERENCE=0), so it serves no chat or text completions."
        )


class DatabaseUnavailable(ApiError):
    status = 503
    code = "database_unavailable"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "The server's database is unavailable right now. Please retry your request in a "
            f"few seconds (request id {request_id})."
        )


class StoreError(Exception):
    """A storage backend failed; rendered as a generic 500, details logged."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (refused, lost, or no connection free in time);
    whether the statement ran is unknown for a write. Rendered as a 503."""


def describe_type(value: object) -> str:
    """OpenAI's wording for a JSON value's type in ``invalid_type`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
