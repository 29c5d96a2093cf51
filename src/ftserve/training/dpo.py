"""Direct Preference Optimization (Rafailov et al., 2023), sigmoid loss.

For a pair (chosen ``c``, rejected ``r``) and the summed log-probability ``logp(y|x)`` of each
answer's trained tokens under the policy and ``logp_ref(y|x)`` under the reference:

    reward(y) = beta * (logp(y|x) - logp_ref(y|x))
    loss      = -log(sigmoid(reward(c) - reward(r)))

The reference is the base model: with LoRA the same model with its adapter disabled, with full
fine-tuning a frozen copy taken before training. Reference scores are computed in eval mode (no
dropout), policy scores in train mode.

The metric reported as "mean token accuracy" for DPO jobs is the preference accuracy: the
fraction of pairs with ``reward(c) > reward(r)``. Before any update every reward is 0, so the
first step's loss is log 2 and its accuracy 0. The step loss is the mean over the step's pairs.

A micro-batch holds the chosen answers of its pairs followed by their rejected answers, so one
forward pass scores both; ``trained_tokens`` counts the tokens of both answers. With ``packing``
those rows are one packed row (:func:`~ftserve.training.batching.pack`) of at most
``max_tokens`` real tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

from ftserve.training.batching import Batch, collate, pack, split_micro_batches
from ftserve.training.data import PreferencePair
from ftserve.training.forward import target_log_probs, target_logits
from ftserve.training.objective import Outcome
from ftserve.training.packing import use_packed_attention
from ftserve.training.reference import reference_model


def collate_pairs(pairs: Sequence[PreferencePair], pad_id: int, *, packing: bool = False) -> Batch:
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    return pack(rows) if packing else collate(rows, pad_id)


def sequence_log_probs(model: Any, batch: Batch, use_mask: bool) -> torch.Tensor:
    """Summed log-probability of each sequence's trained tokens, shape ``(rows,)``."""
    token_log_probs = target_log_probs(target_logits(model, batch, use_mask), batch)
    rows = batch.rows[batch.keep]
    sums = torch.zeros(batch.n_rows, dtype=token_log_probs.dtype, device=rows.device)
    return sums.index_add(0, rows, token_log_probs)


def dpo_losses(
    policy: torch.Tensor, reference: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair losses and whether the chosen reward beats the rejected one.

    ``policy`` and ``reference`` hold the chosen answers' log-probabilities followed by the
    rejected answers'."""
    n = policy.shape[0] // 2
    rewards = beta * (policy - reference)
    margin = rewards[:n] - rewards[n:]
    return -torch.nn.functional.logsigmoid(margin), (margin.detach() > 0)


class DpoObjective:
    def __init__(
        self,
        model: Any,
        *,
        reference: Any | None,
        beta: float,
        pad_id: int,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager[Any]],
        max_tokens: int,
        use_logits_mask: bool,
        packing: bool = False,
    ) -> None:
        """``reference=None`` means the model is a PEFT model whose disabled adapter gives the
        reference."""
        self.model = model
        self.reference = reference
        self.beta = beta
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
            if reference is not None:
                use_packed_attention(reference)

    def _groups(self, pairs: Sequence[PreferencePair]) -> list[list[PreferencePair]]:
        if self.packing:
            lengths = [len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs]
            groups = split_micro_batches(lengths, self.max_tokens, packed=True)
        else:
            lengths = [max(len(p.chosen.input_ids), len(p.rejected.input_ids)) for p in pairs]
            # Each pair contributes two rows to the padded micro-batch.
            groups = split_micro_batches(lengths, max(1, self.max_tokens // 2))
        return [[pairs[i] for i in group] for group in groups]

    def _scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with (
            torch.no_grad(),
            reference_model(self.model, self.reference) as reference,
            self.autocast(),
        ):
            ref = sequence_log_probs(reference, batch, self.use_logits_mask)
        with self.autocast():
            policy = sequence_log_probs(self.model, batch, self.use_logits_mask)
        return dpo_losses(policy, ref, self.beta)

    def train_step(self, pairs: Sequence[PreferencePair]) -> Outcome:
        loss_total = torch.zeros((), device=self.device)
        wins_total = torch.zeros((), dtype=torch.long, device=self.device)
        n_tokens = 0
        for group in self._groups(pairs):
            batch = collate_pairs(group, self.pad_id, packing=self.packing).to(self.device)
            losses, wins = self._scores(batch)
            (losses.sum() / (self.loss_denominator or len(pairs))).backward()  # type: ignore[no-untyped-call]
            loss_total += losses.detach().sum()
            wins_total += wins.sum()
            n_tokens += batch.n_tokens
        return Outcome(
            loss=float(loss_total) / len(pairs),
            accuracy=int(wins_total) / len(pairs),
            n_tokens=n_tokens,
        )

    def micro_batches(self, pairs: Sequence[PreferencePair]) -> int:
        return len(self._groups(pairs))

    @torch.no_grad()
    def evaluate(self, pairs: Sequence[PreferencePair]) -> Outcome:
        loss_total = 0.0
        wins_total = 0
        n_tokens = 0
        for group in self._groups(pairs):
            batch = collate_pairs(group, self.pad_id, packing=self.packing).to(self.device)
            losses, wins = self._scores(batch)
            loss_total += float(losses.sum())
            wins_total += int(wins.sum())
            n_tokens += batch.n_tokens
        return Outcome(
            loss=loss_total / len(pairs), accuracy=wins_total / len(pairs), n_tokens=n_tokens
        )
