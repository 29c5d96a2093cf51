"""Judges over HTTP for training processes (graders/remote.py): a real server on loopback serves
ftserve-tiny as the judge, called as the job's organization; each way a call fails is the
sample's ``model_grader_server_error`` with the reason."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ftserve.config import ApiKey, Settings
from ftserve.graders import grading, remote
from ftserve.graders.schemas import check_grader
from ftserve.graders.templates import Sample
from tests.conftest import API_KEY, OTHER_ORG_KEY, Server

ASK = [{"role": "user", "content": "Is {{sample.output_text}} the capital of {{item.c}}?"}]
GRADER = check_grader(
    {
        "type": "multi",
        "name": "m",
        "graders": {
            "label": {
                "type": "label_model",
                "name": "label",
                "model": "ftserve-tiny",
                "input": ASK,
                "labels": ["yes", "no"],
                "passing_labels": ["yes"],
            },
            "exact": {
                "type": "string_check",
                "name": "exact",
                "input": "{{sample.output_text}}",
                "reference": "Oslo",
                "operation": "eq",
            },
        },
        "calculate_output": "label + exact",
    },
    "grader",
)
SCORE = check_grader(
    {
        "type": "score_model",
        "name": "s",
        "model": "ftserve-tiny",
        "input": ASK,
        "range": [-1e9, 1e9],
        "sampling_params": {"seed": 1, "temperature": 0, "max_completions_tokens": 12},
    },
    "grader",
)


def _errors(outcome: grading.Outcome) -> dict[str, Any]:
    return {k: v for k, v in outcome.errors.items() if v}


def test_default_url_is_this_servers_api() -> None:
    for host, url in [
        ("0.0.0.0", "http://127.0.0.1:8000/v1"),
        ("", "http://127.0.0.1:8000/v1"),
        ("::", "http://[::1]:8000/v1"),
        ("10.0.0.5", "http://10.0.0.5:8000/v1"),
        ("api.internal", "http://api.internal:8000/v1"),
    ]:
        assert remote.default_url(Settings(host=host, port=8000)) == url


def test_judges_as_the_jobs_organization(server: Server, tmp_path: Path) -> None:
    settings = Settings(host="0.0.0.0", port=server.port, api_keys=(ApiKey(API_KEY, "personal"),))
    samples, items = [Sample("Oslo"), Sample("Bergen")], [{"c": "Norway"}, {"c": "Norway"}]
    chat = remote.http_chat(settings, "personal")
    outcomes = grading.grade_batch(GRADER, samples, items, chat, judges=2)
    for outcome, exact in zip(outcomes, (1.0, 0.0), strict=True):
        assert _errors(outcome) == {}
        assert outcome.scores["exact"] == exact and outcome.scores["label"] in (0.0, 1.0)
        assert outcome.reward == outcome.scores["label"] + exact
        usage = outcome.usage["ftserve-tiny"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    # A worker beside the server, without FTSERVE_API_KEYS, reads the key the server stored.
    (tmp_path / "api_key").write_text(API_KEY + "\n")
    beside = Settings(data_dir=tmp_path, port=server.port)
    chat = remote.http_chat(beside, "personal")
    [scored] = grading.grade_batch(SCORE, samples[:1], items[:1], chat)
    assert not scored.errors.get("model_grader_server_error")


def test_judge_url_and_key_override(server: Server) -> None:
    # The settings' own port answers nothing: the call goes where FTSERVE_JUDGE_URL says, with
    # FTSERVE_JUDGE_API_KEY (here another organization's key; its jobs' organization has none).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nowhere = Settings(port=port, api_keys=(ApiKey(API_KEY, "personal"),))
    settings = Settings(port=port, judge_url=server.base_url + "/", judge_api_key=OTHER_ORG_KEY)
    chat = remote.http_chat(settings, "someone")
    [ok] = grading.grade_batch(SCORE, [Sample("Oslo")], [{"c": "Norway"}], chat)
    assert not ok.errors.get("model_grader_server_error")

    failures = [
        (nowhere, "personal", "did not answer"),
        (
            Settings(port=server.port, api_keys=(ApiKey(API_KEY, "personal"),)),
            "x",
            "FTSERVE_API_KEYS",
        ),
        (Settings(judge_url=server.base_url, judge_api_key="sk-wrong-key-123"), "x", "API key"),
    ]
    for how, organization, reason in failures:
        chat = remote.http_chat(how, organization)
        [failed] = grading.grade_batch(SCORE, [Sample("Oslo")], [{"c": "Norway"}], chat)
        assert failed.reward == 0.0 and failed.errors["model_grader_server_error"] is True
        assert reason in failed.errors["model_grader_server_error_details"]
