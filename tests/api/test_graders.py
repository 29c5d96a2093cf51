"""POST /fine_tuning/alpha/graders/{validate,run} with the official SDK in strict mode against
a real server (no store involved: graders keep nothing)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import Server
from tests.sandboxed import require_sandbox

CITY = {
    "type": "string_check",
    "name": "city",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.answer.city}}",
    "operation": "eq",
}
MULTI: dict[str, Any] = {
    "type": "multi",
    "name": "score",
    "graders": {
        "exact": CITY,
        "close": {
            "type": "text_similarity",
            "name": "close",
            "input": "{{sample.output_text}}",
            "reference": '{"city": "{{item.answer.city}}"}',
            "evaluation_metric": "rouge_1",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * close ^ 2",
}


def test_validate_echoes_and_names_the_bad_param(server: Server) -> None:
    for client in (server.client(), server.client(azure=True)):
        graders = client.fine_tuning.alpha.graders
        echoed = graders.validate(grader=CITY)  # type: ignore[arg-type]
        assert echoed.model_dump(exclude_none=True) == {"grader": CITY}
        bad = {**MULTI, "graders": {**MULTI["graders"], "exact": {**CITY, "operation": "is"}}}
        with pytest.raises(openai.BadRequestError) as e:
            graders.validate(grader=bad)  # type: ignore[arg-type]
        error = e.value.body
        assert isinstance(error, dict)
        assert error["param"] == "grader.graders.exact.operation"
        assert "'eq', 'ne', 'like', 'ilike'" in error["message"]
    with pytest.raises(openai.BadRequestError) as e:
        server.client().fine_tuning.alpha.graders.validate(
            grader={"type": "label_model", "name": "j", "model": "m", "input": []},  # type: ignore[typeddict-item]
        )
    assert isinstance(e.value.body, dict) and e.value.body["param"] == "grader.type"
    assert "is not a top-level grader" in e.value.body["message"]


def test_run_scores_and_flags_a_failed_sample(server: Server) -> None:
    graders = server.client().fine_tuning.alpha.graders
    item = {"answer": {"city": "Oslo"}}
    run = graders.run(grader=MULTI, model_sample='{"city": "Oslo"}', item=item)  # type: ignore[arg-type]
    assert run.reward == pytest.approx(1.0)
    assert run.sub_rewards == {"exact": 1.0, "close": pytest.approx(1.0)}
    assert run.metadata.name == "score" and run.metadata.type == "multi"
    assert not any(v for k, v in run.metadata.errors.model_dump().items())
    # Not JSON: the exact check cannot read output_json; its flag, not an HTTP error.
    loose = graders.run(grader=MULTI, model_sample="Oslo", item=item)  # type: ignore[arg-type]
    assert loose.sub_rewards["exact"] == 0.0
    assert loose.metadata.errors.sample_parse_error
    assert loose.reward == pytest.approx(0.5 * (2 / 3) ** 2)
    missing = graders.run(grader=CITY, model_sample='{"city": "Oslo"}')  # type: ignore[arg-type]
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error


def test_python_grader_runs_in_its_sandbox(server: Server) -> None:
    require_sandbox()
    source = "def grade(sample, item):\n    return len(sample['output_text']) / item['n']\n"
    graders = server.client().fine_tuning.alpha.graders
    grader = {"type": "python", "name": "len", "source": source}
    run = graders.run(grader=grader, model_sample="abc", item={"n": 4})  # type: ignore[arg-type]
    assert run.reward == 0.75 and run.metadata.type == "python"
    failed = graders.run(grader=grader, model_sample="abc", item={"n": 0})  # type: ignore[arg-type]
    assert failed.reward == 0 and failed.metadata.errors.python_grader_runtime_error
    assert failed.metadata.errors.python_grader_runtime_error_details == (
        "ZeroDivisionError: division by zero"
    )


def test_model_graders_ask_a_served_model(server: Server) -> None:
    """ftserve-tiny has random weights, but the answer's schema makes it answer a valid
    ``{"result": …}``: a label of the two, a number (read within the range or flagged)."""
    ask = [{"role": "user", "content": "Is {{sample.output_text}} the capital of {{item.c}}?"}]
    label = {
        "type": "label_model",
        "name": "judge",
        "model": "ftserve-tiny",
        "input": ask,
        "labels": ["yes", "no"],
        "passing_labels": ["yes"],
    }
    multi = {"type": "multi", "name": "m", "graders": {"judge": label}, "calculate_output": "judge"}
    graders = server.client().fine_tuning.alpha.graders
    run = graders.run(grader=multi, model_sample="Oslo", item={"c": "Norway"})  # type: ignore[arg-type]
    assert run.reward in (0.0, 1.0) and run.sub_rewards == {"judge": run.reward}
    usage = run.api_model_grader_token_usage_per_model["ftserve-tiny"]
    assert isinstance(usage, dict) and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert run.metadata.sampled_model_name == "ftserve-tiny"
    errors = run.metadata.errors
    assert not errors.api_model_grader_parse_error and not errors.api_model_grader_server_error

    score = {k: v for k, v in label.items() if k not in ("labels", "passing_labels")}
    score = {**score, "type": "score_model", "range": [-1e9, 1e9]}
    score["sampling_params"] = {"seed": 1, "temperature": 0, "max_completions_tokens": 16}
    scored = graders.run(grader=score, model_sample="Oslo", item={"c": "Norway"})  # type: ignore[arg-type]
    flags = scored.metadata.errors
    assert flags.api_model_grader_parse_error or -1e9 <= scored.reward <= 1e9
    unknown = graders.run(
        grader={**score, "model": "no-such-model"}, model_sample="x", item={"c": "y"}
    )  # type: ignore[arg-type]
    assert unknown.reward == 0 and unknown.metadata.errors.api_model_grader_server_error
    assert "no-such-model" in (unknown.metadata.errors.api_model_grader_server_error_details or "")
