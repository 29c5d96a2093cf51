"""The real objects the OpenAPI fuzz suite works on (tests/api/test_openapi_fuzz.py): seeded
before fuzzing, with what they looked like then, and one request per operation that must succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx

from tests.api.planted import plant
from tests.conftest import Server, chat_rows, jsonl
from tests.unit import reward_steps


@dataclass
class Seeded:
    """Real objects, and what they looked like before any generated request was sent."""

    file_id: str
    victim_file_ids: list[str]
    victim_model: str  # a fine-tuned model planted in the store, made to be deleted
    response_id: str  # a stored response
    victim_response_ids: list[str]  # stored responses made to be deleted
    job_id: str
    finished_job_id: str  # cancelled: its event stream replays and ends
    file_object: dict[str, Any]
    file_content: bytes
    job_object: dict[str, Any]
    events: list[dict[str, Any]]
    batch_file_id: str  # purpose "batch": one chat request
    few_preferences_id: str  # fine-tune, 3 preference rows: too few, its DPO job fails
    batch_id: str
    victim_batch_id: str  # cancelled by the seed (a cancel of it answers it as it is)
    # Where generated requests may carry a real value instead of a generated one:
    # parameter name -> operation label (or method, or "*") -> candidate values.
    path_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    query_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    body_values: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def all_events(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    page = http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 10_000})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["has_more"] is False
    events: list[dict[str, Any]] = body["data"]
    return events


def upload(http: httpx.Client, name: str, content: bytes, purpose: str) -> str:
    resp = http.post("/files", files={"file": (name, content)}, data={"purpose": purpose})
    assert resp.status_code == 200, resp.text
    file_id: str = resp.json()["id"]
    return file_id


def seed(server: Server, http: httpx.Client) -> Seeded:
    """A file, files made to be deleted, a planted fine-tuned model, a queued job and a
    cancelled one; the first completion paid for."""
    victim_model = plant(server, suffix="fuzz-victim")
    # Read only: its reward events and checkpoints are checked against the document.
    rft_job = reward_steps.plant_rft(server).job_id
    content = jsonl(chat_rows(12))
    file_id = upload(http, "protected.jsonl", content, "fine-tune")
    victims = [upload(http, f"victim-{i}.txt", b"delete me", "assistants") for i in range(3)]
    preference = {
        "input": {"messages": [{"role": "user", "content": "Say hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hi!"}],
        "non_preferred_output": [{"role": "assistant", "content": "No."}],
    }
    few_preferences = upload(http, "few.jsonl", jsonl([preference] * 3), "fine-tune")
    created = http.post(
        "/fine_tuning/jobs",
        json={
            "model": "ftserve-tiny",
            "training_file": file_id,
            "validation_file": file_id,
            "suffix": "fuzz-seed",
            "seed": 7,
            "metadata": {"purpose": "fuzz"},
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}},
            },
        },
    )
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    # The first completion starts the inference process and loads the model: seconds on an idle
    # machine, much longer on a loaded one. Schemathesis' 10 s read timeout is meant for requests,
    # not for that cold start, so it is paid here once.
    warm = http.post(
        "/chat/completions",
        json={
            "model": "ftserve-tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        },
        timeout=300,
    )
    assert warm.status_code == 200, warm.text
    responses = [
        http.post(
            "/responses", json={"model": "ftserve-tiny", "input": "hi", "max_output_tokens": 16}
        ).json()["id"]
        for _ in range(3)
    ]
    wait_for(
        lambda: http.get(f"/fine_tuning/jobs/{job_id}").json()["status"] != "validating_files",
        "the seeded job's files to be validated",
    )
    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    assert job["status"] == "queued", job
    finished = http.post(
        "/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file_id}
    ).json()["id"]
    wait_for(
        lambda: http.get(f"/fine_tuning/jobs/{finished}").json()["status"] == "queued",
        "the finished job's files to be validated",
    )
    cancelled = http.post(f"/fine_tuning/jobs/{finished}/cancel")
    assert cancelled.json().get("status") == "cancelled", cancelled.text
    line = {
        "custom_id": "seed",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "ftserve-tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        },
    }
    batch_file_id = upload(http, "batch.jsonl", jsonl([line]), "batch")
    batch_body = {
        "input_file_id": batch_file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    batch_id, victim_batch_id = (
        http.post("/batches", json=batch_body).json()["id"] for _ in range(2)
    )
    assert http.post(f"/batches/{victim_batch_id}/cancel").status_code == 200
    events = all_events(http, job_id)
    assert [e["message"] for e in events][-1] == f"Created fine-tuning job: {job_id}"
    got = http.get(f"/files/{file_id}/content")
    assert got.status_code == 200 and got.content == content
    return Seeded(
        file_id=file_id,
        victim_file_ids=victims,
        victim_model=victim_model.model,
        response_id=responses[0],
        victim_response_ids=responses[1:],
        job_id=job_id,
        finished_job_id=finished,
        file_object=http.get(f"/files/{file_id}").json(),
        file_content=content,
        job_object=job,
        events=events,
        batch_file_id=batch_file_id,
        few_preferences_id=few_preferences,
        batch_id=batch_id,
        victim_batch_id=victim_batch_id,
        path_values={
            "batch_id": {"*": [batch_id, victim_batch_id]},
            "fine_tuning_job_id": {"GET": [job_id, rft_job], "*": [job_id]},
            # Deleting the protected file would make the corruption check meaningless.
            "file_id": {"DELETE": victims, "*": [file_id]},
            "model": {
                "DELETE": [victim_model.model, *victim_model.checkpoints, "ftserve-tiny"],
                "*": ["ftserve-tiny", victim_model.model, *victim_model.checkpoints],
            },
            "response_id": {"DELETE": responses[1:], "*": [responses[0]]},
        },
        query_values={
            "after": {
                "GET /fine_tuning/jobs/{fine_tuning_job_id}/events": [e["id"] for e in events],
                "GET /fine_tuning/jobs": [job_id],
                "GET /files": [file_id, *victims],
                "GET /batches": [batch_id, victim_batch_id],
            },
            "purpose": {"GET /files": ["fine-tune"]},
        },
        body_values={
            "input_file_id": {"POST /batches": [batch_file_id]},
            "training_file": {"POST /fine_tuning/jobs": [file_id]},
            "validation_file": {"POST /fine_tuning/jobs": [file_id]},
            "model": {
                "POST /fine_tuning/jobs": ["ftserve-tiny"],
                "POST /chat/completions": ["ftserve-tiny"],
                "POST /completions": ["ftserve-tiny"],
                "POST /responses": ["ftserve-tiny"],
            },
            # The server caps n * max_tokens (FTSERVE_MAX_GENERATION_TOKENS=64 here): random
            # n and max_tokens nearly always exceed it, a cross-field rule no schema can state.
            "n": {"POST /chat/completions": [1, 2], "POST /completions": [1, 2]},
            "max_tokens": {"POST /chat/completions": [4], "POST /completions": [4]},
            "max_output_tokens": {"POST /responses": [16]},
            # A multi grader's formula names its sub-graders: no schema can say so.
            "grader": {
                "POST /fine_tuning/alpha/graders/validate": GRADERS,
                "POST /fine_tuning/alpha/graders/run": GRADERS,
            },
        },
    )


_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_json.a}}",
    "reference": "{{item.a}}",
    "operation": "ilike",
}
GRADERS: list[dict[str, Any]] = [
    _CHECK,
    {
        "type": "multi",
        "name": "m",
        "graders": {
            "exact": _CHECK,
            "close": {
                "type": "text_similarity",
                "name": "close",
                "input": "{{sample.output_text}}",
                "reference": "{{item.a}}",
                "evaluation_metric": "rouge_l",
            },
        },
        "calculate_output": "max(exact, close ^ 2) / 2",
    },
]


def known_good(seeded: Seeded) -> dict[str, dict[str, Any]]:
    """One request per operation that must succeed: proof that the real objects are reachable."""
    job = {"fine_tuning_job_id": seeded.job_id}
    return {
        "POST /files": {
            "body": {
                "file": b"known good\n",
                "purpose": "user_data",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": 3600,
            },
            "media_type": "multipart/form-data",
        },
        "GET /files": {"query": {"purpose": "fine-tune", "order": "asc", "limit": 2}},
        "GET /files/{file_id}": {"path_parameters": {"file_id": seeded.file_id}},
        "GET /files/{file_id}/content": {"path_parameters": {"file_id": seeded.file_id}},
        "DELETE /files/{file_id}": {"path_parameters": {"file_id": seeded.victim_file_ids[0]}},
        # A DPO job on too few examples: it fails validation, so job lists then carry an `error`
        # object. (A file of the wrong format for the method is refused at creation.)
        "POST /fine_tuning/jobs": {
            "body": {
                "model": "ftserve-tiny",
                "training_file": seeded.few_preferences_id,
                "suffix": "dpo",
                "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5}}},
                "integrations": [{"type": "wandb", "wandb": {"project": "p", "tags": ["t"]}}],
                "ftserve": {"adapter": "full", "lora_rank": 4},
                "trainingType": "Standard",
            },
            "media_type": "application/json",
        },
        # Explicit cases are sent as given, so the deepObject parameter is written in wire form.
        "GET /fine_tuning/jobs": {"query": {"metadata[purpose]": "fuzz", "limit": 5}},
        "GET /fine_tuning/jobs/{fine_tuning_job_id}": {"path_parameters": job},
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events": {
            "path_parameters": job,
            "query": {"after": seeded.events[0]["id"], "limit": 1},
        },
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": {"path_parameters": job},
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/pause": {"path_parameters": job},
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/resume": {"path_parameters": job},
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/cancel": {"path_parameters": job},
        "POST /chat/completions": {
            "body": {
                "model": "ftserve-tiny",
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 4,
                "n": 2,
                "logprobs": True,
                "top_logprobs": 2,
            },
            "media_type": "application/json",
        },
        "POST /completions": {
            "body": {"model": "ftserve-tiny", "prompt": ["a", "b"], "max_tokens": 3, "logprobs": 1},
            "media_type": "application/json",
        },
        "POST /batches": {
            "body": {
                "input_file_id": seeded.batch_file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"k": "v"},
                "output_expires_after": {"anchor": "created_at", "seconds": 3600},
            },
            "media_type": "application/json",
        },
        "GET /batches": {"query": {"after": seeded.victim_batch_id, "limit": 2}},
        "GET /batches/{batch_id}": {"path_parameters": {"batch_id": seeded.batch_id}},
        "POST /batches/{batch_id}/cancel": {
            "path_parameters": {"batch_id": seeded.victim_batch_id}
        },
        "GET /models": {},
        "GET /models/{model}": {"path_parameters": {"model": "ftserve-tiny"}},
        "DELETE /models/{model}": {"path_parameters": {"model": seeded.victim_model}},
        "POST /responses": {
            "body": {
                "model": "ftserve-tiny",
                "input": [{"role": "user", "content": "Hello"}],
                "previous_response_id": seeded.response_id,
                "max_output_tokens": 16,
                "metadata": {"k": "v"},
                "include": [],
            },
            "media_type": "application/json",
        },
        "GET /responses/{response_id}": {"path_parameters": {"response_id": seeded.response_id}},
        "GET /responses/{response_id}/input_items": {
            "path_parameters": {"response_id": seeded.response_id},
            "query": {"order": "asc", "limit": 1},
        },
        "DELETE /responses/{response_id}": {
            "path_parameters": {"response_id": seeded.victim_response_ids[0]}
        },
        "POST /fine_tuning/alpha/graders/validate": {
            "body": {"grader": GRADERS[1]},
            "media_type": "application/json",
        },
        "POST /fine_tuning/alpha/graders/run": {
            "body": {"grader": GRADERS[1], "model_sample": '{"a": "x"}', "item": {"a": "x"}},
            "media_type": "application/json",
        },
    }
