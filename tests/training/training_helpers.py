"""Data builders and a recording hooks object shared by the training tests."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ftserve.training.spec import (
    CheckpointInfo,
    Control,
    MemoryPlan,
    ResolvedHyperparameters,
    StepMetrics,
    TrainingSpec,
)

_TOPICS = ["cats", "dogs", "rain", "tea", "maps", "bread", "stars", "boats", "kites", "clocks"]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chat_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(_TOPICS), rng.choice(_TOPICS)
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "You answer briefly."},
                    {"role": "user", "content": f"Tell me about {a} and {b}."},
                    {"role": "assistant", "content": f"{a.capitalize()} and {b} are nice."},
                ]
            }
        )
    return rows


def completion_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"prompt": f"Topic: {t}\nSummary:", "completion": f" all about {t}."}
        for t in (rng.choice(_TOPICS) for _ in range(n))
    ]


def preference_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(_TOPICS)
        rows.append(
            {
                "input": {"messages": [{"role": "user", "content": f"Say something on {topic}."}]},
                "preferred_output": [{"role": "assistant", "content": f"I like {topic}."}],
                "non_preferred_output": [{"role": "assistant", "content": "No."}],
            }
        )
    return rows


def make_spec(
    tmp_path: Path,
    models_cache: Path,
    training_file: Path,
    *,
    name: str = "job",
    **overrides: Any,
) -> TrainingSpec:
    fields: dict[str, Any] = {
        "model": "ftserve-tiny",
        "training_file": training_file,
        "validation_file": None,
        "method": "supervised",
        "n_epochs": None,
        "batch_size": None,
        "learning_rate_multiplier": None,
        "beta": None,
        "seed": 0,
        "work_dir": tmp_path / name,
        "models_cache_dir": models_cache,
    }
    fields.update(overrides)
    return TrainingSpec(**fields)


def respec(spec: TrainingSpec, **changes: Any) -> TrainingSpec:
    return dataclasses.replace(spec, **changes)


class Recorder:
    """Hooks that record everything and answer each step from a callback on the step number
    (the worker's hooks answer from the job's status in the store instead)."""

    def __init__(self, decide: Callable[[int], Control] | None = None) -> None:
        self.decide = decide
        self.starts: list[tuple[ResolvedHyperparameters, int]] = []
        self.steps: list[StepMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.control_calls = 0
        self.memory: list[tuple[MemoryPlan, str | None]] = []
        self._last: Control = "continue"

    def on_start(self, hp: ResolvedHyperparameters, resumed_from: CheckpointInfo | None) -> Control:
        self.starts.append((hp, resumed_from.step if resumed_from is not None else 0))
        return "continue"

    def on_step(self, m: StepMetrics) -> Control:
        self.steps.append(m)
        self.control_calls += 1
        self._last = "continue" if self.decide is None else self.decide(m.step)
        return self._last

    def on_checkpoint(self, c: CheckpointInfo) -> Control:
        assert (c.path / "ftserve_checkpoint.json").is_file()
        self.checkpoints.append(c)
        return self._last

    def on_memory(self, plan: MemoryPlan, warning: str | None) -> None:
        self.memory.append((plan, warning))

    @property
    def losses(self) -> list[float]:
        return [m.train_loss for m in self.steps]
