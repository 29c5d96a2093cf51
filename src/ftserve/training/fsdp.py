"""A full fine-tune sharded over the job's devices with FSDP2 (``fully_shard``).

Chosen (``choose``) when a job on several devices trains every weight and either asks for it
(``fsdp: true``) or, left "auto", would not fit one device: on CUDA when the fp32 weights, their
gradients, AdamW's moments (and autocast's copies, as ``ftserve.training.memory`` counts them)
and DDP's gradient buckets exceed a GPU's free memory; never "auto" on a CPU, whose RAM is not
planned (see memory.py), so a CPU job shards only when asked. Every rank must take the same
decision: the ranks agree on the largest need.

* **Sharding.** Each decoder layer (the model's ``_no_split_modules`` classes, as accelerate
  wraps them) and then the root are ``fully_shard``-ed, so a rank keeps 1/N of every weight,
  gradient and Adam moment, and gathers one layer at a time for its forward and backward.
  Such a model is loaded into CPU memory first (``loads_on_cpu``) and ``fully_shard`` moves
  one layer at a time to the GPU, so the whole model never has to fit one GPU.
* **Exactness.** FSDP's reduce-scatter sums the ranks' gradients (divide factor 1, and plain
  sums on the wire: gloo has no pre-multiplied sum); each rank divides its loss by the whole
  step's weight (trained tokens, or pairs for DPO), not its own share's, so the sum is the
  single-process gradient, the mean over every trained token of the step. Each backward
  reduce-scatters, so every rank runs as many backward passes per step as the rank with the
  most micro-batches: the others add passes of a one-token probe whose loss is multiplied by
  zero. Evaluation runs on every rank (a forward gathers weights from all of them); rank 0's
  result is the one reported.
* **Clipping.** ``clip_grad_norm_`` over the sharded (DTensor) gradients computes the norm of
  the whole gradient, reduced over the ranks.
* **Checkpoints.** ``gather`` collects the full weights and optimizer state on rank 0 (in CPU
  memory; ``torch.distributed.checkpoint.state_dict`` with ``full_state_dict``), and rank 0
  writes them in exactly the format a one-device job writes: the Hugging Face model directory
  and the optimizer's ``state_dict`` keyed by parameter index. So a job paused on N sharded
  processes resumes on one, or on DDP, and back. On a resume each rank loads the weights from
  the checkpoint before sharding them, and the optimizer state is sharded from the full one.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist

from ftserve.training import memory
from ftserve.training.data import Example
from ftserve.training.distributed import Rank
from ftserve.training.objective import Objective, Outcome
from ftserve.training.spec import TrainingFailed, TrainingSpec

_FP32 = 4


def loads_on_cpu(spec: TrainingSpec, device: torch.device) -> bool:
    """Whether the model is loaded into CPU memory before it is placed: a full fine-tune on
    several GPUs, which may be sharded (``fully_shard`` then moves one layer at a time to the
    GPU and keeps its shard), so the whole model never needs to fit one GPU."""
    return not spec.lora and spec.devices > 1 and device.type == "cuda"


def choose(spec: TrainingSpec, rank: Rank | None, model: Any, autocast: bool) -> bool:
    """Whether this job shards its model (the same answer on every rank). ``model`` is not on
    the device yet where it may be sharded (``loads_on_cpu``)."""
    if rank is None or spec.lora:
        return False
    wanted = spec.fsdp
    if wanted is None:
        wanted = too_big(memory.free_bytes(rank.device), _unsharded_bytes(model, autocast))
    vote = torch.tensor([int(wanted)], device=rank.device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def _unsharded_bytes(model: Any, autocast: bool) -> int:
    """What one device would hold for DDP before the first activation: the fp32 weights, their
    gradients and AdamW's moments (``memory.optimizer_bytes``) and DDP's gradient buckets."""
    weights = int(sum(p.numel() for p in model.parameters()))
    return 2 * weights * _FP32 + memory.optimizer_bytes(model, autocast)


def too_big(free: int | None, needed: int) -> bool:
    """Under "auto": whether ``needed`` bytes would not fit the ``free`` memory of a device
    (``None``: memory is not planned, as on a CPU)."""
    return free is not None and needed > free


def shard(model: Any) -> None:
    """``fully_shard`` each decoder layer, then the root; gradients are summed over ranks."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise TrainingFailed(
            "unsupported_model",
            f"{type(model).__name__} does not name its decoder layers (_no_split_modules), so "
            "it cannot be sharded; set ftserve.fsdp to false.",
        )
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)


class Divisible(Objective, Protocol):
    loss_denominator: float | None
    """What a step's summed loss is divided by before its backward pass; ``None``: the
    step's own weight (its trained tokens, or pairs for DPO)."""


def _weight(item: Any) -> int:
    """What a step's loss is the mean over: trained tokens (supervised), pairs (DPO)."""
    return item.n_targets if isinstance(item, Example) else 1


class ShardedModelObjective:
    """An objective whose steps are shared by every rank of a sharded model."""

    def __init__(
        self, inner: Divisible, model: Any, rank: Rank, *, probe_id: int, autocast: Any
    ) -> None:
        self.inner = inner
        self.model = model
        self.rank = rank
        self.autocast = autocast
        self.probe = torch.tensor([[probe_id]], dtype=torch.long, device=rank.device)

    def _mine(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.rank.rank :: self.rank.world])

    def train_step(self, items: Sequence[Any]) -> Outcome:
        mine = self._mine(items)
        weight = sum(_weight(i) for i in mine)
        passes = self.inner.micro_batches(mine) if mine else 0
        total = torch.tensor([float(weight)], dtype=torch.float64, device=self.rank.device)
        dist.all_reduce(total)
        most = torch.tensor([passes], dtype=torch.long, device=self.rank.device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        # Every rank's loss over the whole step's weight: FSDP's sum is then the global mean.
        self.inner.loss_denominator = float(total.item())
        try:
            local = self.inner.train_step(mine) if mine else Outcome(0.0, 0.0, 0)
        finally:
            self.inner.loss_denominator = None
        for _ in range(int(most.item()) - passes):
            self._empty_pass()
        totals = torch.tensor(
            [local.loss * weight, local.accuracy * weight, float(local.n_tokens)],
            dtype=torch.float64,
            device=self.rank.device,
        )
        dist.all_reduce(totals)
        loss_sum, correct, n_tokens = (float(x) for x in totals.tolist())
        step_weight = float(total.item())
        return Outcome(
            loss=loss_sum / step_weight, accuracy=correct / step_weight, n_tokens=round(n_tokens)
        )

    def _empty_pass(self) -> None:
        """A forward and backward that changes no gradient but takes part in FSDP's gathers
        and reduce-scatters, as the ranks with more micro-batches do."""
        ctx: AbstractContextManager[Any] = self.autocast()
        with ctx:
            logits = self.model(input_ids=self.probe, use_cache=False).logits
        (logits.float().sum() * 0.0).backward()

    def evaluate(self, items: Sequence[Any]) -> Outcome:
        # Every rank runs the same evaluation: each forward gathers weights from all of them.
        return self.inner.evaluate(items)

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        self.inner.max_tokens = value

    def micro_batches(self, items: Sequence[Any]) -> int:
        return self.inner.micro_batches(self._mine(items))


# -- checkpoints in the one-device format --------------------------------------------------------


@dataclass(frozen=True)
class Gathered:
    """The full weights and optimizer state, on rank 0 (empty on the other ranks)."""

    model: dict[str, Any]
    optimizer: dict[str, Any]


def _options(*, cpu_offload: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def _indices(model: Any, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Each parameter name (tied aliases included) → its index in ``optimizer.state_dict()``,
    the numbering a one-device job's checkpoint uses."""
    position = {
        id(p): i
        for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"])
    }
    return {
        name: position[id(p)]
        for name, p in model.named_parameters(remove_duplicate=False)
        if id(p) in position
    }


def gather(model: Any, optimizer: torch.optim.Optimizer | None) -> Gathered:
    """Collective: every rank calls it; rank 0 gets the full state (the weights alone without
    ``optimizer``)."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    weights: dict[str, Any] = get_model_state_dict(model, options=_options(cpu_offload=True))
    # A tied weight (an output head sharing the embeddings) is gathered as one copy per name,
    # which save_pretrained cannot tell are one (it finds ties by shared storage): kept once,
    # under the name a one-device checkpoint uses.
    kept = {name for name, _ in model.named_parameters()}
    for alias in {name for name, _ in model.named_parameters(remove_duplicate=False)} - kept:
        weights.pop(alias, None)
    if optimizer is None or dist.get_rank() != 0:
        if optimizer is not None:  # the other ranks take part in the gather
            get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
        return Gathered(weights if dist.get_rank() == 0 else {}, {})
    by_name: dict[str, Any] = get_optimizer_state_dict(
        model, optimizer, options=_options(cpu_offload=True)
    )
    index = _indices(model, optimizer)
    state = {index[name]: value for name, value in by_name["state"].items()}
    groups = [
        {**group, "params": sorted({index[name] for name in group["params"]})}
        for group in by_name["param_groups"]
    ]
    return Gathered(weights, {"state": state, "param_groups": groups})


def load_optimizer(model: Any, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Shard a one-device ``optimizer.state_dict()`` (every rank reads the same file)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names: dict[int, str] = {}
    for name, i in _indices(model, optimizer).items():
        names.setdefault(i, name)
    by_name: dict[str, Any] = {
        "state": {names[int(i)]: value for i, value in saved["state"].items()},
        "param_groups": [
            {**group, "params": [names[int(i)] for i in group["params"]]}
            for group in saved["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=_options())


def whole(norm: torch.Tensor) -> float:
    """The value of a gradient norm ``clip_grad_norm_`` returned (a DTensor for a sharded
    model: its full value is the norm over every rank's shard)."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
