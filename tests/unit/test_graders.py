"""Graders without a server: each metric against known values, the templates, the formula, and
the checks' 400s naming the param path."""

from __future__ import annotations

from typing import Any

import pytest

from ftserve.errors import ApiError
from ftserve.graders import grading
from ftserve.graders.formula import FormulaError, check, evaluate
from ftserve.graders.metrics import SCORERS
from ftserve.graders.schemas import check_grader
from ftserve.graders.templates import InvalidVariable, Sample, SampleParseError, render

HYP, REF = "the cat sat on the mat", "a cat is on the mat"


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        # rapidfuzz's ratio: 2 * 17 matched / 41 characters.
        ("fuzzy_match", 34 / 41),
        ("bleu", 0.32466791547509904),
        # GLEU: min(precision, recall) of 1..4-grams: 7 of 18 hypothesis n-grams match.
        ("gleu", 7 / 18),
        # ROUGE-1: 4 unigrams shared of 6 and 6 -> F = 2/3; ROUGE-2: 2 bigrams of 5 and 5.
        ("rouge_1", 2 / 3),
        ("rouge_2", 2 / 5),
        ("rouge_3", 1 / 4),
        ("rouge_4", 0.0),
        ("rouge_5", 0.0),
        # the longest common subsequence: "cat on the mat", 4 tokens.
        ("rouge_l", 2 / 3),
    ],
)
def test_metric_known_values(metric: str, expected: float) -> None:
    assert SCORERS[metric](HYP, REF) == pytest.approx(expected, abs=1e-9)
    assert SCORERS[metric](REF, REF) == pytest.approx(1.0)


def test_templates() -> None:
    sample = Sample('{"city": "Oslo", "tags": ["a", "b"]}')
    item = {"answer": {"city": "Oslo"}, "n": 3}
    text = "{{ item.answer.city }}/{{sample.output_json.city}}/{{item.n}}/{{sample.output_json.tags.1}}"
    assert render(text, sample, item) == "Oslo/Oslo/3/b"
    assert render("{{sample.output_tools}}", sample, item) == "[]"
    with pytest.raises(InvalidVariable):
        render("{{item.missing}}", sample, item)
    with pytest.raises(SampleParseError):
        render("{{sample.output_json.city}}", Sample("Oslo"), item)


def test_formula() -> None:
    assert evaluate("0.8 * a + 0.2 * b ^ 2", {"a": 1.0, "b": 0.5}) == pytest.approx(0.85)
    assert evaluate("max(a, b) - min(a, b) + sqrt(4) - floor(1.5)", {"a": 1, "b": 0}) == 2
    for bad in ("__import__('os')", "a.__class__", "open('x')", "a +", "c * 2"):
        with pytest.raises(FormulaError):
            check(bad, ["a", "b"])
    check("a / (b - 1)", ["a", "b"])  # dividing by zero only on some samples: not a 400


def _grader(**kw: Any) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "s",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
        **kw,
    }


@pytest.mark.parametrize(
    ("grader", "param", "code"),
    [
        (_grader(operation="regex"), "grader.operation", "invalid_value"),
        (_grader(extra=1), "grader.extra", "unknown_parameter"),
        (
            {"type": "string_check", "name": "s", "input": "x", "operation": "eq"},
            "grader.reference",
            "missing_required_parameter",
        ),
        (
            {
                "type": "text_similarity",
                "name": "t",
                "input": "x",
                "reference": "y",
                "evaluation_metric": "meteor",
            },
            "grader.evaluation_metric",
            "unsupported_value",
        ),
        (
            {
                "type": "text_similarity",
                "name": "t",
                "input": "x",
                "reference": "y",
                "evaluation_metric": "cosine",
            },
            "grader.evaluation_metric",
            "unsupported_value",
        ),
        ({"type": "label_model", "name": "l"}, "grader.type", "invalid_value"),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "accuracy",
                "graders": {"accuracy": _grader(operation="is")},
            },
            "grader.graders.accuracy.operation",
            "invalid_value",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "s",
                "graders": [_grader(), {"type": "multi"}],
            },
            "grader.graders[1].type",
            "invalid_value",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "accuracy + nope",
                "graders": {"accuracy": _grader()},
            },
            "grader.calculate_output",
            "invalid_value",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "a",
                "graders": {
                    "a": {
                        "type": "label_model",
                        "name": "j",
                        "model": "m",
                        "input": [{"role": "user", "content": "?"}],
                        "labels": ["yes", "no"],
                        "passing_labels": ["maybe"],
                    }
                },
            },
            "grader.graders.a.passing_labels[0]",
            "invalid_value",
        ),
    ],
)
def test_bad_graders_name_the_param(grader: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(ApiError) as e:
        check_grader(grader, "grader")
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


def test_judge_request_and_reading() -> None:
    g = check_grader(
        {
            "type": "score_model",
            "name": "s",
            "model": "m",
            "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}],
            "range": [1, 5],
            "sampling_params": {"temperature": 0, "max_completions_tokens": 8},
        },
        "grader",
    )
    sent: list[dict[str, Any]] = []

    def chat(content: str, status: int = 200) -> Any:
        def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            sent.append(body)
            message = {"role": "assistant", "content": content}
            usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            if status != 200:
                return status, {"error": {"message": "The model 'm' does not exist"}}
            return 200, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}

        return answer

    ok = grading.run(g, "Oslo", {}, chat('{"result": 4}'))
    assert ok["reward"] == 4 and ok["model_grader_token_usage_per_model"]["m"]["total_tokens"] == 8
    assert sent[0]["messages"] == [{"role": "user", "content": "Rate Oslo"}]
    assert sent[0]["max_completion_tokens"] == 8 and sent[0]["temperature"] == 0
    assert sent[0]["response_format"]["json_schema"]["strict"] is True
    for content in ('{"result": 6}', "four"):
        out = grading.run(g, "Oslo", {}, chat(content))
        assert out["reward"] == 0 and out["metadata"]["errors"]["model_grader_parse_error"]
    down = grading.run(g, "Oslo", {}, chat("", 404))["metadata"]["errors"]
    assert down["model_grader_server_error"] and "'m'" in down["model_grader_server_error_details"]


def test_multi_grades_and_flags() -> None:
    g = check_grader(
        {
            "type": "multi",
            "name": "m",
            "graders": [_grader(name="exact"), _grader(name="loose", operation="ilike")],
            "calculate_output": "0.25 * exact + 0.75 * loose",
        },
        "grader",
    )
    run = grading.run(g, "OSLO, Norway", {"answer": "oslo"})
    assert run["reward"] == 0.75 and run["sub_rewards"] == {"exact": 0.0, "loose": 1.0}
    missing = grading.run(g, "Oslo", {})
    assert missing["reward"] == 0 and missing["metadata"]["errors"]["invalid_variable_error"]
    ratio = check_grader({**g, "calculate_output": "exact / loose"}, "grader")
    broken = grading.run(ratio, "Bergen", {"answer": "Oslo"})
    assert broken["reward"] == 0 and broken["metadata"]["errors"]["other_error"]
