"""The batch endpoints in the OpenAPI document, from the declarations in :mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import empty_body, errors, json_body, ok, op, param, path_param
from ..wire.shapes import ref
from .schemas import BATCH, BATCH_LIST, PAGING

Json = dict[str, Any]
_TAG = "Batch"


def parameters(settings: Settings) -> Json:
    return {
        "BatchId": path_param("batch_id", "The batch's id (`batch_...`)."),
        **PAGING.parameters(settings),
    }


def paths(settings: Settings) -> Json:
    batch = [param("BatchId")]
    return {
        "/batches": {
            "post": op(
                "createBatch",
                _TAG,
                "Create a batch from an uploaded file of requests; it starts `validating`, and "
                "runs in the background at a lower priority than live requests.",
                {"200": ok(BATCH.name, "The new batch."), **errors(400, 401, 413)},
                requestBody=json_body(ref("CreateBatchRequest")),
            ),
            "get": op(
                "listBatches",
                _TAG,
                "List batches, newest first.",
                {"200": ok(BATCH_LIST.name, "A page of batches."), **errors(400, 401)},
                parameters=[param("BatchesAfter"), param("BatchesLimit")],
            ),
        },
        "/batches/{batch_id}": {
            "parameters": batch,
            "get": op(
                "retrieveBatch",
                _TAG,
                "Describe a batch.",
                {"200": ok(BATCH.name, "The batch."), **errors(401, 404, 405)},
            ),
        },
        "/batches/{batch_id}/cancel": {
            "parameters": batch,
            "post": op(
                "cancelBatch",
                _TAG,
                "Cancel a batch: `cancelling`, then `cancelled` with the finished requests in "
                "its output file.",
                {"200": ok(BATCH.name, "The batch, `cancelling`."), **errors(400, 401, 404, 413)},
                requestBody=empty_body("A finished batch is a 400 `invalid_batch_state`."),
            ),
        },
    }
