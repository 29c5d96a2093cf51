"""Supervised objective: mean cross-entropy over the trained tokens, and argmax token accuracy.

The loss of a step is the mean over every trained token of the step's examples, however they
were split into micro-batches (each micro-batch's summed loss is divided by the step's token
count before its backward pass). With ``packing`` a micro-batch is one packed row
(:func:`~ftserve.training.batching.pack`) of at most ``max_tokens`` real tokens; the loss is
the same sum over the same tokens, only no padding is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

from ftserve.training.batching import Batch, collate, pack, split_micro_batches
from ftserve.training.data import Example
from ftserve.training.forward import target_logits
from ftserve.training.objective import Outcome
from ftserve.training.packing import use_packed_attention


class SupervisedObjective:
    def __init__(
        self,
        model: Any,
        *,
        pad_id: int,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager[Any]],
        max_tokens: int,
        use_logits_mask: bool,
        packing: bool = False,
    ) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = device
        self.autocast = autocast
        self.max_tokens = max_tokens
        self.use_logits_mask = use_logits_mask
        self.packing = packing
        # Set by a sharded model's rank to the whole step's weight (training/fsdp.py).
        self.loss_denominator: float | None = None
        if packing:
            use_packed_attention(model)

    def _groups(self, examples: Sequence[Example]) -> list[list[Example]]:
        lengths = [len(e.input_ids) for e in examples]
        return [
            [examples[i] for i in group]
            for group in split_micro_batches(lengths, self.max_tokens, packed=self.packing)
        ]

    def _batch(self, examples: Sequence[Example]) -> Batch:
        return pack(examples) if self.packing else collate(examples, self.pad_id)

    def _loss_sum(self, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, int]:
        batch = self._batch(examples).to(self.device)
        with self.autocast():
            logits = target_logits(self.model, batch, self.use_logits_mask)
        targets = batch.targets[batch.keep]
        loss_sum = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        correct = (logits.detach().argmax(dim=-1) == targets).sum()
        return loss_sum, correct, batch.n_tokens

    def train_step(self, examples: Sequence[Example]) -> Outcome:
        n_targets = sum(e.n_targets for e in examples)
        loss_total = torch.zeros((), device=self.device)
        correct_total = torch.zeros((), dtype=torch.long, device=self.device)
        n_tokens = 0
        for group in self._groups(examples):
            loss_sum, correct, tokens = self._loss_sum(group)
            (loss_sum / (self.loss_denominator or n_targets)).backward()  # type: ignore[no-untyped-call]
            loss_total += loss_sum.detach()
            correct_total += correct
            n_tokens += tokens
        return Outcome(
            loss=float(loss_total) / n_targets,
            accuracy=int(correct_total) / n_targets,
            n_tokens=n_tokens,
        )

    def micro_batches(self, examples: Sequence[Example]) -> int:
        return len(self._groups(examples))

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example]) -> Outcome:
        n_targets = sum(e.n_targets for e in examples)
        loss_total = 0.0
        correct_total = 0
        n_tokens = 0
        for group in self._groups(examples):
            loss_sum, correct, tokens = self._loss_sum(group)
            loss_total += float(loss_sum)
            correct_total += int(correct)
            n_tokens += tokens
        return Outcome(
            loss=loss_total / n_targets, accuracy=correct_total / n_targets, n_tokens=n_tokens
        )
