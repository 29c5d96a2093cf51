"""The ``model`` object, its list and the deletion answer, declared once: every builder (base
models in :mod:`.registry`, fine-tuned and checkpoint models in :mod:`.service`) makes its
objects through these shapes."""

from __future__ import annotations

from typing import Any

from ..wire.shapes import BOOL, STR, Prop, Shape, components, const, ref

MODEL = Shape(
    "Model",
    [
        Prop("id", STR),
        const("object", "model"),
        Prop(
            "created",
            {
                "type": "integer",
                "description": "Unix time, seconds. Fine-tuned models: the job's "
                "`finished_at`; checkpoint models: when the checkpoint was saved.",
            },
        ),
        Prop(
            "owned_by",
            {
                "type": "string",
                "description": "`ftserve` (built-in), `local`, `alias`, the Hugging Face "
                "org of a cached model, or the organization of a fine-tuned model.",
            },
        ),
    ],
)
MODEL_LIST = Shape(
    "ListModelsResponse",
    [const("object", "list"), Prop("data", {"type": "array", "items": ref(MODEL.name)})],
    description="Base models first, then the organization's fine-tuned models, each "
    "followed by its checkpoint models (`…:ckpt-step-N`). No paging.",
)
MODEL_DELETED = Shape(
    "ModelDeleted", [Prop("id", STR), const("object", "model"), Prop("deleted", BOOL)]
)


def model(name: str, created: int, owned_by: str) -> dict[str, Any]:
    return MODEL.make(id=name, created=created, owned_by=owned_by)


def schemas() -> dict[str, Any]:
    return components(MODEL, MODEL_LIST, MODEL_DELETED)
