"""Grading one sample: a checked grader (see :mod:`.schemas`) gives a reward in [0, 1] and the
error flags OpenAI reports. A grader that fails on a sample scores 0 with its flag set: that is
a result, not an HTTP error."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import formula, judge, sandbox
from .metrics import SCORERS
from .schemas import ERROR_FLAGS, RUN_ERRORS, RUN_METADATA, RUN_RESPONSE, named
from .templates import InvalidVariable, Sample, SampleParseError, render

Json = dict[str, Any]


@dataclass
class Outcome:
    reward: float
    scores: dict[str, float] = field(default_factory=dict)  # a multi grader's sub-scores
    errors: dict[str, Any] = field(default_factory=dict)  # the flags set (and details)
    usage: dict[str, Json] = field(default_factory=dict)  # judge model -> its token counts


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


def _given(sample: Sample) -> Json:
    try:
        output_json = sample.output_json()
    except SampleParseError:
        output_json = None
    return {
        "output_text": sample.output_text,
        "output_json": output_json,
        "output_tools": sample.output_tools,
    }


def _python(g: Json, samples: list[Sample], items: list[Json]) -> list[Outcome]:
    """A python grader on a batch: one sandbox for all of it (see :func:`.sandbox.run_many`)."""
    jobs = [(_given(s), i) for s, i in zip(samples, items, strict=True)]
    results = sandbox.run_many(g["source"], jobs)
    return [_python_outcome(r) for r in results]


def _python_outcome(result: sandbox.Result) -> Outcome:
    if result.server_error is not None:
        return _failed(
            "python_grader_server_error", python_grader_server_error_type=result.server_error
        )
    if result.error is not None or result.score is None:
        return _failed(
            "python_grader_runtime_error", python_grader_runtime_error_details=result.error
        )
    return Outcome(result.score)


def _judged(g: Json, sample: Sample, item: Json, chat: judge.Chat | None) -> Outcome:
    if chat is None:
        return _failed("model_grader_server_error", model_grader_server_error_details="no judge")
    verdict = judge.grade(g, sample, item, chat)
    usage = {} if verdict.usage is None else {g["model"]: verdict.usage}
    return Outcome(verdict.reward, errors=verdict.errors, usage=usage)


def _single(
    g: Json, sample: Sample, item: Json, chat: judge.Chat | None, ran: Outcome | None = None
) -> Outcome:
    """One grader on one sample; ``ran``: a python grader's outcome, already graded in a batch."""
    try:
        if g["type"] in ("score_model", "label_model"):
            return _judged(g, sample, item, chat)
        if g["type"] == "python":
            return ran if ran is not None else _python(g, [sample], [item])[0]
        if g["type"] == "string_check":
            return Outcome(_string_check(g, sample, item))
        return Outcome(_text_similarity(g, sample, item))
    except SampleParseError:
        return _failed("sample_parse_error")
    except InvalidVariable:
        return _failed("invalid_variable_error")


def _add(usage: dict[str, Json], more: dict[str, Json]) -> None:
    for model, counts in more.items():
        mine = usage.setdefault(model, dict.fromkeys(counts, 0))
        for key, n in counts.items():
            mine[key] += n


def _multi(
    g: Json, sample: Sample, item: Json, chat: judge.Chat | None, ran: dict[str, Outcome]
) -> Outcome:
    scores: dict[str, float] = {}
    errors: dict[str, Any] = {}
    usage: dict[str, Json] = {}
    for name, sub in named(g["graders"]).items():
        out = _single(sub, sample, item, chat, ran.get(name))
        scores[name] = out.reward
        errors.update(out.errors)
        _add(usage, out.usage)
    try:
        reward = formula.evaluate(g["calculate_output"], scores)
    except formula.FormulaError:
        return Outcome(0.0, scores, {**errors, "formula_parse_error": True}, usage)
    except (ArithmeticError, ValueError, TypeError):
        return Outcome(0.0, scores, {**errors, "other_error": True}, usage)
    if not math.isfinite(reward):
        return Outcome(0.0, scores, {**errors, "other_error": True}, usage)
    return Outcome(reward, scores, errors, usage)


def grade(g: Json, sample: Sample, item: Json, chat: judge.Chat | None = None) -> Outcome:
    if g["type"] == "multi":
        return _multi(g, sample, item, chat, {})
    return _single(g, sample, item, chat)


def grade_batch(
    g: Json,
    samples: list[Sample],
    items: list[Json],
    chat: judge.Chat | None = None,
    judges: int = 1,
) -> list[Outcome]:
    """``grade`` on each sample with its item (the same outcomes), but each python grader, top
    level or in a multi, grades the whole batch in one sandbox: a training step's grading costs
    one sandbox start per python grader, not one per sample. ``judges`` > 1 grades that many
    samples at once otherwise, so that judge models are asked concurrently (the inference
    process batches them); ``chat`` must then be callable from any thread (``remote.chat_at``'s
    is)."""
    if len(samples) != len(items):
        raise ValueError(f"{len(samples)} samples for {len(items)} items")
    if g["type"] == "python":
        return _python(g, samples, items)
    ran: dict[str, list[Outcome]] = {}
    if g["type"] == "multi":
        subs = named(g["graders"]).items()
        ran = {name: _python(sub, samples, items) for name, sub in subs if sub["type"] == "python"}

    def one(k: int) -> Outcome:
        if g["type"] != "multi":
            return _single(g, samples[k], items[k], chat)
        return _multi(g, samples[k], items[k], chat, {n: outs[k] for n, outs in ran.items()})

    if judges <= 1 or len(samples) <= 1:
        return [one(k) for k in range(len(samples))]
    with ThreadPoolExecutor(min(judges, len(samples)), thread_name_prefix="judge") as pool:
        return list(pool.map(one, range(len(samples))))


def run(g: Json, model_sample: str, item: Json, chat: judge.Chat | None = None) -> Json:
    """The run endpoint's response for one sample; ``chat`` reaches the judge models."""
    start = time.perf_counter()
    out = grade(g, Sample(model_sample), item, chat)
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
            token_usage=sum(u["total_tokens"] for u in out.usage.values()) if out.usage else None,
            sampled_model_name=next(iter(out.usage), None),
            errors=RUN_ERRORS.make(**flags),
        ),
        sub_rewards=out.scores,
        model_grader_token_usage_per_model=out.usage,
    )
