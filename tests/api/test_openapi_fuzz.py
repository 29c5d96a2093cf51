"""Stateless fuzzing of every operation in ftserve's own OpenAPI document, against a real server.

The document is loaded from the running server (``GET /openapi.json``), so what is fuzzed is what
ftserve publishes. Each operation gets a bounded number of schemathesis-generated requests; some
of them carry the ids of real objects seeded first (a file, a job, its events), so the handlers
behind the 404s are reached too. Every response goes through these checks:

- ``not_a_server_error``: no 5xx, whatever the input.
- ``status_code_conformance``: the status is one the document lists for the operation.
- ``content_type_conformance``: the media type is the documented one.
- ``response_schema_conformance``: the body validates against the documented schema (the
  objects are closed, so an undocumented field fails too).
- ``response_headers_conformance``: ``x-request-id`` everywhere, ``WWW-Authenticate`` on 401,
  ``Allow`` on 405, ``Content-Disposition`` on downloads.
- ``ignored_auth``: a request that succeeded is sent again without a key and with a wrong one,
  and must then be refused; every operation under ``/v1`` requires a key.

Left out on purpose: ``positive_data_acceptance`` (valid-looking ids name no object, so a 404 for
schema-valid input is right here), ``negative_data_rejection`` (only positive data is generated;
several checks, such as "suffix has no whitespace" or "the training file exists and has purpose
fine-tune", are not expressible as schema, so the schema cannot say which inputs must be
refused), ``use_after_free`` / ``ensure_resource_availability`` (stateful checks; this suite is
stateless) and ``max_response_time`` (timing on a shared 2-core machine is noise).

Before fuzzing, a job is created and its files validated; afterwards the test checks that nothing
the fuzzer sent corrupted stored state: the protected file's bytes and description, the job's
earlier events (same bodies, same order) and its immutable fields are unchanged, and the server is
still healthy. Cancel, pause and resume may legitimately change the job's *status* and append
events; the fuzzer may delete only a file made for that purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_KEY, Server, chat_rows, jsonl

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Both documented schemes get the real key: schemathesis then sends one of them with each request
# (so both header forms are exercised) and never makes up a credential of its own.
CONFIG = {"auth": {"openapi": {"bearerAuth": {"bearer": API_KEY},
                               "apiKeyAuth": {"api_key": API_KEY}}},
          "generation": {"with-security-parameters": False}}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
    *([__import__("schemathesis.specs.openapi.checks", fromlist=["x"]).negative_data_rejection] if __import__("os").environ.get("FUZZ_MODE") == "negative" else []),
]
# Per operation. ~15 operations x 25 examples (+ the auth probes and shrinking on failure) keeps
# the whole test near 30 s on a 2-core machine.
MAX_EXAMPLES = int(__import__("os").environ.get("FUZZ_N", "25"))
# Generated state-changing calls run last, so the read-only operations see the seeded job in
# its first state, and the single DELETE that can hit something hits its own victim file.
LAST = ("POST /fine_tuning/jobs/{fine_tuning_job_id}/pause",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/resume",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        "DELETE /files/{file_id}")
# The job fields no request may change (status, finished_at, estimated_finish may).
IMMUTABLE_JOB_FIELDS = (
    "id", "object", "model", "created_at", "organization_id", "training_file", "validation_file",
    "hyperparameters", "method", "seed", "user_provided_suffix", "metadata", "integrations",
    "ftserve", "fine_tuned_model", "trained_tokens", "result_files",
)


@dataclass
class Seeded:
    """Real objects, and what they looked like before any generated request was sent."""

    file_id: str
    victim_file_ids: list[str]
    job_id: str
    file_object: dict[str, Any]
    file_content: bytes
    job_object: dict[str, Any]
    events: list[dict[str, Any]]
    # Where generated requests may carry a real value instead of a generated one.
    path_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    query_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    body_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the seeded job to leave validating_files")
        time.sleep(0.05)


def _all_events(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    page = http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 10_000})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["has_more"] is False
    events: list[dict[str, Any]] = body["data"]
    return events


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def seeded(http: httpx.Client) -> Seeded:
    content = jsonl(chat_rows(12))
    up = http.post("/files", files={"file": ("protected.jsonl", content)},
                   data={"purpose": "fine-tune"})
    assert up.status_code == 200, up.text
    file_id = up.json()["id"]
    victims = []
    for i in range(3):
        v = http.post("/files", files={"file": (f"victim-{i}.txt", b"delete me")},
                      data={"purpose": "assistants"})
        assert v.status_code == 200, v.text
        victims.append(v.json()["id"])
    created = http.post("/fine_tuning/jobs", json={
        "model": "ftserve-tiny", "training_file": file_id, "validation_file": file_id,
        "suffix": "fuzz-seed", "seed": 7, "metadata": {"purpose": "fuzz"},
        "method": {"type": "supervised",
                   "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
    })
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    _wait_for(lambda: http.get(f"/fine_tuning/jobs/{job_id}").json()["status"]
              != "validating_files")
    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    assert job["status"] == "queued", job
    events = _all_events(http, job_id)
    assert len(events) == 3, events  # created, validating, validated
    got = http.get(f"/files/{file_id}/content")
    assert got.status_code == 200 and got.content == content
    return Seeded(
        file_id=file_id,
        victim_file_ids=victims,
        job_id=job_id,
        file_object=http.get(f"/files/{file_id}").json(),
        file_content=content,
        job_object=job,
        events=events,
        path_values={
            "fine_tuning_job_id": {"*": [job_id]},
            # Deleting the protected file would make the corruption check meaningless.
            "file_id": {"DELETE": victims, "*": [file_id]},
            "model": {"*": ["ftserve-tiny"]},
        },
        query_values={
            "after": {
                "GET /fine_tuning/jobs/{fine_tuning_job_id}/events": [e["id"] for e in events],
                "GET /fine_tuning/jobs": [job_id],
                "GET /files": [file_id, *victims],
            },
            "purpose": {"GET /files": ["fine-tune"]},
        },
        body_values={
            "training_file": {"POST /fine_tuning/jobs": [file_id]},
            "validation_file": {"POST /fine_tuning/jobs": [file_id]},
            "model": {"POST /fine_tuning/jobs": ["ftserve-tiny"]},
        },
    )


def _pick(values: dict[str, list[str]], op: schemathesis.APIOperation) -> list[str]:
    return values.get(op.label) or values.get(op.method.upper()) or values.get("*") or []


def _with_real_values(op: schemathesis.APIOperation, seeded: Seeded) -> st.SearchStrategy[Any]:
    """The operation's generated cases, where each id-like value is, half the time, a real one."""
    base = op.as_strategy(schemathesis.GenerationMode(__import__("os").environ.get("FUZZ_MODE", "positive")))

    @st.composite
    def cases(draw: st.DrawFn) -> Any:
        case = draw(base)
        containers = (
            (case.path_parameters, seeded.path_values),
            (case.query, seeded.query_values),
            (case.body if isinstance(case.body, dict) else None, seeded.body_values),
        )
        for container, table in containers:
            if container is None:
                continue
            for name, per_op in table.items():
                real = _pick(per_op, op)
                if container is case.path_parameters and name not in container:
                    continue  # "*" entries apply only to operations with that path parameter
                if real and not __import__("os").environ.get("FUZZ_NOREAL") and draw(st.booleans()):
                    container[name] = draw(st.sampled_from(real))
        return case

    return cases()


def _fuzz(
    op: schemathesis.APIOperation, seeded: Seeded, session: requests.Session, statuses: list[int]
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        # schemathesis strategies draw a lot per case; generation speed is not under test here.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )
    @given(case=_with_real_values(op, seeded))
    def run(case: Any) -> None:
        response = case.call_and_validate(session=session, checks=CHECKS)
        statuses.append(response.status_code)

    run()


def _ordered(schema: Any) -> list[schemathesis.APIOperation]:
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted(ops, key=lambda op: LAST.index(op.label) if op.label in LAST else -1)


def test_fuzz_every_operation(server: Server, http: httpx.Client, seeded: Seeded) -> None:
    schema = schemathesis.openapi.from_url(
        server.root + "/openapi.json", config=schemathesis.Config.from_dict(CONFIG)
    )
    ops = _ordered(schema)
    assert {op.label for op in ops} >= {
        "POST /files", "GET /files", "GET /files/{file_id}", "DELETE /files/{file_id}",
        "GET /files/{file_id}/content", "POST /fine_tuning/jobs", "GET /fine_tuning/jobs",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}", *LAST,
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", "GET /models",
        "GET /models/{model}",
    }
    failures: dict[str, BaseException] = {}
    statuses: dict[str, list[int]] = {}
    with requests.Session() as session:
        seen = []
        session.hooks["response"].append(lambda r, *a, **k: seen.append((r.request.method, r.request.url.split("?")[0][-30:], r.status_code, r.request.headers.get("Authorization", "")[:12], r.request.headers.get("api-key", "")[:5])))
        for op in ops:
            if __import__("os").environ.get("FUZZ_MODE") == "negative" and not (op.query or op.body):
                continue
            try:
                _fuzz(op, seeded, session, statuses.setdefault(op.label, []))
            except (Exception, BaseExceptionGroup) as exc:  # collect, so one bad operation does not hide the others
                failures[op.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
    print("RATES", {label: sum(200 <= c < 300 for c in codes) for label, codes in statuses.items()})
    print({label: len(codes) for label, codes in statuses.items()})
    import collections; print(len(seen), collections.Counter((x[2], x[3], x[4]) for x in seen))

    # Nothing the fuzzer sent corrupted what was stored before it started.
    assert http.get(server.root + "/health").json() == {"status": "ok"}
    assert http.get(f"/files/{seeded.file_id}").json() == seeded.file_object
    content = http.get(f"/files/{seeded.file_id}/content")
    assert content.status_code == 200 and content.content == seeded.file_content
    job = http.get(f"/fine_tuning/jobs/{seeded.job_id}").json()
    for name in IMMUTABLE_JOB_FIELDS:
        assert job[name] == seeded.job_object[name], name
    events = _all_events(http, seeded.job_id)
    # Newest first: what existed before is the oldest part of the list, byte for byte.
    assert events[len(events) - len(seeded.events):] == seeded.events
