"""Sampling an RFT step's answers from the policy's current weights.

Why a loop of our own rather than ``model.generate``: a step samples ``G`` answers for each of
its prompts, so the prompt is computed once and its key/value cache copied ``G`` times (the
prefill is the costly part of a short answer); rows that finished are dropped from the batch at
once instead of being computed to the longest answer; each row may follow a grammar (a
``response_format`` JSON schema, through :mod:`ftserve.modeling.constraint`); and every draw
comes from one explicit generator, so the answers depend only on the weights and the step's seed
— a resumed job draws exactly what an uninterrupted one would. ``bench/rft_bench.py`` measures it
against ``model.generate`` on the same prompts.

Answers are drawn at temperature 1 (the policy's own distribution, which the policy gradient
assumes), with no top-p cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ftserve.modeling.constraint import Grammars, TokenConstraint, constrain

FinishReason = str  # "stop" (a stop token) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class Rollout:
    """One sampled answer: its tokens (the stop token excluded) and why it ended."""

    prompt_index: int
    tokens: list[int]
    finish_reason: FinishReason
    stop_token: int | None = None  # the stop token that ended it ("stop")


def _left_padded(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def sample(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    per_prompt: int,
    max_new_tokens: int,
    stop_ids: frozenset[int],
    pad_id: int,
    generator: torch.Generator,
    device: torch.device,
    grammar: str | None = None,
    grammars: Grammars | None = None,
) -> list[Rollout]:
    """``per_prompt`` answers for each prompt, in prompt order (answers of a prompt together).

    ``model`` is used as it is (the caller puts it in eval mode); ``generator`` is a CPU
    generator whose state is the only source of randomness."""
    from transformers import DynamicCache

    ids, mask = _left_padded(prompts, pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
    )
    # The prompt was computed once; each of its answers starts from a copy of its cache.
    expand = torch.arange(len(prompts), device=device).repeat_interleave(per_prompt)
    cache.batch_repeat_interleave(per_prompt)
    logits = out.logits[:, -1, :].float().index_select(0, expand)
    mask = mask.index_select(0, expand)
    next_position = positions[:, -1:].index_select(0, expand) + 1
    rows = len(expand)
    live = list(range(rows))  # the answer each batch row belongs to
    answers: list[list[int]] = [[] for _ in range(rows)]
    reasons: list[FinishReason] = ["length"] * rows
    stopped_by: list[int | None] = [None] * rows
    constraints: list[TokenConstraint | None] = [None] * rows
    if grammar is not None:
        assert grammars is not None
        constraints = [grammars.constraint(grammar) for _ in range(rows)]
    for _ in range(max_new_tokens):
        rules = [(row, rule) for row, a in enumerate(live) if (rule := constraints[a]) is not None]
        if rules:
            logits = constrain(logits, rules)
        probs = torch.softmax(logits, dim=-1).cpu()
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1).tolist()
        keep: list[int] = []
        for row, (answer, token) in enumerate(zip(live, tokens, strict=True)):
            rule = constraints[answer]
            if token in stop_ids:
                reasons[answer] = "stop"
                stopped_by[answer] = token
                continue
            answers[answer].append(token)
            if rule is not None:
                rule.advance(token)
            keep.append(row)
        if not keep or len(answers[live[keep[0]]]) >= max_new_tokens:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask = mask.index_select(0, index)
            next_position = next_position.index_select(0, index)
            live = [live[r] for r in keep]
        last = torch.tensor([[answers[a][-1]] for a in live], device=device)
        mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], 1)
        out = model(
            input_ids=last,
            attention_mask=mask,
            position_ids=next_position,
            cache=cache,
            use_cache=True,
        )
        next_position = next_position + 1
        logits = out.logits[:, -1, :].float()
    return [Rollout(i // per_prompt, answers[i], reasons[i], stopped_by[i]) for i in range(rows)]
