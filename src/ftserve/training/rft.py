"""Reinforcement fine-tuning: the step loop of a ``reinforcement`` job.

One step takes ``batch_size`` prompts (in the same seeded order as a supervised job's examples),
samples ``samples_per_prompt`` answers for each from the policy's current weights
(:mod:`.rollout`, one batch), grades every answer with the job's grader (one batch:
:func:`ftserve.graders.grading.grade_batch`, which runs a python grader's whole batch in one
sandbox), and updates the policy with GRPO (:mod:`.grpo`). Validation (every ``eval_interval``
steps and the last) samples ``eval_samples`` answers for every prompt of the validation file and
grades them the same way; its mean reward is ``valid_reward_mean``. A checkpoint is saved at each
validation step (the worker keeps the best three by ``valid_reward_mean``, and the newest, which
a resume starts from).

Determinism: each step's draws come from a generator seeded by ``(seed, step)`` (and the
validation's by ``(seed, step, "valid")``), not from a running state, so a resumed job draws
the same answers an uninterrupted one would; the weights, optimizer and schedule are restored
from the checkpoint as for supervised jobs. Graders that call a judge model get the judge's
answer, which is deterministic only if the judge's sampling is.

What ``reasoning_effort`` does: nothing on the models ftserve trains today (none reasons apart
from its answer); it is recorded and echoed.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ftserve.events import rewards
from ftserve.graders import grading
from ftserve.graders.judge import Chat
from ftserve.graders.templates import Sample
from ftserve.modeling.chat import normalize_message, render_chat
from ftserve.modeling.chat_templates import CHATML_END_OF_TURN
from ftserve.training import rollout
from ftserve.training.data import Example, read_rows
from ftserve.training.grpo import Scored, advantages
from ftserve.training.spec import RewardMetrics, TrainingFailed


@dataclass(frozen=True)
class Prompt:
    """One row of an RFT file: the prompt, rendered for generation, and the grader's item."""

    input_ids: list[int]
    item: dict[str, Any]


def _stop_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    end = tokenizer.convert_tokens_to_ids(CHATML_END_OF_TURN)
    if isinstance(end, int) and end >= 0 and end != tokenizer.unk_token_id:
        ids.add(end)
    return frozenset(ids)


def load_prompts(
    path: Path, tokenizer: Any, max_seq_len: int, *, what: str = "training file"
) -> list[Prompt]:
    prompts: list[Prompt] = []
    for index, row in enumerate(read_rows(path, what=what)):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} has no 'messages'; reinforcement jobs need "
                "prompts: messages ending with a user message.",
            )
        try:
            normal = [normalize_message(m) for m in messages]
        except ValueError as exc:
            raise TrainingFailed(
                "invalid_training_data", f"Example {index + 1} of the {what}: {exc}."
            ) from exc
        if normal[-1]["role"] != "user":
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} does not end with a user message; "
                "reinforcement jobs need prompts, not answers.",
            )
        for m in normal:  # chat templates know system, not OpenAI's newer name for it
            if m["role"] == "developer":
                m["role"] = "system"
        text = render_chat(tokenizer, normal, row.get("tools"), add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= max_seq_len:
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} has a prompt of {len(ids)} tokens, which "
                f"leaves no room for an answer within max_seq_len={max_seq_len}.",
            )
        item = {k: v for k, v in row.items() if k != "messages"}
        prompts.append(Prompt(list(ids), item))
    return prompts


def draw_seed(seed: int, step: int, split: str) -> int:
    digest = hashlib.sha256(f"ftserve-rft:{seed}:{step}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Round:
    """Sampled and graded answers of one batch of prompts."""

    graded: list[rewards.Graded]
    rollouts: list[rollout.Rollout]
    sampling: float
    grading: float


class RftSteps:
    """What a reinforcement job adds to the trainer: sampling, grading, and the step's figures."""

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: Any,
        grader: dict[str, Any],
        response_format: dict[str, Any] | None,
        samples_per_prompt: int,
        eval_samples: int,
        max_new_tokens: int,
        max_seq_len: int,
        seed: int,
        device: torch.device,
        chat: Chat | None,
        autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.grader = grader
        self.samples_per_prompt = samples_per_prompt
        self.eval_samples = eval_samples
        self.max_new_tokens = max_new_tokens
        self.max_seq_len = max_seq_len
        self.seed = seed
        self.device = device
        self.chat = chat
        self.autocast = autocast  # sampling runs in the training's precision (bf16 on GPUs)
        self.stop_ids = _stop_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.graders = rewards.graders_of(grader)
        self.grammar: str | None = None
        self.grammars: Any = None
        if response_format is not None:
            from ftserve.completions.structured import check_response_format, grammar_for
            from ftserve.modeling.constraint import Grammars

            checked = check_response_format(response_format, "response_format")
            self.grammar = grammar_for(checked, None, None)
            self.grammars = Grammars(tokenizer, self.stop_ids)

    def play(self, prompts: Sequence[Prompt], per_prompt: int, seed: int) -> Round:
        """Sample ``per_prompt`` answers to each prompt and grade them."""
        start = time.perf_counter()
        longest = max(len(p.input_ids) for p in prompts)
        room = max(1, min(self.max_new_tokens, self.max_seq_len - longest))
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling
        try:
            with self.autocast():
                drawn = rollout.sample(
                    self.model,
                    [p.input_ids for p in prompts],
                    per_prompt=per_prompt,
                    max_new_tokens=room,
                    stop_ids=self.stop_ids,
                    pad_id=self.pad_id,
                    generator=torch.Generator().manual_seed(seed),
                    device=self.device,
                    grammar=self.grammar,
                    grammars=self.grammars,
                )
        finally:
            self.model.train(was_training)
        sampled = time.perf_counter()
        texts = [self.tokenizer.decode(r.tokens, skip_special_tokens=True) for r in drawn]
        items = [prompts[r.prompt_index].item for r in drawn]
        outcomes = grading.grade_batch(self.grader, [Sample(t) for t in texts], items, self.chat)
        graded_at = time.perf_counter()
        share = (graded_at - sampled) / max(1, len(drawn))
        graded = [
            rewards.Graded(
                reward=o.reward,
                scores=o.scores,
                errors=o.errors,
                usage=o.usage,
                latency=share,
                completion_tokens=len(r.tokens),
            )
            for o, r in zip(outcomes, drawn, strict=True)
        ]
        return Round(graded, drawn, sampled - start, graded_at - sampled)

    def scored(self, prompts: Sequence[Prompt], played: Round) -> list[Scored]:
        """The answers as training sequences with their group-relative advantages."""
        values = advantages([g.reward for g in played.graded], self.samples_per_prompt)
        out: list[Scored] = []
        for r, advantage in zip(played.rollouts, values, strict=True):
            prompt = prompts[r.prompt_index].input_ids
            answer = list(r.tokens)
            if r.stop_token is not None:
                answer.append(r.stop_token)  # ending is part of what is learned
            ids = (prompt + answer)[: self.max_seq_len]
            mask = [False] * len(prompt) + [True] * (len(ids) - len(prompt))
            out.append(Scored(Example(ids, mask), advantage))
        return out

    def figures(self, played: Round) -> rewards.SplitFigures:
        return rewards.SplitFigures(played.graded, self.graders)


def reward_metrics(
    step: int,
    total_steps: int,
    train: rewards.SplitFigures,
    valid: rewards.SplitFigures | None,
    timing: dict[str, float],
) -> RewardMetrics:
    return RewardMetrics(
        step, total_steps, rewards.step_data(step, total_steps, train, valid, timing)
    )
