"""What the training loop needs from an objective (supervised or DPO)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Outcome:
    """Loss and accuracy of a step or an evaluation, and how many tokens it processed."""

    loss: float
    accuracy: float
    n_tokens: int


class Objective(Protocol):
    max_tokens: int
    """The micro-batch budget; the trainer lowers it after an out-of-memory error."""

    def micro_batches(self, items: Sequence[Any]) -> int:
        """How many micro-batches ``items`` make under the current budget."""
        ...

    def train_step(self, items: Sequence[Any]) -> Outcome:
        """Forward and backward over one optimizer step's items (gradients accumulate)."""
        ...

    def evaluate(self, items: Sequence[Any]) -> Outcome: ...
