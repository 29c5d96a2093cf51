"""The reference model that DPO and GRPO compare the policy with: the base model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def reference_model(model: Any, reference: Any | None) -> Iterator[Any]:
    """``reference`` when there is one (a full fine-tune's frozen copy); otherwise ``model``, a
    PEFT model, with its adapter switched off, in eval mode (no dropout) for the duration."""
    if reference is not None:
        yield reference
        return
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter():
            yield model
    finally:
        model.train(was_training)
