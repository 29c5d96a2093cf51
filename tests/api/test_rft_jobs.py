"""Reinforcement fine-tuning jobs on the API side, through the official SDK: the method echoed
as given, each refusal at creation naming its param (grader, response_format, hyperparameter
bounds, files, ftserve options, judge models, python graders turned off), and the judge check of
``/fine_tuning/alpha/graders/validate``. What happens after creation is the trainer's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, chat_rows, jsonl, upload

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_json.city}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}
JUDGE = {
    "type": "label_model",
    "name": "judge",
    "model": "ftserve-tiny",
    "input": [{"role": "user", "content": "Is {{sample.output_text}} right? yes or no"}],
    "labels": ["yes", "no"],
    "passing_labels": ["yes"],
}
SCORE = {
    **{k: v for k, v in JUDGE.items() if k not in ("labels", "passing_labels")},
    "type": "score_model",
}
MULTI: dict[str, Any] = {
    "type": "multi",
    "name": "score",
    "graders": {"accuracy": EXACT, "judge": JUDGE},
    "calculate_output": "0.8 * accuracy + 0.2 * judge",
}
CITY_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


ASSISTANT = {"role": "assistant", "content": '{"city": "Paris"}'}


def rft_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "developer", "content": "Answer in JSON."},
                {"role": "user", "content": f"Capital of country {i}?"},
            ],
            "answer": f"City {i}",
            "meta": {"i": i},
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def files(server: Server) -> dict[str, str]:
    client = server.client()
    return {
        "rft": upload(client, rft_rows(12), "rft.jsonl"),
        "rft_valid": upload(client, rft_rows(4), "rft-valid.jsonl"),
        "chat": upload(client, chat_rows(12)),
    }


def rft_body(files: dict[str, str], **inner: Any) -> dict[str, Any]:
    return {
        "model": "ftserve-tiny",
        "training_file": files["rft"],
        "validation_file": files["rft_valid"],
        "method": {"type": "reinforcement", "reinforcement": {"grader": EXACT, **inner}},
    }


def test_the_sdk_creates_a_job_and_the_method_is_echoed(
    server: Server, files: dict[str, str]
) -> None:
    client = server.client()  # strict: the SDK's own types parse the job
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=files["rft"],
        validation_file=files["rft_valid"],
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": EXACT,  # type: ignore[typeddict-item]
                "hyperparameters": {"n_epochs": 2, "compute_multiplier": 0.5},
            },
        },
    )
    assert job.status == "validating_files"
    assert job.method is not None and job.method.type == "reinforcement"
    rft = job.method.reinforcement
    assert rft is not None and rft.grader.model_dump() == EXACT
    assert rft.hyperparameters is not None
    assert rft.hyperparameters.model_dump() == {
        "batch_size": "auto",
        "compute_multiplier": 0.5,
        "eval_interval": "auto",
        "eval_samples": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": 2,
        "reasoning_effort": "default",
    }
    assert job.hyperparameters.n_epochs == 2
    assert client.fine_tuning.jobs.retrieve(job.id).method == job.method


def _bad_grader(path: list[str | int], value: Any) -> dict[str, Any]:
    """MULTI with the value at ``path`` replaced."""
    import copy

    grader = copy.deepcopy(MULTI)
    target: Any = grader
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return grader


G = "method.reinforcement.grader"
HP = "method.reinforcement.hyperparameters"
REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("no grader", {"grader": None}, G),
    (
        "nested op",
        {"grader": _bad_grader(["graders", "accuracy", "operation"], "is")},
        G + ".graders.accuracy.operation",
    ),
    ("top label_model", {"grader": JUDGE}, G + ".type"),
    (
        "unknown judge",
        {"grader": {**SCORE, "model": "no-such-model"}},
        G + ".model",
    ),
    (
        "unknown sub judge",
        {"grader": _bad_grader(["graders", "judge", "model"], "gpt-4o-2024-08-06")},
        G + ".graders.judge.model",
    ),
    (
        "json_object",
        {"response_format": {"type": "json_object"}},
        "method.reinforcement.response_format.type",
    ),
    (
        "schema name",
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "method.reinforcement.response_format.json_schema.name",
    ),
    ("unknown key", {"bogus": 1}, "method.reinforcement.bogus"),
    ("n_epochs", {"hyperparameters": {"n_epochs": 51}}, HP + ".n_epochs"),
    ("batch_size", {"hyperparameters": {"batch_size": 0}}, HP + ".batch_size"),
    ("lr", {"hyperparameters": {"learning_rate_multiplier": 0}}, HP + ".learning_rate_multiplier"),
    (
        "compute low",
        {"hyperparameters": {"compute_multiplier": 0.00001}},
        HP + ".compute_multiplier",
    ),
    ("compute high", {"hyperparameters": {"compute_multiplier": 10.5}}, HP + ".compute_multiplier"),
    ("eval_interval", {"hyperparameters": {"eval_interval": 0}}, HP + ".eval_interval"),
    ("eval_samples", {"hyperparameters": {"eval_samples": "many"}}, HP + ".eval_samples"),
    ("effort auto", {"hyperparameters": {"reasoning_effort": "auto"}}, HP + ".reasoning_effort"),
    ("beta", {"hyperparameters": {"beta": 0.1}}, HP + ".beta"),
]


@pytest.mark.parametrize(
    ("inner", "param"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_bad_method_is_refused_naming_its_param(
    server: Server, files: dict[str, str], inner: dict[str, Any], param: str
) -> None:
    client = server.client()
    body = rft_body(files)
    body["method"]["reinforcement"].update(inner)
    before = len(client.fine_tuning.jobs.list(limit=1000).data)
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/fine_tuning/jobs", body=body, cast_to=object)
    assert info.value.param == param, info.value.message
    assert len(client.fine_tuning.jobs.list(limit=1000).data) == before  # nothing stored


def test_the_good_values_at_the_bounds_pass(server: Server, files: dict[str, str]) -> None:
    hp = {
        "compute_multiplier": 10,
        "eval_interval": 1,
        "eval_samples": 1,
        "reasoning_effort": "high",
    }
    body = rft_body(files, hyperparameters=hp)
    job = server.client().post("/fine_tuning/jobs", body=body, cast_to=dict[str, Any])
    assert job["method"]["reinforcement"]["hyperparameters"]["compute_multiplier"] == 10


JOB_REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("no validation file", {"validation_file": None}, "validation_file", "validation_file"),
    ("devices", {"ftserve": {"devices": 2}}, "ftserve.devices", "one device"),
    ("devices auto", {"ftserve": {"devices": "auto"}}, "ftserve.devices", "one device"),
    ("nodes", {"ftserve": {"nodes": 2}}, "ftserve.nodes", "one device"),
    ("fsdp", {"ftserve": {"fsdp": True, "adapter": "full"}}, "ftserve.fsdp", "one device"),
    ("top-level beta", {"hyperparameters": {"beta": 0.1}}, "hyperparameters.beta", "beta"),
    ("chat training", {"training_file": "chat"}, "training_file", "in the chat"),
    ("chat validation", {"validation_file": "chat"}, "validation_file", "in the chat"),
]


@pytest.mark.parametrize(
    ("patch", "param", "words"), [r[1:] for r in JOB_REFUSALS], ids=[r[0] for r in JOB_REFUSALS]
)
def test_job_level_refusals(
    server: Server, files: dict[str, str], patch: dict[str, Any], param: str, words: str
) -> None:
    named = {k: files[v] if isinstance(v, str) else v for k, v in patch.items()}
    body = {**rft_body(files), **named}
    with pytest.raises(openai.BadRequestError) as info:
        server.client().post("/fine_tuning/jobs", body=body, cast_to=object)
    assert info.value.param == param, info.value.message
    assert words in info.value.message


def test_an_rft_file_is_refused_for_supervised_and_dpo(
    server: Server, files: dict[str, str]
) -> None:
    client = server.client()
    for method, needs in (("supervised", "chat (messages"), ("dpo", "preference")):
        with pytest.raises(openai.BadRequestError) as info:
            client.fine_tuning.jobs.create(
                model="ftserve-tiny", training_file=files["rft"], method={"type": method}
            )
        assert (info.value.param, info.value.code) == ("training_file", "invalid_file_format")
        assert f"A {method} job needs examples in the {needs}" in info.value.message
        assert "but the file is in the reinforcement" in info.value.message


def test_other_options_apply(server: Server, files: dict[str, str]) -> None:
    ext = {"adapter": "full", "gradient_checkpointing": True, "devices": 1, "fsdp": False}
    body = {**rft_body(files), "ftserve": ext, "hyperparameters": {"eval_samples": 2}}
    job = server.client().post("/fine_tuning/jobs", body=body, cast_to=dict[str, Any])
    assert job["ftserve"]["adapter"] == "full" and job["ftserve"]["gradient_checkpointing"]
    assert job["method"]["reinforcement"]["hyperparameters"]["eval_samples"] == 2


def test_validate_checks_the_judge_model(server: Server) -> None:
    graders = server.client(strict=False).fine_tuning.alpha.graders
    assert graders.validate(grader=SCORE).grader is not None  # type: ignore[arg-type]
    assert graders.validate(grader=MULTI).grader is not None  # type: ignore[arg-type]
    for grader, param in (
        ({**SCORE, "model": "o3-mini"}, "grader.model"),
        (_bad_grader(["graders", "judge", "model"], "ft:nothing:x"), "grader.graders.judge.model"),
        (
            {**MULTI, "graders": [EXACT, {**JUDGE, "model": "nope"}], "calculate_output": "judge"},
            "grader.graders[1].model",
        ),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            graders.validate(grader=grader)  # type: ignore[arg-type]
        assert (info.value.param, info.value.code) == (param, "model_not_found")
        assert "does not exist or you do not have access to it" in info.value.message


PYTHON = {
    "type": "python",
    "name": "py",
    "source": "def grade(sample, item):\n    return 1.0\n",
}


@pytest.fixture(scope="module")
def no_python_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("nopy") / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_INFERENCE": "0", "FTSERVE_PYTHON_GRADERS": "0"},
    )
    srv.start()
    yield srv
    srv.stop()


def _job_count(client: openai.OpenAI) -> int:
    jobs = client.get("/fine_tuning/jobs?limit=1000", cast_to=dict[str, Any])
    return len(jobs["data"])


def _without_nulls(value: Any) -> Any:
    """The echo of a grader less the optional fields left out (the checker fills them null)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_a_multi_grader_and_response_format_are_stored_as_given(no_python_server: Server) -> None:
    # A server of its own, and not strict: the SDK types a multi grader's `graders` as one
    # grader, which OpenAI's own examples (the object keyed by name used here) contradict, so a
    # strict SDK could no longer list the shared server's jobs.
    client = no_python_server.client(strict=False)
    train = upload(client, rft_rows(10))
    body = {**rft_body({"rft": train, "rft_valid": train}, response_format=CITY_FORMAT)}
    body["method"]["reinforcement"]["grader"] = MULTI
    created = client.post("/fine_tuning/jobs", body=body, cast_to=dict[str, Any])
    got = client.get(f"/fine_tuning/jobs/{created['id']}", cast_to=dict[str, Any])
    echoed = got["method"]["reinforcement"]
    assert echoed["response_format"] == CITY_FORMAT
    assert _without_nulls(echoed["grader"]) == MULTI
    validated = client.post(
        "/fine_tuning/alpha/graders/validate", body={"grader": MULTI}, cast_to=dict[str, Any]
    )
    assert echoed["grader"] == validated["grader"]


@pytest.mark.parametrize(
    ("grader", "path"),
    [
        (PYTHON, ".type"),
        ({**MULTI, "graders": {"accuracy": EXACT, "py": PYTHON}}, ".graders.py.type"),
    ],
    ids=["top", "in multi"],
)
def test_python_graders_turned_off(
    no_python_server: Server, tmp_path: Path, grader: dict[str, Any], path: str
) -> None:
    client = no_python_server.client(strict=False)
    train = upload(client, rft_rows(10))
    before = _job_count(client)
    body = {
        "model": "ftserve-tiny",
        "training_file": train,
        "validation_file": train,
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader}},
    }
    calls = (
        ("/fine_tuning/jobs", body, G + path),
        ("/fine_tuning/alpha/graders/validate", {"grader": grader}, "grader" + path),
        (
            "/fine_tuning/alpha/graders/run",
            {"grader": grader, "model_sample": "x"},
            "grader" + path,
        ),
    )
    for route, request, param in calls:
        with pytest.raises(openai.BadRequestError) as info:
            client.post(route, body=request, cast_to=object)
        assert (info.value.param, info.value.code) == (param, "unsupported_value")
        assert "python graders are turned off on this server" in info.value.message
    assert _job_count(client) == before


def test_the_upload_check_tells_reinforcement_rows_apart(server: Server) -> None:
    client = server.client()
    good = client.files.create(file=("rft.jsonl", jsonl(rft_rows(3))), purpose="fine-tune")
    assert good.status == "processed"
    answered = rft_rows(3)
    answered[1]["messages"].append(ASSISTANT)
    mixed = [*rft_rows(2), *chat_rows(1)]
    for rows, why in (
        (answered, "Line 2: uses the chat format (its last message is the assistant's answer)"),
        (
            mixed,
            "Line 3: uses the chat format (its last message is the assistant's answer), "
            "but line 1 uses the reinforcement format (its last message is the user's prompt)",
        ),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.files.create(file=("bad.jsonl", jsonl(rows)), purpose="fine-tune")
        assert why in info.value.message
