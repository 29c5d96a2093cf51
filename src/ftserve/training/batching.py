"""Padding examples into tensors and splitting a batch into micro-batches that fit in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ftserve.training.data import Example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Batch:
    """Right-padded sequences. ``targets[b, t]`` is the token to predict at position ``t``
    (that is ``input_ids[b, t + 1]``) or ``IGNORE_INDEX``; ``keep`` is ``targets != IGNORE_INDEX``.
    ``attention_mask`` is ``None`` when no row is padded, which lets attention use its plain
    causal path.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    targets: torch.Tensor
    keep: torch.Tensor
    n_tokens: int
    n_targets: int

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        return Batch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=(
                None
                if self.attention_mask is None
                else self.attention_mask.to(device, non_blocking=True)
            ),
            targets=self.targets.to(device, non_blocking=True),
            keep=self.keep.to(device, non_blocking=True),
            n_tokens=self.n_tokens,
            n_targets=self.n_targets,
        )


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    n_tokens = 0
    n_targets = 0
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        input_ids[row, :length] = ids
        attention[row, :length] = 1
        mask = torch.tensor(example.target_mask[1:], dtype=torch.bool)
        targets[row, : length - 1] = torch.where(mask, ids[1:], IGNORE_INDEX)
        n_tokens += length
        n_targets += int(mask.sum())
    padded = n_tokens != len(examples) * width
    return Batch(
        input_ids=input_ids,
        attention_mask=attention if padded else None,
        targets=targets,
        keep=targets != IGNORE_INDEX,
        n_tokens=n_tokens,
        n_targets=n_targets,
    )


def split_micro_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group consecutive items so each group's padded size (count * longest) stays within
    ``max_tokens``; an item longer than that gets a group of its own."""
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index, length in enumerate(lengths):
        wider = max(longest, length)
        if current and wider * (len(current) + 1) > max_tokens:
            groups.append(current)
            current, wider = [], length
        current.append(index)
        longest = wider
    if current:
        groups.append(current)
    return groups
