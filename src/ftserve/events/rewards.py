"""A reinforcement fine-tuning step's figures, in the layout of OpenAI's RFT metrics events (its
RFT guide's appendix lists them): ``scores``, ``usage``, ``errors`` and ``timing`` objects with
one entry per grader, and the flat keys older readers use (``train_mean_reward``,
``full_valid_mean_reward``, …). Built by the training process from each graded sample; read by the
results file, the CLI and the dashboard. Torch-free.

The grader entries: the job's grader first, then, for a ``multi`` grader, each sub-grader under
its name (its reward is the sub-score the formula read). A sample's error flags belong to the
job's grader (a multi grader reports the flags of its sub-graders together, as OpenAI's run
endpoint does). ``valid_*`` figures are present only on the steps that ran a validation (every
``eval_interval`` steps and the last), computed over the whole validation file — hence "full
validation" in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The error flags a metrics event counts for every grader, and those of some types only.
COMMON_ERRORS = (
    "other_error",
    "sample_parse_error",
    "invalid_variable_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)
TYPE_ERRORS = {
    "python": ("python_grader_server_error", "python_grader_runtime_error"),
    "score_model": (
        "model_grader_server_error",
        "model_grader_refusal_error",
        "model_grader_parse_error",
    ),
    "label_model": (
        "model_grader_server_error",
        "model_grader_refusal_error",
        "model_grader_parse_error",
    ),
    "multi": ("formula_parse_error",),
}
PARSE_ERRORS = ("sample_parse_error", "model_grader_parse_error")


@dataclass(frozen=True)
class GraderInfo:
    name: str
    type: str
    model: str | None = None  # a model grader's judge


@dataclass(frozen=True)
class Graded:
    """One sampled answer, graded."""

    reward: float
    scores: Mapping[str, float] = field(default_factory=dict)  # a multi grader's sub-rewards
    errors: Mapping[str, Any] = field(default_factory=dict)  # flags set (and their details)
    usage: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # judge -> tokens
    latency: float = 0.0  # seconds of grading, the batch's time shared out
    completion_tokens: int = 0  # the answer's


def graders_of(grader: Mapping[str, Any]) -> list[GraderInfo]:
    """The entries a job's grader has in its metrics: itself, then a multi's sub-graders."""
    out = [GraderInfo(grader["name"], grader["type"], grader.get("model"))]
    if grader["type"] == "multi":
        subs = grader["graders"]
        items = subs.items() if isinstance(subs, Mapping) else [(s["name"], s) for s in subs]
        out += [GraderInfo(name, g["type"], g.get("model")) for name, g in items]
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class SplitFigures:
    """One split's figures (a step's training answers, or a validation run's)."""

    samples: Sequence[Graded]
    graders: Sequence[GraderInfo]

    @property
    def reward_mean(self) -> float:
        return _mean([g.reward for g in self.samples])

    @property
    def parse_error_mean(self) -> float:
        return _mean(
            [1.0 if any(g.errors.get(f) for f in PARSE_ERRORS) else 0.0 for g in self.samples]
        )

    @property
    def unresponsive_mean(self) -> float:
        return _mean(
            [1.0 if g.errors.get("unresponsive_reward_error") else 0.0 for g in self.samples]
        )

    def grader_reward(self, index: int) -> float:
        if index == 0:
            return self.reward_mean
        name = self.graders[index].name
        return _mean([float(g.scores.get(name, 0.0)) for g in self.samples])

    def errors(self, prefix: str) -> list[dict[str, Any]]:
        top = self.graders[0]
        flags = COMMON_ERRORS + TYPE_ERRORS.get(top.type, ())
        if top.type == "multi":
            for sub in self.graders[1:]:
                flags += tuple(f for f in TYPE_ERRORS.get(sub.type, ()) if f not in flags)
        entry: dict[str, Any] = {"name": top.name, "type": top.type}
        for flag in flags:
            hits = [1.0 if g.errors.get(flag) else 0.0 for g in self.samples]
            entry[f"{prefix}_{flag}_mean"] = _mean(hits)
            entry[f"{prefix}_{flag}_count"] = int(sum(hits))
        return [entry]

    def usage(self, model: str) -> tuple[float, int, float, int]:
        """Prompt tokens (mean per sample, total), completion tokens (the same) of a judge."""
        prompt = [g.usage[model]["prompt_tokens"] for g in self.samples if model in g.usage]
        done = [g.usage[model]["completion_tokens"] for g in self.samples if model in g.usage]
        return _mean(prompt), sum(prompt), _mean(done), sum(done)

    def token_usage(self) -> dict[str, dict[str, int]]:
        total: dict[str, dict[str, int]] = {}
        for g in self.samples:
            for model, counts in g.usage.items():
                mine = total.setdefault(model, {})
                for key, n in counts.items():
                    mine[key] = mine.get(key, 0) + int(n)
        return total

    @property
    def completion_tokens_mean(self) -> float:
        return _mean([float(g.completion_tokens) for g in self.samples])

    @property
    def latency_mean(self) -> float:
        return _mean([g.latency for g in self.samples])


def step_data(
    step: int,
    total_steps: int,
    train: SplitFigures,
    valid: SplitFigures | None,
    timing: Mapping[str, float],
) -> dict[str, Any]:
    """A metrics event's ``data`` (``timing``: seconds of ``sampling``, ``training``, ``eval``
    and ``full_iteration``)."""
    graders = train.graders
    splits = [("train", train)] + ([("valid", valid)] if valid is not None else [])
    scores: dict[str, Any] = {
        "train_reward_mean": train.reward_mean,
        "valid_reward_mean": valid.reward_mean if valid is not None else None,
        "graders": [
            {
                "name": g.name,
                "type": g.type,
                "train_reward_mean": train.grader_reward(i),
                "valid_reward_mean": valid.grader_reward(i) if valid is not None else None,
            }
            for i, g in enumerate(graders)
        ],
    }
    usage_graders = []
    for g in graders:
        if g.model is None:
            continue
        entry: dict[str, Any] = {"name": g.name, "type": g.type, "model": g.model}
        for prefix, split in splits:
            p_mean, p_count, c_mean, c_count = split.usage(g.model)
            entry[f"{prefix}_prompt_tokens_mean"] = p_mean
            entry[f"{prefix}_prompt_tokens_count"] = p_count
            entry[f"{prefix}_completion_tokens_mean"] = c_mean
            entry[f"{prefix}_completion_tokens_count"] = c_count
        usage_graders.append(entry)
    samples: dict[str, Any] = {
        # Open models here do not reason apart from their answer: no reasoning tokens.
        "train_reasoning_tokens_mean": 0.0,
        "train_reasoning_tokens_count": 0,
    }
    if valid is not None:
        samples.update(valid_reasoning_tokens_mean=0.0, valid_reasoning_tokens_count=0)
    errors = train.errors("train")
    if valid is not None:
        errors[0].update(
            {k: v for k, v in valid.errors("valid")[0].items() if k not in ("name", "type")}
        )
    return {
        "step": step,
        "total_steps": total_steps,
        "scores": scores,
        "usage": {"graders": usage_graders, "samples": samples},
        "errors": {"graders": errors},
        "timing": {
            "step": {
                k: float(timing.get(k, 0.0))
                for k in ("sampling", "training", "eval", "full_iteration")
            },
            "graders": [
                {
                    "name": g.name,
                    "type": g.type,
                    "train_execution_latency_mean": train.latency_mean,
                    "valid_execution_latency_mean": valid.latency_mean if valid else None,
                }
                for g in graders[:1]
            ],
        },
        "train_mean_reward": train.reward_mean,
        "full_valid_mean_reward": valid.reward_mean if valid is not None else None,
        "full_valid_mean_parse_error": valid.parse_error_mean if valid is not None else None,
        "reasoning_tokens_mean": 0.0,
        "completion_tokens_mean": train.completion_tokens_mean,
        "valid_reasoning_tokens_mean": 0.0 if valid is not None else None,
        "mean_unresponsive_rewards": train.unresponsive_mean,
        "model_graders_token_usage": train.token_usage(),
    }


def message(data: Mapping[str, Any]) -> str:
    """The event's text, as OpenAI writes it (the odd space before the first comma included)."""
    text = f"Step {data['step']}/{data['total_steps']} , "
    text += f"train mean reward={data['train_mean_reward']:.2f}"
    if data.get("full_valid_mean_reward") is not None:
        text += (
            f", full validation mean reward={data['full_valid_mean_reward']:.2f}"
            f", full validation mean parse error={data['full_valid_mean_parse_error']:.2f}"
        )
    return text


# jobs/method.py's name for the method whose steps report rewards.
METHOD = "reinforcement"
# The flat keys the readers plot (the dashboard's charts, the CLI's bar), by split of
# events/metrics.py: the training samples' mean reward, the whole validation file's.
TRAIN_REWARD = "train_mean_reward"
VALID_REWARD = "full_valid_mean_reward"
COMPLETION_TOKENS = "completion_tokens_mean"


def is_reward_data(data: Mapping[str, Any]) -> bool:
    """Whether a metrics event's ``data`` is an RFT step's (rather than a loss step's)."""
    return TRAIN_REWARD in data


CHECKPOINT_KEYS = ("train_reward_mean", "valid_reward_mean")


def checkpoint_metrics(data: Mapping[str, Any]) -> dict[str, Any]:
    """An RFT checkpoint's ``metrics``: the SDK's fields (``step`` a number as OpenAI writes it;
    the losses and token accuracies null: they mean nothing for sampled answers) and the
    step's rewards."""
    from .metrics import CHECKPOINT_FIELDS

    out: dict[str, Any] = {f.name: None for f in CHECKPOINT_FIELDS}
    out["step"] = float(data["step"])
    out["train_reward_mean"] = data["scores"]["train_reward_mean"]
    out["valid_reward_mean"] = data["scores"]["valid_reward_mean"]
    return out


def is_reward_checkpoint(metrics: Mapping[str, Any]) -> bool:
    """Whether a stored checkpoint's ``metrics`` are an RFT checkpoint's."""
    return "train_reward_mean" in metrics


def stored_checkpoint_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """An RFT checkpoint's ``metrics`` as the API shows them, from what the store holds: every
    key of :func:`checkpoint_metrics`, in its order (the loss forms drop null figures; this
    one keeps them, as OpenAI writes them)."""
    from .metrics import CHECKPOINT_FIELDS, STEP

    out: dict[str, Any] = {f.name: None for f in CHECKPOINT_FIELDS}
    out[STEP.name] = float(metrics[STEP.name])
    for key in CHECKPOINT_KEYS:
        out[key] = metrics.get(key)
    return out


# The JSON Schemas of the two objects above, for the OpenAPI document (events/schemas.py and
# checkpoints/schemas.py put them beside the loss forms of events/metrics.py).
_NUMBER: dict[str, Any] = {"type": "number"}
_MAYBE: dict[str, Any] = {"type": ["number", "null"]}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _entry(properties: dict[str, Any], pattern: str | None = None) -> dict[str, Any]:
    """A per-grader entry: its ``name`` and ``type``, its figures; ``pattern`` matches the
    names of the figures whose set depends on the grader's type and the step (``valid_*``)."""
    schema = _obj({"name": {"type": "string"}, "type": {"type": "string"}, **properties})
    if pattern is not None:
        schema["patternProperties"] = {pattern: _NUMBER}
    return {"type": "array", "items": schema}


def _doc(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {**schema, "description": text}


def step_data_schema() -> dict[str, Any]:
    """The JSON Schema of :func:`step_data`'s object: every key always there, a ``valid_*``
    figure null (or, in the per-grader entries, absent) on a step without validation."""
    tokens = r"^(train|valid)_(prompt|completion)_tokens_(mean|count)$"
    return _doc(
        _obj(
            {
                "step": _doc(_COUNT, "The optimizer step these figures are of, 1-based."),
                "total_steps": _doc(_COUNT, "The job's optimizer steps in all."),
                "scores": _obj(
                    {
                        "train_reward_mean": _NUMBER,
                        "valid_reward_mean": _MAYBE,
                        "graders": _entry(
                            {"train_reward_mean": _NUMBER, "valid_reward_mean": _MAYBE}
                        ),
                    }
                ),
                "usage": _obj(
                    {
                        "graders": _entry({"model": {"type": "string"}}, tokens),
                        "samples": {
                            "type": "object",
                            "patternProperties": {
                                r"^(train|valid)_reasoning_tokens_(mean|count)$": _NUMBER
                            },
                            "additionalProperties": False,
                        },
                    }
                ),
                "errors": _obj({"graders": _entry({}, r"^(train|valid)_[a-z_]+_(mean|count)$")}),
                "timing": _obj(
                    {
                        "step": _obj(
                            {k: _NUMBER for k in ("sampling", "training", "eval", "full_iteration")}
                        ),
                        "graders": _entry(
                            {
                                "train_execution_latency_mean": _NUMBER,
                                "valid_execution_latency_mean": _MAYBE,
                            }
                        ),
                    }
                ),
                "train_mean_reward": _doc(_NUMBER, "Mean reward of this step's samples."),
                "full_valid_mean_reward": _doc(
                    _MAYBE, "Mean reward over the whole validation file; validation steps only."
                ),
                "full_valid_mean_parse_error": _MAYBE,
                "reasoning_tokens_mean": _NUMBER,
                "completion_tokens_mean": _NUMBER,
                "valid_reasoning_tokens_mean": _MAYBE,
                "mean_unresponsive_rewards": _NUMBER,
                "model_graders_token_usage": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": _COUNT},
                },
            }
        ),
        "A reinforcement fine-tuning step's figures, in the layout of OpenAI's RFT events.",
    )


def checkpoint_metrics_schema() -> dict[str, Any]:
    """The JSON Schema of :func:`checkpoint_metrics`' object."""
    from .metrics import CHECKPOINT_FIELDS, STEP

    nulls = {f.name: {"type": "null"} for f in CHECKPOINT_FIELDS if f is not STEP}
    return _doc(
        _obj(
            {
                **nulls,
                STEP.name: {"type": "number"},
                "train_reward_mean": _doc(_NUMBER, "Mean reward of the step's samples."),
                "valid_reward_mean": _doc(
                    _MAYBE, "Mean reward over the whole validation file at that step."
                ),
            }
        ),
        "A reinforcement fine-tuning checkpoint's figures: the losses and token accuracies "
        "null (they mean nothing for sampled answers), the step's rewards.",
    )
