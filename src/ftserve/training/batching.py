"""Examples into tensors (padded rows, or one packed row) and a batch into micro-batches that
fit in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ftserve.training.data import Example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Batch:
    """Examples as model input: right-padded rows, or (``packed``) one row holding every example
    one after the other.

    ``targets[b, t]`` is the token to predict at position ``t`` (the next token of the same
    example) or ``IGNORE_INDEX``; ``keep`` is ``targets != IGNORE_INDEX``; ``rows[b, t]`` is the
    index of the example position ``t`` belongs to. ``attention_mask`` is ``None`` when no row is
    padded, which lets attention use its plain causal path. A packed batch has no padding; its
    ``position_ids`` restart at 0 with each example and ``cu_seq_lens`` (``n_rows + 1`` int32
    offsets) marks where each example starts, so attention stays inside it
    (:mod:`ftserve.training.packing`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    targets: torch.Tensor
    keep: torch.Tensor
    rows: torch.Tensor
    n_rows: int
    n_tokens: int
    n_targets: int
    position_ids: torch.Tensor | None = None
    cu_seq_lens: torch.Tensor | None = None
    max_length: int = 0

    @property
    def packed(self) -> bool:
        return self.cu_seq_lens is not None

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return replace(
            self,
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=move(self.attention_mask),
            targets=self.targets.to(device, non_blocking=True),
            keep=self.keep.to(device, non_blocking=True),
            rows=self.rows.to(device, non_blocking=True),
            position_ids=move(self.position_ids),
            cu_seq_lens=move(self.cu_seq_lens),
        )


def _targets(example: Example) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The example's ids, and the token each position predicts (``IGNORE_INDEX`` where nothing
    is trained, always at the last position)."""
    ids = torch.tensor(example.input_ids, dtype=torch.long)
    targets = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.tensor(example.target_mask[1:], dtype=torch.bool)
    targets[:-1] = torch.where(mask, ids[1:], IGNORE_INDEX)
    return ids, targets, int(mask.sum())


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    n_tokens = 0
    n_targets = 0
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        ids, row_targets, row_n_targets = _targets(example)
        input_ids[row, :length] = ids
        attention[row, :length] = 1
        targets[row, :length] = row_targets
        n_tokens += length
        n_targets += row_n_targets
    padded = n_tokens != len(examples) * width
    return Batch(
        input_ids=input_ids,
        attention_mask=attention if padded else None,
        targets=targets,
        keep=targets != IGNORE_INDEX,
        rows=torch.arange(len(examples)).unsqueeze(1).expand(-1, width),
        n_rows=len(examples),
        n_tokens=n_tokens,
        n_targets=n_targets,
    )


def pack(examples: Sequence[Example]) -> Batch:
    """All examples in one row, no padding (see :class:`Batch`)."""
    lengths = [len(e.input_ids) for e in examples]
    pieces = [_targets(e) for e in examples]
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + length)
    targets = torch.cat([t for _, t, _ in pieces]).unsqueeze(0)
    return Batch(
        input_ids=torch.cat([ids for ids, _, _ in pieces]).unsqueeze(0),
        attention_mask=None,
        targets=targets,
        keep=targets != IGNORE_INDEX,
        rows=torch.repeat_interleave(torch.arange(len(examples)), torch.tensor(lengths))[None],
        n_rows=len(examples),
        n_tokens=offsets[-1],
        n_targets=sum(n for _, _, n in pieces),
        position_ids=torch.cat([torch.arange(length) for length in lengths]).unsqueeze(0),
        cu_seq_lens=torch.tensor(offsets, dtype=torch.int32),
        max_length=max(lengths),
    )


def split_micro_batches(
    lengths: Sequence[int], max_tokens: int, *, packed: bool = False
) -> list[list[int]]:
    """Group consecutive items so each group's size stays within ``max_tokens``: its real
    tokens (sum of lengths) when ``packed``, else its padded size (count * longest). An item
    longer than that gets a group of its own. Which items a step holds never depends on this:
    only how they are fed to the model."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    longest = 0
    for index, length in enumerate(lengths):
        wider = max(longest, length)
        grown = size + length if packed else wider * (len(current) + 1)
        if current and grown > max_tokens:
            groups.append(current)
            current, wider, grown = [], length, length
        current.append(index)
        longest, size = wider, grown
    if current:
        groups.append(current)
    return groups
