"""The trainer's step loop, for a reinforcement job (see :mod:`.rft` for what a step does)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ftserve.graders.judge import Chat
from ftserve.training.grpo import Scored
from ftserve.training.hyperparameters import AUTO_MAX_ANSWER
from ftserve.training.objective import Outcome
from ftserve.training.rft import Prompt, RftSteps, draw_seed, reward_metrics
from ftserve.training.spec import (
    CheckpointKind,
    Metrics,
    TrainingFailed,
    TrainingHooks,
    TrainingSpec,
)
from ftserve.training.trainer import _Job


def judge_chat(spec: TrainingSpec) -> Chat | None:
    """The judge model graders call, when the worker said where (else they fail per sample)."""
    if spec.judge_url is None:
        return None
    from ftserve.graders.remote import chat_at

    return chat_at(spec.judge_url, spec.judge_api_key)


def _check_sandbox(grader: dict[str, Any]) -> None:
    """A python grader on a worker that cannot sandbox it would score every answer 0 with a
    server error: the job fails at once instead, saying what to install."""
    subs = grader.get("graders") if grader["type"] == "multi" else None
    graders = list(subs.values()) if isinstance(subs, dict) else list(subs or [grader])
    if any(g.get("type") == "python" for g in graders):
        from ftserve.graders import sandbox

        if not sandbox.available():
            raise TrainingFailed(
                "grader_unavailable",
                "This worker cannot run python graders: their sandbox needs bubblewrap "
                "(apt-get install bubblewrap) and unprivileged namespaces.",
            )


class RftJob(_Job):
    def __init__(self, spec: TrainingSpec, hooks: TrainingHooks) -> None:
        if spec.grader is None:
            raise TrainingFailed("invalid_training_data", "A reinforcement job needs a grader.")
        _check_sandbox(spec.grader)
        super().__init__(spec, hooks)
        if not self.valid_items:
            raise TrainingFailed(
                "invalid_training_data",
                "A reinforcement job needs a validation file: its rewards choose the "
                "checkpoints kept.",
            )
        hp = self.hp
        assert hp.eval_interval and hp.eval_samples and hp.samples_per_prompt
        self.eval_interval = hp.eval_interval
        self.rft = RftSteps(
            model=self.model,
            tokenizer=self.tokenizer,
            grader=spec.grader,
            response_format=spec.response_format,
            samples_per_prompt=hp.samples_per_prompt,
            eval_samples=hp.eval_samples,
            max_new_tokens=spec.max_completion_tokens or AUTO_MAX_ANSWER,
            max_seq_len=spec.max_seq_len,
            seed=spec.seed,
            device=self.choice.device,
            chat=judge_chat(spec),
            autocast=self._autocast,
        )
        self._train: Any = None
        self._timing: dict[str, float] = {}

    def _largest_step_tokens(self) -> int:
        # A step trains on every sampled answer: prompt and answer, each of its rows.
        answer = self.spec.max_completion_tokens or AUTO_MAX_ANSWER
        longest = max(len(p.input_ids) for p in self.train_items) + answer
        return longest * self.hp.batch_size * (self.hp.samples_per_prompt or 1)

    def _step(self, step: int, items: Sequence[Any]) -> Outcome:
        start = time.perf_counter()
        prompts: Sequence[Prompt] = items
        per_prompt = self.hp.samples_per_prompt or 1
        played = self.rft.play(prompts, per_prompt, draw_seed(self.spec.seed, step, "train"))
        scored: list[Scored] = self.rft.scored(prompts, played)
        trained_at = time.perf_counter()
        outcome = super()._step(step, scored)
        self._train = self.rft.figures(played)
        self._timing = {
            "sampling": played.sampling,
            "training": time.perf_counter() - trained_at,
            "started": start,
        }
        return outcome

    def _metrics(self, step: int, outcome: Outcome) -> Metrics:
        last = step == self.hp.total_steps
        valid = None
        eval_seconds = 0.0
        if step % self.eval_interval == 0 or last:
            began = time.perf_counter()
            played = self.rft.play(
                self.valid_items,
                self.hp.eval_samples or 1,
                draw_seed(self.spec.seed, step, "valid"),
            )
            valid = self.rft.figures(played)
            eval_seconds = time.perf_counter() - began
        timing = {
            "sampling": self._timing["sampling"],
            "training": self._timing["training"],
            "eval": eval_seconds,
            "full_iteration": time.perf_counter() - self._timing["started"],
        }
        return reward_metrics(step, self.hp.total_steps, self._train, valid, timing)

    def _checkpoint_due(self, step: int, batch_index: int) -> CheckpointKind | None:
        # Each validation step's weights are a checkpoint: the best by validation reward are kept.
        due = step % self.eval_interval == 0 or step == self.hp.total_steps
        return "eval" if due else None
