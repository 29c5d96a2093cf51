"""Grading one sample: a checked grader (see :mod:`.schemas`) gives a reward in [0, 1] and the
error flags OpenAI reports. A grader that fails on a sample scores 0 with its flag set: that is
a result, not an HTTP error."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from . import formula, sandbox
from .metrics import SCORERS
from .schemas import ERROR_FLAGS, RUN_ERRORS, RUN_METADATA, RUN_RESPONSE, named
from .templates import InvalidVariable, Sample, SampleParseError, render

Json = dict[str, Any]


@dataclass
class Outcome:
    reward: float
    scores: dict[str, float] = field(default_factory=dict)  # a multi grader's sub-scores
    errors: dict[str, Any] = field(default_factory=dict)  # the flags set (and details)


def _string_check(g: Json, sample: Sample, item: Json) -> float:
    text, reference = render(g["input"], sample, item), render(g["reference"], sample, item)
    op = g["operation"]
    if op == "eq":
        hit = text == reference
    elif op == "ne":
        hit = text != reference
    elif op == "like":
        hit = reference in text
    else:
        hit = reference.casefold() in text.casefold()
    return 1.0 if hit else 0.0


def _text_similarity(g: Json, sample: Sample, item: Json) -> float:
    text, reference = render(g["input"], sample, item), render(g["reference"], sample, item)
    return SCORERS[g["evaluation_metric"]](text, reference)


def _failed(flag: str, **details: Any) -> Outcome:
    return Outcome(0.0, errors={flag: True, **details})


def _python(g: Json, sample: Sample, item: Json) -> Outcome:
    try:
        output_json = sample.output_json()
    except SampleParseError:
        output_json = None
    given = {
        "output_text": sample.output_text,
        "output_json": output_json,
        "output_tools": sample.output_tools,
    }
    result = sandbox.run(g["source"], given, item)
    if result.server_error is not None:
        return _failed(
            "python_grader_server_error", python_grader_server_error_type=result.server_error
        )
    if result.error is not None or result.score is None:
        return _failed(
            "python_grader_runtime_error", python_grader_runtime_error_details=result.error
        )
    return Outcome(result.score)


def _single(g: Json, sample: Sample, item: Json) -> Outcome:
    try:
        if g["type"] == "python":
            return _python(g, sample, item)
        if g["type"] == "string_check":
            return Outcome(_string_check(g, sample, item))
        return Outcome(_text_similarity(g, sample, item))
    except SampleParseError:
        return _failed("sample_parse_error")
    except InvalidVariable:
        return _failed("invalid_variable_error")


def _multi(g: Json, sample: Sample, item: Json) -> Outcome:
    scores: dict[str, float] = {}
    errors: dict[str, Any] = {}
    for name, sub in named(g["graders"]).items():
        out = _single(sub, sample, item)
        scores[name] = out.reward
        errors.update(out.errors)
    try:
        reward = formula.evaluate(g["calculate_output"], scores)
    except formula.FormulaError:
        return Outcome(0.0, scores, {**errors, "formula_parse_error": True})
    except (ArithmeticError, ValueError, TypeError):
        return Outcome(0.0, scores, {**errors, "other_error": True})
    if not math.isfinite(reward):
        return Outcome(0.0, scores, {**errors, "other_error": True})
    return Outcome(reward, scores, errors)


def grade(g: Json, sample: Sample, item: Json) -> Outcome:
    return _multi(g, sample, item) if g["type"] == "multi" else _single(g, sample, item)


def run(g: Json, model_sample: str, item: Json) -> Json:
    """The run endpoint's response for one sample."""
    start = time.perf_counter()
    out = grade(g, Sample(model_sample), item)
    elapsed = time.perf_counter() - start
    flags = {f: (None if f.endswith(("_details", "_type")) else False) for f in ERROR_FLAGS}
    flags.update(out.errors)
    return RUN_RESPONSE.make(
        reward=out.reward,
        metadata=RUN_METADATA.make(
            name=g["name"],
            type=g["type"],
            execution_time=elapsed,
            scores=out.scores,
            token_usage=None,
            sampled_model_name=None,
            errors=RUN_ERRORS.make(**flags),
        ),
        sub_rewards=out.scores,
        model_grader_token_usage_per_model={},
    )
