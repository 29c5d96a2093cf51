"""POST /fine_tuning/alpha/graders/{validate,run} with the official SDK in strict mode against
a real server (no store involved: graders keep nothing)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import Server

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
        server.client().fine_tuning.alpha.graders.run(
            grader={"type": "score_model", "name": "j", "model": "ftserve-tiny", "input": []},
            model_sample="x",
        )
    assert isinstance(e.value.body, dict) and e.value.body["param"] == "grader.type"
    assert "not supported by this server yet" in e.value.body["message"]


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
