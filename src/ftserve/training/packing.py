"""Padding-free packing: the rows of a micro-batch run as one sequence, attention kept per row.

A packed micro-batch (see :func:`ftserve.training.batching.pack`) is one row of concatenated
examples with position ids restarting at 0 at each example, plus the cumulative row boundaries
(``cu_seq_lens``, the name transformers' flash-attention kwargs use, so every model that hands
its keyword arguments down to its attention function carries them to the layer).

The model's attention is switched to :data:`ATTENTION`, registered with transformers' attention
and mask interfaces. Given row boundaries it attends within each row only:

* on CUDA in bf16/fp16, one call of PyTorch's variable-length flash attention
  (``torch.nn.attention.varlen``) over the whole packed sequence;
* elsewhere (CPU, fp32), causal SDPA row by row. A block-diagonal mask over the packed sequence
  would be exact too, but it costs ``T²`` memory and compute where the rows need only
  ``Σ len²``, and a masked SDPA cannot use the causal kernel.

Without boundaries (a padded batch, generation) it is exactly transformers' ``sdpa``, so a model
switched once still runs every other kind of batch.

Packing is exact only where the model's attention goes through that interface and every layer
attends to the whole causal past: :func:`supports_packing` says which models qualify (sliding
windows, chunked attention, models with their own attention code do not); for the others the
trainer pads as before.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

ATTENTION = "ftserve_packed"


def _rows(cu_seq_lens: torch.Tensor) -> list[tuple[int, int]]:
    return list(itertools.pairwise(int(b) for b in cu_seq_lens.tolist()))


@cache
def _varlen() -> Callable[..., Any] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def _varlen_causal(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    max_length: int,
    scaling: float | None,
) -> torch.Tensor | None:
    """Varlen flash attention on ``(T, heads, dim)`` tensors, or None where unavailable."""
    varlen = _varlen()
    if varlen is None or query.device.type != "cuda":
        return None
    if query.dtype not in (torch.bfloat16, torch.float16):
        return None
    parameters = inspect.signature(varlen).parameters
    kwargs: dict[str, Any] = {}
    if "scale" in parameters:
        kwargs["scale"] = scaling
    elif scaling is not None and not math.isclose(scaling, query.shape[-1] ** -0.5):
        return None  # an older kernel that only knows the default scale
    # torch 2.10-2.11 spell causality ``is_causal``; later releases a ``window_size``.
    if "window_size" in parameters:
        kwargs["window_size"] = (-1, 0)
    elif "is_causal" in parameters:
        kwargs["is_causal"] = True
    else:
        return None
    cu = cu_seq_lens.to(device=query.device, dtype=torch.int32)
    out: torch.Tensor = varlen(query, key, value, cu, cu, max_length, max_length, **kwargs)
    return out


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` is ``(batch, heads, T, dim)``,
    the result ``(batch, T, heads, dim)``."""
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if cu_seq_lens is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        out: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
        return out
    if query.shape[0] != 1:
        raise ValueError("a packed batch is one row")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if dropout == 0.0:
        fused = _varlen_causal(
            query[0].transpose(0, 1),
            key[0].transpose(0, 1),
            value[0].transpose(0, 1),
            cu_seq_lens,
            int(kwargs.get("max_length_q") or query.shape[2]),
            scaling,
        )
        if fused is not None:
            return fused.unsqueeze(0), None
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
        for start, end in _rows(cu_seq_lens)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def packed_mask(**kwargs: Any) -> Any:
    """No mask for a packed or unpadded batch (the attention function is causal within each
    row); ``sdpa``'s mask for a padded one."""
    if kwargs.get("attention_mask") is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(**kwargs)


@cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, packed_mask)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _full_causal_attention(config: Any) -> bool:
    if getattr(config, "use_sliding_window", True) and getattr(config, "sliding_window", None):
        return False
    if getattr(config, "attention_chunk_size", None):
        return False
    layer_types = getattr(config, "layer_types", None)
    return not layer_types or all(t == "full_attention" for t in layer_types)


def supports_packing(model: Any) -> bool:
    """Whether packed rows give exactly the padded rows' results with this model."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or not getattr(base, "_supports_attention_backend", False):
        return False
    if getattr(config, "is_encoder_decoder", False) or not getattr(config, "is_causal", True):
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager", ATTENTION):
        return False
    if "position_ids" not in inspect.signature(base.forward).parameters:
        return False
    return _full_causal_attention(config)


def use_packed_attention(model: Any) -> None:
    """Switch ``model`` (a PEFT model's base included) to :data:`ATTENTION`."""
    _register()
    base = _base(model)
    if base.config._attn_implementation != ATTENTION:
        base.set_attn_implementation(ATTENTION)
