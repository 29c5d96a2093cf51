"""Which model a completion request names, and whether this endpoint may serve it.

Base models serve both endpoints; a fine-tuned model is served only in the format it was trained
on (chat rows → ``/chat/completions``, prompt/completion rows → ``/completions``).
"""

from __future__ import annotations

from typing import Any, Literal

from ..api.context import Ctx
from ..errors import ApiError, DeploymentNotFound, InvalidValue, NotFound
from ..inference.protocol import ServedModel

Endpoint = Literal["chat", "text"]

NOT_CHAT = (
    "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did "
    "you mean to use v1/completions?"
)
IS_CHAT = (
    "This is a chat model and not supported in the v1/completions endpoint. Did you mean to use "
    "v1/chat/completions?"
)


def _unknown(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def _served(ctx: Ctx, name: str) -> ServedModel:
    models: Any = ctx.services.models
    served = getattr(models, "served", None)
    if served is not None:
        model: ServedModel = served(ctx.organization, name)
        return model
    # Until the models service knows fine-tuned models: the base models it can resolve.
    try:
        resolved = models.resolve(name)
    except InvalidValue:
        raise _unknown(name) from None
    return ServedModel(name=name, kind="base", base_source=resolved.source)


def served_model(ctx: Ctx, name: str, endpoint: Endpoint, *, deployment: bool) -> ServedModel:
    try:
        model = _served(ctx, name)
    except ApiError as exc:
        if deployment and exc.status == 404:
            raise DeploymentNotFound() from None
        raise
    if model.kind != "base":
        if endpoint == "chat" and not model.chat:
            raise NotFound(NOT_CHAT, param="model")
        if endpoint == "text" and model.chat:
            raise NotFound(IS_CHAT, param="model")
    return model
