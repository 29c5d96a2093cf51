"""One forward pass that returns logits only where a target token is scored.

The output head is often the costliest layer of a small model (a 150k-token
vocabulary dwarfs the hidden size), and a fine-tune scores only a fraction of the positions
(assistant turns, completions). Recent transformers releases accept a boolean
``logits_to_keep`` mask and project only the kept positions; older ones, or models whose forward
has no such argument, get the full logits and the kept rows are selected afterwards. Either way
the caller receives a ``(n_targets, vocab)`` tensor in row-major order of ``batch.keep``.

A packed batch also passes its position ids and row boundaries (transformers' flash-attention
keyword names), which the packed attention (:mod:`ftserve.training.packing`) reads.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ftserve.training.batching import Batch
from ftserve.training.spec import TrainingFailed


def supports_logits_mask(model: Any) -> bool:
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    probe = slice_logits_to_keep(torch.zeros(1, 2, 1), torch.tensor([[True, False]]))
    if tuple(probe.shape) != (1, 1):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def target_logits(model: Any, batch: Batch, use_mask: bool) -> torch.Tensor:
    kwargs: dict[str, Any] = {"use_cache": False}
    if use_mask:
        kwargs["logits_to_keep"] = batch.keep
    if batch.packed:
        kwargs.update(
            position_ids=batch.position_ids,
            cu_seq_lens_q=batch.cu_seq_lens,
            cu_seq_lens_k=batch.cu_seq_lens,
            max_length_q=batch.max_length,
            max_length_k=batch.max_length,
        )
    logits: torch.Tensor = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs
    ).logits
    if logits.ndim == 2 and logits.shape[0] == batch.n_targets:
        return logits
    if logits.ndim == 3 and tuple(logits.shape[:2]) == tuple(batch.keep.shape):
        return logits[batch.keep]
    raise TrainingFailed(
        "unsupported_model",
        f"The model returned logits of shape {tuple(logits.shape)} for a batch of shape "
        f"{tuple(batch.input_ids.shape)}; expected one row of logits per position.",
    )


def target_log_probs(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Log-probability of each target token, float32, one entry per kept position."""
    targets = batch.targets[batch.keep]
    return -torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
