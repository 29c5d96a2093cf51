"""Stateless fuzzing of every operation in ftserve's own OpenAPI document, against a real server.

The document is loaded from the running server (``GET /openapi.json``), so what is fuzzed is what
ftserve publishes. Each operation gets one known-good explicit case (real ids; it must succeed)
and then a bounded number of schemathesis-generated requests, in
which every id-like value is, part of the time, the id of a real seeded object, so the handlers
behind the 404s are reached too. Operations with query parameters or a body get a second, shorter
run with schemathesis' *negative* (schema-violating) data, which must be refused with a 4xx
(``negative_data_rejection``, below). Every response goes through these checks:

- ``not_a_server_error``: no 5xx, whatever the input.
- ``status_code_conformance``: the status is one the document lists for the operation.
- ``content_type_conformance``: the media type is the documented one.
- ``response_schema_conformance``: the body validates against the documented schema (the
  objects are closed, so an undocumented field fails too).
- ``response_headers_conformance``: ``x-request-id`` on every response, ``WWW-Authenticate`` on
  401, ``Allow`` on 405, ``Content-Disposition`` on downloads.
- ``ignored_auth``: a request that succeeded is sent again without a key, with a wrong bearer key
  and with a wrong ``api-key``, and each of those must be refused.

In the negative run, also:

- ``negative_data_rejection``: a request whose body (JSON or multipart form) or query violates
  the document is refused with a 4xx. Schemathesis re-validates a case after it is changed, and
  the changes here keep that verdict honest: real ids go only into the *path* of a negative case
  (a real id put in the query or body could be the very value that was negated), and negated
  values the wire cannot carry as generated are removed first (``_drop_unfaithful_negations``: a
  deepObject ``metadata`` that is not an object of strings, whose brackets ftserve rightly reads
  as other keys; ``Last-Event-ID``, which the document says is ignored without ``stream=true``).
  Unknown query parameters are ignored, as OpenAI's API does; schemathesis does not count those
  alone as invalid data. ``tests/api/test_openapi_bounds.py`` walks every documented bound
  one by one.

Left out on purpose, because they would be wrong for this API:

- ``positive_data_acceptance``: schema-valid ids mostly name no object, so a 404 for valid input
  is the right answer here, not a failure.
- ``use_after_free`` / ``ensure_resource_availability``: stateful (link-following) checks, and
  this suite is stateless.
- ``max_response_time``: timing on a shared 2-core machine is noise.

Before fuzzing, a file and a job are created and the job's files validated; afterwards the test
checks that nothing the fuzzer sent corrupted stored state: the protected file's bytes and
description, the job's earlier events (same bodies, same order) and its immutable fields are
unchanged, every job the fuzzer created left ``validating_files``, nothing was logged as a
traceback, and the server still answers. Cancel, pause and resume may legitimately change the
seeded job's *status* and append events; DELETE may hit only files and a planted fine-tuned model made to be deleted.

The multipart upload and the binary download are fuzzed like the rest: schemathesis generates the
form (binary ``file``, ``purpose``, the two ``expires_after[...]`` fields), and checks the
download's media type and ``Content-Disposition`` (it does not validate binary bodies).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.fuzz_seed import Seeded, all_events, known_good, seed, wait_for
from tests.conftest import API_KEY, Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

BEARER = {"Authorization": f"Bearer {API_KEY}"}
API_KEY_HEADER = {"api-key": API_KEY}
# Credentials are passed with each call (both header forms, drawn per case), so schemathesis must
# not make up values for the documented security schemes itself.
CONFIG = {"generation": {"with-security-parameters": False}}
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
CHECKS = [*CONFORMANCE, ignored_auth]
GENERATING = ("completions", "/responses")  # operations that generate text
# Per operation. 15 operations x (1 explicit + 30 generated) + 9 x 15 negative, plus the auth
# probes, run in about 5 s on a 2-core machine; shrinking a failure adds a few seconds.
MAX_EXAMPLES = 30
MAX_NEGATIVE_EXAMPLES = 15
# Generated state-changing calls run last, so the read-only operations see the seeded job in its
# first state; pause before resume before cancel, so each can succeed once on the seeded job.
LAST = (
    "POST /fine_tuning/jobs/{fine_tuning_job_id}/pause",
    "POST /fine_tuning/jobs/{fine_tuning_job_id}/resume",
    "POST /fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    "DELETE /files/{file_id}",
    "DELETE /models/{model}",
    "DELETE /responses/{response_id}",
    "POST /batches/{batch_id}/cancel",
)
# No request may change these. (The `server` fixture runs no worker, so even the fields training
# fills in - hyperparameters resolved, fine_tuned_model, trained_tokens, result_files - must stay.)
IMMUTABLE_JOB_FIELDS = (
    "id",
    "object",
    "model",
    "created_at",
    "organization_id",
    "training_file",
    "validation_file",
    "hyperparameters",
    "method",
    "seed",
    "user_provided_suffix",
    "metadata",
    "integrations",
    "ftserve",
    "fine_tuned_model",
    "trained_tokens",
    "result_files",
)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=BEARER, timeout=30) as client:
        yield client


@pytest.fixture
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(
        server.root + "/openapi.json", config=schemathesis.Config.from_dict(CONFIG)
    )


@pytest.fixture
def seeded(server: Server, http: httpx.Client) -> Seeded:
    return seed(server, http)


def _pick(values: dict[str, list[str]], op: Any) -> list[str]:
    return values.get(op.label) or values.get(op.method.upper()) or values.get("*") or []


def _with_real_values(op: Any, seeded: Seeded, mode: schemathesis.GenerationMode) -> Any:
    """The operation's generated cases, where id-like values are often real ones: half the time
    for path and query values, three times in four for the create-job body (it needs both a real
    model and a real file to get past the 400s)."""
    base = op.as_strategy(mode)
    positive = mode is schemathesis.GenerationMode.POSITIVE

    @st.composite
    def cases(draw: st.DrawFn) -> Any:
        case = draw(base)
        if not positive:
            _drop_unfaithful_negations(case)
        body = case.body if isinstance(case.body, dict) else None
        tables = [
            (case.path_parameters, seeded.path_values, 2),
            (case.query, seeded.query_values, 2),
            # Generation is costly and its 4xx paths have their own tests: completions and responses
            # bodies always name a real model and a bounded n and max_tokens.
            (body, seeded.body_values, 1 if op.label.endswith(GENERATING) else 4),
        ]
        # A negative case keeps its generated query and body: a real value put there could be
        # the very one that was negated. Real path ids let it reach the handlers behind the 404s.
        for container, table, odds in tables if positive else tables[:1]:
            if container is None:
                continue
            for name, per_op in table.items():
                real = _pick(per_op, op)
                if container is case.path_parameters and name not in container:
                    continue  # "*" entries apply only to operations with that path parameter
                if real and (odds == 1 or draw(st.integers(1, odds)) > 1):
                    container[name] = draw(st.sampled_from(real))
        # The live event stream of a job that is not finished stays open until it finishes, and
        # the seeded job never does (no worker): a stream of it is read from the finished job,
        # which replays its events and ends. (tests/api/test_events_stream.py streams live.)
        path = case.path_parameters or {}
        streamed = (case.query or {}).get("stream") == "true"
        if streamed and path.get("fine_tuning_job_id") == seeded.job_id:
            path["fine_tuning_job_id"] = seeded.finished_job_id
        return case

    return cases()


def _drop_unfaithful_negations(case: Any) -> None:
    """Remove the negated values the wire cannot carry as generated, or that the document says
    are ignored here; schemathesis then re-validates the case, and one left valid is judged as a
    positive one.

    - ``metadata`` (deepObject, which schemathesis flattens into ``metadata[key]`` entries): only
      an object of strings has a wire form. A nested or non-string value is serialised into
      brackets and text that ftserve rightly reads as a valid filter (``metadata[a][b]=x`` is
      the key ``a][b``; ``metadata[a]=5`` the string ``"5"``).
    - ``Last-Event-ID``: documented as ignored without ``stream=true``.
    """
    query = case.query
    if query:
        for key in [k for k in query if k.startswith("metadata")]:
            value = query[key]
            flat = key.startswith("metadata[") and key.endswith("]") and "][" not in key
            if not (flat and isinstance(value, str)):
                del query[key]
    headers = case.headers
    if headers and "Last-Event-ID" in headers and (query or {}).get("stream") != "true":
        del headers["Last-Event-ID"]


def _fuzz(
    op: Any,
    seeded: Seeded,
    session: requests.Session,
    statuses: list[int],
    mode: schemathesis.GenerationMode,
) -> None:
    positive = mode is schemathesis.GenerationMode.POSITIVE

    @settings(
        max_examples=MAX_EXAMPLES if positive else MAX_NEGATIVE_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        # Schemathesis strategies draw a lot per case; generation speed is not what is tested.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=_with_real_values(op, seeded, mode), auth=st.sampled_from([BEARER, API_KEY_HEADER]))
    def run(case: Any, auth: dict[str, str]) -> None:
        checks = CHECKS if positive else [*CHECKS, negative_data_rejection]
        response = case.call_and_validate(session=session, headers=auth, checks=checks)
        statuses.append(response.status_code)

    run()


def test_fuzz_every_operation(
    server: Server, http: httpx.Client, api_schema: Any, seeded: Seeded
) -> None:
    good_cases = known_good(seeded)
    ops = sorted(
        (result.ok() for result in api_schema.get_all_operations()),
        key=lambda op: LAST.index(op.label) if op.label in LAST else -1,
    )
    # Every documented operation is fuzzed, and has a known-good case (a new one needs one too).
    assert {op.label for op in ops} == set(good_cases)
    log_start = len(server.log())

    failures: dict[str, BaseException] = {}
    generated: dict[str, list[int]] = {}
    with requests.Session() as session:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            positive = mode is schemathesis.GenerationMode.POSITIVE
            for op in ops:
                if not positive and not (op.query or op.body):
                    continue  # only path parameters: nothing to negate that still routes here
                label = f"{op.label} [{mode.value}]"
                try:
                    if positive:
                        # The known-good case first; it must succeed.
                        good = op.Case(**good_cases[op.label])
                        response = good.call_and_validate(
                            session=session, headers=BEARER, checks=CHECKS
                        )
                        assert 200 <= response.status_code < 300, (label, response.text)
                    _fuzz(op, seeded, session, generated.setdefault(label, []), mode)
                # Collected (schemathesis' FailureGroup is a BaseExceptionGroup), so one bad
                # operation does not hide the others.
                except (Exception, BaseExceptionGroup) as exc:
                    failures[label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
    # Generated requests reached real objects too (state changes succeed once, on the
    # known-good case, and are refused afterwards).
    for op in ops:
        codes = generated[f"{op.label} [positive]"]
        assert op.label in LAST or any(200 <= c < 300 for c in codes), (op.label, codes)

    # Nothing the fuzzer sent corrupted what was stored before it started.
    assert server.proc is not None and server.proc.poll() is None
    assert http.get(server.root + "/health").json() == {"status": "ok"}
    assert http.get(f"/files/{seeded.file_id}").json() == seeded.file_object
    content = http.get(f"/files/{seeded.file_id}/content")
    assert content.status_code == 200 and content.content == seeded.file_content
    job = http.get(f"/fine_tuning/jobs/{seeded.job_id}").json()
    for name in IMMUTABLE_JOB_FIELDS:
        assert job[name] == seeded.job_object[name], name
    events = all_events(http, seeded.job_id)
    # Newest first: what existed before is the oldest part of the list, unchanged and in order.
    assert events[len(events) - len(seeded.events) :] == seeded.events
    # Every job the fuzzer created was picked up by the validator (no thread died on one), and
    # nothing went wrong out of sight of the HTTP responses.
    wait_for(
        lambda: all(
            j["status"] != "validating_files"
            for j in http.get("/fine_tuning/jobs", params={"limit": 10_000}).json()["data"]
        ),
        "every created job to leave validating_files",
    )
    new_log = server.log()[log_start:]
    assert "Traceback" not in new_log, new_log


@pytest.mark.parametrize(
    "header",
    [None, {"Authorization": "Bearer sk-wrong-0123456789"}, {"api-key": "sk-wrong-0123456789"}],
    ids=["no-key", "wrong-bearer", "wrong-api-key"],
)
def test_every_operation_refuses_a_missing_or_wrong_key(
    api_schema: Any, header: dict[str, str] | None
) -> None:
    """The documented 401 (envelope, `WWW-Authenticate`, `x-request-id`) on every operation; the
    fuzz run above only ever sends a valid key."""
    fake = {
        "file_id": "file-x",
        "fine_tuning_job_id": "ftjob-x",
        "model": "ftserve-tiny",
        "response_id": "resp_x",
        "batch_id": "batch_x",
    }
    bodies: dict[str, dict[str, Any]] = {
        "POST /files": {
            "body": {"file": b"x", "purpose": "assistants"},
            "media_type": "multipart/form-data",
        },
        "POST /fine_tuning/jobs": {
            "body": {"model": "ftserve-tiny", "training_file": "file-x"},
            "media_type": "application/json",
        },
    }
    for result in api_schema.get_all_operations():
        op = result.ok()
        path = {p.name: fake[p.name] for p in op.path_parameters}
        case = op.Case(path_parameters=path, **bodies.get(op.label, {}))
        response = case.call_and_validate(headers=header, checks=CONFORMANCE)
        assert response.status_code == 401, op.label


# Inputs that crashed the server (500) when this suite was first run; the fuzzer finds them only
# now and then, so they are pinned here as regression cases.
CRASHERS = [
    pytest.param(
        "POST /fine_tuning/jobs",
        {
            "body": {"model": "~nosuchuser", "training_file": "file-x"},
            "media_type": "application/json",
        },
        id="model-unknown-home-dir",
    ),
    pytest.param(
        "POST /fine_tuning/jobs",
        {"body": {"model": "m" * 300, "training_file": "file-x"}, "media_type": "application/json"},
        id="model-name-too-long",
    ),
    pytest.param(
        "POST /files",
        {
            "body": {
                "file": b"x",
                "purpose": "assistants",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": "\u00b2",
            },
            "media_type": "multipart/form-data",
        },
        id="expiry-superscript-digit",
    ),
    pytest.param(
        "GET /fine_tuning/jobs",
        {"query": {"metadata[a\x00b]": "x"}},
        id="metadata-filter-nul-key",
    ),
]


@pytest.mark.parametrize(("label", "request_parts"), CRASHERS)
def test_inputs_that_crashed_the_server(
    api_schema: Any, seeded: Seeded, label: str, request_parts: dict[str, Any]
) -> None:
    # `seeded` provides a job with metadata, which the metadata-filter crash needs.
    op = api_schema.find_operation_by_label(label)
    assert op is not None
    response = op.Case(**request_parts).call_and_validate(headers=BEARER, checks=CONFORMANCE)
    if label == "GET /fine_tuning/jobs":
        # A key with a NUL in it is a key like any other: it matches no job.
        assert response.status_code == 200 and response.json()["data"] == []
    else:
        assert 400 <= response.status_code < 500
