"""Group-relative policy optimisation (GRPO; Shao et al., 2024, "DeepSeekMath"), the update of a
reinforcement fine-tuning step.

A step samples ``G`` answers for each prompt; the grader scores each. An answer's advantage is
its reward's distance from its group's mean, in units of the group's standard deviation
(a group whose answers all scored the same teaches nothing: its advantages are 0). For each
answer token ``t`` with policy log-probability ``logp``, its value when the answer was sampled
``logp_old`` and the reference's (the base model's) ``logp_ref``:

    ratio   = exp(logp - logp_old)
    surr    = min(ratio * A, clip(ratio, 1 - EPSILON, 1 + EPSILON) * A)
    kl      = exp(logp_ref - logp) - (logp_ref - logp) - 1        (Schulman's k3 estimator)
    loss_t  = -(surr - KL_COEFFICIENT * kl)

averaged over an answer's tokens, then over the step's answers. ftserve samples and updates once
per step (the answers come from the weights being trained), so ``logp_old`` is ``logp`` itself,
detached: the ratio is 1 and the clip is inactive, and the gradient is the plain policy gradient
plus the KL term's — the same update as TRL's ``GRPOTrainer`` with one iteration per batch.

The reference is the base model: with LoRA the same model with its adapter disabled, with a full
fine-tune a frozen copy. Reference scores run without gradient, in eval mode; the policy's in
train mode. Each trained sequence is the prompt and the answer, with the stop token when the
answer ended on one (so ending is learned too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from ftserve.training.batching import Batch, collate, split_micro_batches
from ftserve.training.data import Example
from ftserve.training.forward import target_log_probs, target_logits
from ftserve.training.objective import Outcome
from ftserve.training.reference import reference_model

EPSILON = 0.2
KL_COEFFICIENT = 0.04
ADVANTAGE_EPS = 1e-4


def advantages(rewards: Sequence[float], group_size: int) -> list[float]:
    """Group-normalised advantages; ``rewards`` holds the groups one after the other."""
    r = torch.tensor(list(rewards), dtype=torch.float64).view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(mean)
    a = (r - mean) / (std + ADVANTAGE_EPS)
    a = torch.where(std > 0, a, torch.zeros_like(a))
    return [float(x) for x in a.view(-1)]


@dataclass(frozen=True)
class Scored:
    """One sampled answer, ready to train on."""

    example: Example  # prompt + answer (+ stop token); the answer's tokens are the targets
    advantage: float


def _per_row_mean(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    rows = batch.rows[batch.keep]
    sums = torch.zeros(batch.n_rows, dtype=values.dtype, device=values.device)
    counts = torch.zeros(batch.n_rows, dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, rows, values)
    counts = counts.index_add(0, rows, torch.ones_like(values))
    return sums / counts.clamp(min=1)


class GrpoObjective:
    def __init__(
        self,
        model: Any,
        *,
        reference: Any | None,
        pad_id: int,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager[Any]],
        max_tokens: int,
        use_logits_mask: bool,
        kl_coefficient: float = KL_COEFFICIENT,
    ) -> None:
        """``reference=None``: the model is a PEFT model whose disabled adapter is the base."""
        self.model = model
        self.reference = reference
        self.pad_id = pad_id
        self.device = device
        self.autocast = autocast
        self.max_tokens = max_tokens
        self.use_logits_mask = use_logits_mask
        self.kl_coefficient = kl_coefficient
        self.last_kl = 0.0

    def _groups(self, scored: Sequence[Scored]) -> list[list[Scored]]:
        lengths = [len(s.example.input_ids) for s in scored]
        return [[scored[i] for i in g] for g in split_micro_batches(lengths, self.max_tokens)]

    def micro_batches(self, scored: Sequence[Scored]) -> int:
        return len(self._groups(scored))

    def _losses(self, group: Sequence[Scored]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per-answer losses and KL to the reference (each a mean over the answer's tokens)."""
        batch = collate([s.example for s in group], self.pad_id).to(self.device)
        with (
            torch.no_grad(),
            reference_model(self.model, self.reference) as reference,
            self.autocast(),
        ):
            ref = target_log_probs(target_logits(reference, batch, self.use_logits_mask), batch)
        with self.autocast():
            logp = target_log_probs(target_logits(self.model, batch, self.use_logits_mask), batch)
        rows = batch.rows[batch.keep]
        advantage = torch.tensor([s.advantage for s in group], dtype=logp.dtype, device=logp.device)
        advantage = advantage[rows]
        ratio = torch.exp(logp - logp.detach())
        clipped = torch.clamp(ratio, 1 - EPSILON, 1 + EPSILON)
        surrogate = torch.minimum(ratio * advantage, clipped * advantage)
        delta = ref - logp
        kl = torch.exp(delta) - delta - 1
        losses = _per_row_mean(-(surrogate - self.kl_coefficient * kl), batch)
        return losses, _per_row_mean(kl.detach(), batch), batch.n_tokens

    def train_step(self, scored: Sequence[Scored]) -> Outcome:
        """Forward and backward over the step's answers (gradients accumulate; the trainer clips
        and steps the optimizer). The outcome's ``accuracy`` is 0: sampled answers have no
        reference tokens to match; the mean KL to the reference is kept in ``last_kl``."""
        loss_total = 0.0
        kl_total = 0.0
        n_tokens = 0
        for group in self._groups(scored):
            losses, kl, tokens = self._losses(group)
            (losses.sum() / len(scored)).backward()  # type: ignore[no-untyped-call]
            loss_total += float(losses.detach().sum())
            kl_total += float(kl.sum())
            n_tokens += tokens
        self.last_kl = kl_total / len(scored)
        return Outcome(loss=loss_total / len(scored), accuracy=0.0, n_tokens=n_tokens)

    @torch.no_grad()
    def evaluate(self, scored: Sequence[Scored]) -> Outcome:
        loss_total = 0.0
        n_tokens = 0
        for group in self._groups(scored):
            losses, _, tokens = self._losses(group)
            loss_total += float(losses.sum())
            n_tokens += tokens
        return Outcome(loss=loss_total / len(scored), accuracy=0.0, n_tokens=n_tokens)
