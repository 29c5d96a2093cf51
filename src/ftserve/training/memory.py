"""How a job uses memory: gradient checkpointing, the micro-batch's token budget, and the
out-of-memory back-off.

The plan (``plan``), made once the model is loaded:

- On CUDA, the budget comes from the device's free memory at that point, less what the first
  optimizer step will still allocate (gradients and AdamW's two moments of every trained weight,
  fp32, and autocast's bf16 copies of trained fp32 weights), less a 10% margin for the
  allocator's fragmentation. Activations are estimated per token from the model's config
  (``activation_cost``): a decoder layer keeps about ``12 * hidden + 5 * intermediate`` values
  per token for its backward pass (inputs of the norms, projections, rotary embeddings,
  attention and MLP; a step's peak RSS, measured on CPU with SmolLM2-135M's shape by
  bench/train_memory.py, came within ~10% of this), and the scored positions keep their
  logits in the compute dtype, fp32 for the loss, and the loss's gradient. With gradient
  checkpointing a layer keeps only its input, and one layer's full activations are alive
  again while it is recomputed. The estimate errs high (every token is
  counted as scored); what it misses, the back-off catches.
- ``gradient_checkpointing`` "auto" turns it on when the wanted micro-batch (the requested
  budget, or ``DEFAULT_MICRO_BATCH_TOKENS`` but no more than the largest step needs) would not
  fit without it. A budget left "auto" is then the most that fits, up to that wanted size.
- On a CPU "auto" means no checkpointing and ``DEFAULT_MICRO_BATCH_TOKENS``: a CPU job's memory
  is the machine's RAM, shared with every other process and changing by the second, so a plan
  drawn from it would cut the same job's micro-batches differently from run to run (and change
  its floating-point sums, which are otherwise bit-identical on a CPU). Jobs that fit a CPU's
  patience fit its RAM; where one does not, the back-off below still applies.

The back-off (``smaller_budget``): an out-of-memory error inside a step (or an evaluation)
discards the step's partial gradients, halves the budget until the step splits into more
micro-batches, and runs the same step again with the same examples and the same random state,
so its result is the same up to floating-point summation order. The smaller budget stays for the
rest of the job. When every example already has a micro-batch of its own, nothing is left to
split, and the job fails naming what a user can change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ftserve.training.spec import MemoryPlan

DEFAULT_MICRO_BATCH_TOKENS = 16384
MIN_MICRO_BATCH_TOKENS = 16  # the request's lower bound (ftserve.max_tokens_per_micro_batch)
SAFETY_MARGIN = 0.9  # of the free memory, kept for the allocator's fragmentation
_FP32 = 4


class Splittable(Protocol):
    """What the back-off needs from an objective: its budget, and how many micro-batches a
    step's items make under it."""

    max_tokens: int

    def micro_batches(self, items: Sequence[Any]) -> int: ...


@dataclass(frozen=True)
class ActivationCost:
    """Estimated bytes of activations per token of a micro-batch, without and with gradient
    checkpointing."""

    plain: int
    checkpointed: int

    def per_token(self, checkpointed: bool) -> int:
        return self.checkpointed if checkpointed else self.plain


def _config_int(config: Any, *names: str, default: int) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def activation_cost(config: Any, compute_bytes: int) -> ActivationCost:
    """``compute_bytes``: the element size of activations (2 under bf16 autocast, 4 in fp32)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model", default=1024)
    intermediate = _config_int(
        config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden
    )
    layers = _config_int(config, "num_hidden_layers", "n_layer", "num_layers", default=24)
    vocab = _config_int(config, "vocab_size", default=32000)
    # RMS/LayerNorm upcast to fp32 and keep about three hidden-sized fp32 tensors per layer.
    layer = compute_bytes * (12 * hidden + 5 * intermediate) + _FP32 * 3 * hidden
    logits = vocab * (compute_bytes + 2 * _FP32)
    return ActivationCost(
        plain=layers * layer + logits,
        checkpointed=layers * hidden * compute_bytes + layer + logits,
    )


def optimizer_bytes(model: Any, autocast: bool) -> int:
    """What the first optimizer step still allocates: a gradient and two AdamW moments (fp32)
    per trained weight, plus autocast's half-precision copy of each."""
    trained = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return trained * (3 * _FP32 + (2 if autocast else 0))


def plan(
    *,
    gradient_checkpointing: bool | None,
    max_tokens: int | None,
    free_bytes: int | None,
    cost: ActivationCost,
    largest_step_tokens: int,
) -> MemoryPlan:
    """The memory plan. ``None`` in the first two arguments means "auto"; ``free_bytes`` is
    what the activations may use (``None``: not planned from memory, as on a CPU);
    ``largest_step_tokens``: the padded tokens of the step that needs the most."""
    if free_bytes is None:
        return MemoryPlan(bool(gradient_checkpointing), max_tokens or DEFAULT_MICRO_BATCH_TOKENS)
    wanted = max_tokens or max(
        MIN_MICRO_BATCH_TOKENS, min(DEFAULT_MICRO_BATCH_TOKENS, largest_step_tokens)
    )
    checkpointed = gradient_checkpointing
    if checkpointed is None:
        checkpointed = wanted * cost.per_token(False) > free_bytes
    budget = max_tokens
    if budget is None:
        fits = free_bytes // cost.per_token(checkpointed)
        budget = max(MIN_MICRO_BATCH_TOKENS, min(wanted, fits))
    return MemoryPlan(checkpointed, budget)


def free_bytes(device: torch.device) -> int | None:
    """What activations may use on ``device`` now, or ``None`` where memory is not planned."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * SAFETY_MARGIN)


def enable_gradient_checkpointing(model: Any) -> None:
    """Checkpoint every decoder layer of ``model`` (a PEFT model's base, too). Non-reentrant
    checkpointing recomputes with the saved random state, so dropout draws the same masks and
    the losses do not change; transformers also makes the embeddings' output require grad, so
    a LoRA model whose embeddings are frozen still backpropagates through the checkpoints."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2x
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def smaller_budget(objective: Splittable, items: Sequence[Any]) -> int | None:
    """Halve the objective's budget until ``items`` split into more micro-batches; the new
    budget, or ``None`` (budget unchanged) when every item is already alone."""
    before = objective.micro_batches(items)
    if before >= len(items):
        return None
    original = budget = objective.max_tokens
    while budget > 1:
        budget //= 2
        objective.max_tokens = budget
        if objective.micro_batches(items) > before:
            return budget
    objective.max_tokens = original
    return None


def release_cached(device: torch.device) -> None:
    """Give the blocks the failed attempt left cached back, so the retry starts clean."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
