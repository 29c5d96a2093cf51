"""Choosing each row's next token from the model's logits.

The transforms follow OpenAI's definitions, in this order: ``logit_bias`` is added to the logits;
``presence_penalty`` is subtracted once from every token this choice has already generated and
``frequency_penalty`` once per time it was generated (the prompt does not count); then
temperature 0 (or below ``GREEDY_BELOW``) takes the argmax, anything else samples from
``softmax(logits / T)`` restricted to the smallest set of most likely tokens whose probability
reaches ``top_p``.

Each sampling row owns a ``torch.Generator``: seeded with ``seed + choice index`` when the request
has a seed (so choices differ from one another but repeat across runs), from the OS otherwise.
Reported logprobs are the log-softmax of the raw logits, before any of these transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ftserve.inference.protocol import Sampling

_SEED_SPACE = 1 << 64
# Below this, softmax(logits / T) is the argmax to float32 precision, and T itself would round
# to 0 in float32 (0 / 0 = NaN for the top token): such temperatures decode greedily.
GREEDY_BELOW = 1e-4


class RowSampler:
    def __init__(self, sampling: Sampling, index: int, vocab_size: int, device: Any):
        self.temperature = float(sampling.temperature)
        if self.temperature < GREEDY_BELOW:
            self.temperature = 0.0
        self.top_p = float(sampling.top_p)
        self.presence = float(sampling.presence_penalty)
        self.frequency = float(sampling.frequency_penalty)
        self.logprobs = bool(sampling.logprobs)
        self.top_logprobs = int(sampling.top_logprobs) if sampling.logprobs else 0
        self.bias: torch.Tensor | None = None
        if sampling.logit_bias:
            self.bias = torch.zeros(vocab_size, dtype=torch.float32, device=device)
            for token, value in sampling.logit_bias:
                self.bias[token] += float(value)
        self.counts: torch.Tensor | None = None
        if self.presence or self.frequency:
            self.counts = torch.zeros(vocab_size, dtype=torch.float32, device=device)
        self.generator: torch.Generator | None = None
        if self.temperature > 0:
            self.generator = torch.Generator(device=device)
            if sampling.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed((sampling.seed + index) % _SEED_SPACE)

    @property
    def plain_greedy(self) -> bool:
        return self.temperature <= 0 and self.bias is None and self.counts is None

    def observe(self, token: int) -> None:
        if self.counts is not None:
            self.counts[token] += 1

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            logits = logits + self.bias
        if self.counts is not None:
            logits = logits - self.frequency * self.counts - self.presence * (self.counts > 0)
        return logits

    def choose(self, logits: torch.Tensor) -> int:
        logits = self.adjusted(logits)
        if self.temperature <= 0:
            return int(logits.argmax())
        # Subtracting the max first keeps tiny temperatures from overflowing to inf/NaN.
        scaled = (logits - logits.max()) / self.temperature
        probs = torch.softmax(scaled, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            before = sorted_probs.cumsum(0) - sorted_probs
            keep = before < self.top_p
            keep[0] = True
            picked = torch.multinomial(sorted_probs * keep, 1, generator=self.generator)
            return int(order[picked])
        return int(torch.multinomial(probs, 1, generator=self.generator))


def choose_tokens(logits: torch.Tensor, rows: Sequence[RowSampler]) -> list[int]:
    """One token per row of ``logits`` (float32, shape rows x vocab)."""
    if all(row.plain_greedy for row in rows):
        return [int(t) for t in logits.argmax(dim=-1).tolist()]
    return [row.choose(logits[i]) for i, row in enumerate(rows)]
