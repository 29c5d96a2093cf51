"""An RFT job's step figures for the readers' tests (results file, CLI, dashboard, OpenAPI),
built with the trainer's own builder (events/rewards.py) from graded samples: a multi grader
with a string check and a model grader under it."""

from __future__ import annotations

from typing import Any

from ftserve.events import rewards

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
