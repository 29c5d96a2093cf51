"""Every bound the published document states on a request is the bound the server enforces.

The document is read from a running server (``GET /openapi.json``; no training workers) and
walked (``tests/api/bounds.py``): for each bounded body field or query parameter, at any depth,
one request carries a value just past the bound and must be a 400 whose ``param`` names that
field (``hyperparameters.n_epochs``, ``messages[0].content``, ``limit``), and one carries the
value at the bound and must not be refused for that field. Everything else in both requests is
valid: real ids (a file uploaded and a job created here), a real model, and
the smallest valid value of each container on the way (another ``anyOf`` branch where the path
goes through one: a ``dpo`` method, an ``assistant`` message put first).

A value at the bound may still be refused for another reason, and the few reasons that are
about the field itself are listed in :data:`NAMES_NOTHING`: an id at the longest (or shortest)
length the document allows names no object. Rules between fields that the document states in
prose get their context in :data:`CONTEXT` and :data:`PRECEDING`. Where the server and the
document disagree today, :data:`KNOWN_MISMATCHES` says how and why; the test fails as soon as
one of them agrees, so that the list only ever shrinks.

The server is one of its own (module scope) with no training workers and the default
generation cap: the shared ``server`` fixture caps ``n * max_tokens`` at 64, below the documented
``n`` maximum of 128. The fields walked are printed (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tests.api.bounds import Bound, Document, Step, place
from tests.conftest import API_KEY, Server, chat_rows, jsonl

# An id at the longest (or shortest) length the document allows names nothing: a 400 naming the
# field, with these codes and wording, is that, not the bound.
NAMES_NOTHING = (
    ("model_not_available", r"does not exist"),
    ("invalid_file", r"No such file exists"),
    ("invalid_value", r"to page from|is not an event of|is not a checkpoint of"),
)
# Rules between fields that the document states in prose: what else a request needs for the
# value at the bound to be valid. Keyed by operation and param.
REINFORCEMENT = {
    "method": {
        "type": "reinforcement",
        "reinforcement": {
            "grader": {
                "type": "string_check",
                "name": "g",
                "input": "a",
                "reference": "a",
                "operation": "eq",
            }
        },
    }
}
CONTEXT: dict[tuple[str, str], dict[str, Any]] = {
    # "`beta` only with `method.type` `dpo`" (CreateFineTuningJobRequest.hyperparameters).
    ("POST /fine_tuning/jobs", "hyperparameters.beta"): {"method": {"type": "dpo"}},
    # "the reinforcement ones only with `reinforcement`" (the same field).
    **{
        ("POST /fine_tuning/jobs", f"hyperparameters.{name}"): REINFORCEMENT
        for name in ("compute_multiplier", "eval_interval", "eval_samples")
    },
    # "Reinforcement jobs: the longest answer sampled for grading" (ftserve's own option).
    ("POST /fine_tuning/jobs", "ftserve.max_completion_tokens"): REINFORCEMENT,
    # "`max_tokens`: deprecated alias of `max_completion_tokens`; not both."
    ("POST /chat/completions", "max_completion_tokens"): {"max_tokens": None},
    # `top_logprobs` needs `logprobs: true`; `best_of` below `n` is refused, above it unsupported.
    ("POST /chat/completions", "top_logprobs"): {"logprobs": True},
    ("POST /completions", "best_of"): {"n": 20},
}
# A message that must follow others: (array, branch) -> the items before it.
PRECEDING: dict[tuple[str, str], list[Any]] = {
    # A tool message answers the assistant's tool call named by its `tool_call_id`.
    ("POST /chat/completions", "messages[0]{role=tool}"): [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
    ],
}
# Where the document and the server disagree today: (bound id, "past" or "at") -> why. The test
# fails when one of these is fixed, so that it is taken off the list.
KNOWN_MISMATCHES: dict[tuple[str, str], str] = {
    (f"POST {path} body seed (integer) minimum", "past"): (
        "orjson reads an integer literal below -2**63 as a float, and -2**63 - 1 rounds to "
        "-2**63: accepted as the minimum itself"
    )
    for path in ("/chat/completions", "/completions")
} | {
    ("POST /completions body best_of (integer) minimum", "at"): (
        "the document says minimum 0, but best_of must be >= n, and n >= 1"
    ),
}


@pytest.fixture(scope="module")
def bounds_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No training (``FTSERVE_WORKERS=0``, i.e. ``--workers 0``), and the default generation cap,
    so that ``n`` or the prompts at their documented maximum are not refused by a smaller one."""
    srv = Server(tmp_path_factory.mktemp("bounds") / "data", env={"FTSERVE_WORKERS": "0"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(bounds_server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=bounds_server.base_url, headers=headers, timeout=300) as client:
        yield client


def _bases(http: httpx.Client) -> dict[str, tuple[str, dict[str, Any]]]:
    """A valid request per operation with a bounded field: (path, body or query or form)."""
    up = http.post(
        "/files",
        files={"file": ("bounds.jsonl", jsonl(chat_rows(10)))},
        data={"purpose": "fine-tune"},
    )
    assert up.status_code == 200, up.text
    file_id = up.json()["id"]
    job = http.post("/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file_id})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    made = http.post(
        "/responses", json={"model": "ftserve-tiny", "input": "Hi", "max_output_tokens": 16}
    )
    assert made.status_code == 200, made.text
    response_id = made.json()["id"]
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "Hi"}]},
    }
    batch_up = http.post(
        "/files", files={"file": ("b.jsonl", jsonl([line]))}, data={"purpose": "batch"}
    )
    assert batch_up.status_code == 200, batch_up.text
    return {
        "POST /files": (
            "/files",
            {
                "purpose": "user_data",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": 3600,
            },
        ),
        "GET /files": ("/files", {}),
        "POST /fine_tuning/jobs": (
            "/fine_tuning/jobs",
            {"model": "ftserve-tiny", "training_file": file_id},
        ),
        "GET /fine_tuning/jobs": ("/fine_tuning/jobs", {}),
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events": (
            f"/fine_tuning/jobs/{job_id}/events",
            {},
        ),
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": (
            f"/fine_tuning/jobs/{job_id}/checkpoints",
            {},
        ),
        # One token: a bound at its highest (n, best_of, prompts) costs little generation.
        "POST /chat/completions": (
            "/chat/completions",
            {
                "model": "ftserve-tiny",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 1,
            },
        ),
        "POST /completions": (
            "/completions",
            {"model": "ftserve-tiny", "prompt": "Hi", "max_tokens": 1},
        ),
        "POST /responses": (
            "/responses",
            {"model": "ftserve-tiny", "input": "Hi", "max_output_tokens": 16},
        ),
        "GET /responses/{response_id}/input_items": (
            f"/responses/{response_id}/input_items",
            {},
        ),
        "POST /batches": (
            "/batches",
            {
                "input_file_id": batch_up.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        ),
        "GET /batches": ("/batches", {}),
    }


def walk(document: dict[str, Any]) -> list[Bound]:
    doc = Document(document)
    found: list[Bound] = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            label = f"{method.upper()} {path}"
            for param in [*item.get("parameters", []), *op.get("parameters", [])]:
                param = doc.resolve(param)
                if param["in"] == "query":
                    root = {"type": "object", "properties": {param["name"]: param["schema"]}}
                    found.extend(doc.bounds(label, "query", root))
            content = op.get("requestBody", {}).get("content", {})
            for media, body in content.items():
                location = "form" if media == "multipart/form-data" else "body"
                found.extend(doc.bounds(label, location, body["schema"]))
    return found


def _send(http: httpx.Client, bound: Bound, path: str, request: dict[str, Any]) -> httpx.Response:
    method = bound.operation.split()[0]
    if bound.location == "query":
        return http.request(method, path, params=request)
    if bound.location == "form":
        files = {"file": ("bound.txt", b"bound\n")}
        return http.request(method, path, data=request, files=files)
    return http.request(
        method,
        path,
        content=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )


def _param(bound: Bound) -> str:
    """The name errors give the field: a form field ``expires_after[seconds]`` is the object
    member ``expires_after.seconds`` (as in a JSON body)."""
    if bound.location == "form":
        return re.sub(r"\[([^\]]+)\]", r".\1", bound.param)
    return bound.param


def _error(response: httpx.Response) -> dict[str, Any]:
    if response.status_code < 400:
        return {}
    error: dict[str, Any] = response.json()["error"]
    return error


def _in_context(bound: Bound, base: dict[str, Any]) -> tuple[Bound, dict[str, Any]]:
    """The base request with what the field needs, and the bound moved after the items that
    must precede its array element."""
    base = {**base, **json.loads(json.dumps(CONTEXT.get((bound.operation, bound.param), {})))}
    marker = bound.id.removeprefix(f"{bound.operation} {bound.location} ")
    for (op, where), items in PRECEDING.items():
        if op != bound.operation or not marker.startswith(where):
            continue
        array = where.split("[", 1)[0]
        depth = next(i for i, s in enumerate(bound.steps) if s.key == array) + 1
        steps = list(bound.steps)
        steps[depth] = Step(len(items), steps[depth].schema)
        bound = dataclasses.replace(bound, steps=tuple(steps))
        base[array] = json.loads(json.dumps(items))
    return bound, base


def _refused_for(bound: Bound, response: httpx.Response, *, at: bool) -> bool:
    """Whether the response refuses the request for the bounded field (at the bound: other than
    because the id there names nothing)."""
    error = _error(response)
    if response.status_code != 400 or error.get("param") != _param(bound):
        return False
    return not at or not any(
        error.get("code") == code and re.search(wording, error.get("message", ""))
        for code, wording in NAMES_NOTHING
    )


def test_every_documented_bound_is_enforced_at_its_value(
    bounds_server: Server, http: httpx.Client
) -> None:
    document = http.get(bounds_server.root + "/openapi.json").json()
    doc = Document(document)
    bases = _bases(http)
    bounds = walk(document)
    assert len({b.id for b in bounds}) == len(bounds), "two bounds walked to one name"
    # A new operation with a bound needs a valid request here to be walked.
    assert {b.operation for b in bounds} <= set(bases), {b.operation for b in bounds} - set(bases)

    report: list[str] = []
    wrong: list[str] = []
    for walked in bounds:
        path, base = bases[walked.operation]
        bound, base = _in_context(walked, base)
        past = _send(http, bound, path, place(base, bound, bound.past, doc))
        at = _send(http, bound, path, place(base, bound, bound.at, doc))
        outcome = {
            "past": _refused_for(bound, past, at=False),
            "at": not _refused_for(bound, at, at=True),
        }
        line = f"{walked.id} [{bound.past!r:.24} / {bound.at!r:.24}]"
        for side, response in (("past", past), ("at", at)):
            error = _error(response)
            line += f"; {side}: {response.status_code} {error.get('param')} {error.get('code')}"
        report.append(line)
        for side, ok in outcome.items():
            known = (walked.id, side) in KNOWN_MISMATCHES
            if ok == known:
                word = "fixed, take it off KNOWN_MISMATCHES" if known else "wrong"
                wrong.append(f"{side} {word}: {line}")
    # The fields covered, for the record (pytest -s, or in the failure's captured output).
    print(f"{len(bounds)} bounds walked:", *report, sep="\n")
    assert not wrong, "\n".join(wrong)
