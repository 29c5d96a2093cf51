"""The models endpoints in the OpenAPI document, from :mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import errors, ok, op
from .schemas import MODEL, MODEL_DELETED, MODEL_LIST

Json = dict[str, Any]
_TAG = "Models"


def paths(settings: Settings) -> Json:
    return {
        "/models": {
            "get": op(
                "listModels",
                _TAG,
                "Base models available here, then this organization's fine-tuned models and "
                "their checkpoint models.",
                {"200": ok(MODEL_LIST.name, "Every model this key can use."), **errors(401)},
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
            "get": op(
                "retrieveModel",
                _TAG,
                "Describe one model. Another organization's, a deleted one, or one whose job has "
                "not succeeded is a 404 `model_not_found`.",
                {"200": ok(MODEL.name, "The model."), **errors(401, 404)},
            ),
            "delete": op(
                "deleteModel",
                _TAG,
                "Delete a fine-tuned model (with its checkpoint models) or one checkpoint model: "
                "its weights are removed and it is no longer listed or served; the job keeps "
                "naming it. A base model is a 403; an unknown, deleted or foreign one a 404.",
                {"200": ok(MODEL_DELETED.name, "The model is deleted."), **errors(401, 403, 404)},
            ),
        },
    }
