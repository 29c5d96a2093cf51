"""An RFT job's step figures for the readers' tests (results file, CLI, dashboard, OpenAPI),
built with the trainer's own builder (events/rewards.py) from graded samples: a multi grader
with a string check and a model grader under it; and such a job planted in a server's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftserve.events import messages, rewards
from tests.api.planted import Planted, plant
from tests.conftest import Server

GRADER = {
    "type": "multi",
    "name": "overall",
    "calculate_output": "0.5 * exact + 0.5 * judge",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "",
            "reference": "",
            "operation": "eq",
        },
        "judge": {"type": "score_model", "name": "judge", "model": "judge-model", "input": []},
    },
}
GRADERS = rewards.graders_of(GRADER)
TIMING = {"sampling": 1.5, "training": 0.5, "eval": 0.25, "full_iteration": 2.25}


def _sample(reward: float, *, parse_error: bool = False, tokens: int = 10) -> rewards.Graded:
    return rewards.Graded(
        reward=reward,
        scores={"exact": 1.0 if reward >= 0.5 else 0.0, "judge": reward},
        errors={"sample_parse_error": True} if parse_error else {},
        usage={"judge-model": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}},
        latency=0.125,
        completion_tokens=tokens,
    )


def figures(*rewards_: float, parse_errors: int = 0) -> rewards.SplitFigures:
    samples = [
        _sample(r, parse_error=i < parse_errors, tokens=8 + 2 * i) for i, r in enumerate(rewards_)
    ]
    return rewards.SplitFigures(samples, GRADERS)


def step(
    n: int, total: int, train: tuple[float, ...], valid: tuple[float, ...] | None = None
) -> dict[str, Any]:
    """A step's ``data``: its training samples' rewards, and its validation samples' (one of
    them a parse error) when the step ran a validation."""
    valid_figures = None if valid is None else figures(*valid, parse_errors=1)
    return rewards.step_data(n, total, figures(*train), valid_figures, TIMING)


# Steps 2 and 4 run a validation, 3 and 5 do not: a reader that shows the last validation
# reward at step 5 must keep step 4's.
STEPS = {
    1: step(1, 5, (0.0, 0.5)),
    2: step(2, 5, (0.5, 0.5), valid=(0.0, 1.0)),
    3: step(3, 5, (0.5, 1.0)),
    4: step(4, 5, (1.0, 0.5), valid=(1.0, 1.0, 0.5, 0.5)),
    5: step(5, 5, (1.0, 1.0)),
}
CHECKPOINT_STEPS = (2, 4, 5)


def plant_rft(where: Path | Server) -> Planted:
    """A succeeded RFT job of :data:`STEPS`, its events and checkpoints as the trainer writes
    them (the job's method is the planted one: the readers go by the figures' layout)."""
    events = [
        messages.training_started(),
        *(messages.reward_metrics(data) for data in STEPS.values()),
        messages.succeeded(),
    ]

    def metrics(n: int) -> dict[str, Any]:
        return rewards.checkpoint_metrics(STEPS[n])

    return plant(where, steps=CHECKPOINT_STEPS, metrics_of=metrics, events=events)
