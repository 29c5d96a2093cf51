"""The Batch API against a real server and inference process, through the official SDK: a batch of
50 chat requests written as OpenAI's batch guide shows them, its output matched by custom_id; a
server killed mid-batch (kill -9) whose restart finishes it with every line exactly once; the
input file's checks; cancel; another organization's batch."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tests.api.conftest import MODEL
from tests.conftest import OTHER_ORG_KEY, Server

pytestmark = pytest.mark.both_backends

CHAT = "/v1/chat/completions"
_NONE = openai.types.BatchRequestCounts(total=0, completed=0, failed=0)


def _line(i: int, *, url: str = CHAT, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    # The guide's request line: custom_id, method, url, body.
    return {
        "custom_id": f"request-{i}",
        "method": "POST",
        "url": url,
        "body": {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"Hello world {i}"},
            ],
            "max_tokens": 4,
            "temperature": 0,
            **extra,
        },
    }


def _submit(
    client: openai.OpenAI, lines: list[dict[str, Any]] | bytes, endpoint: str = CHAT
) -> str:
    data = (
        lines
        if isinstance(lines, bytes)
        else b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    )
    file = client.files.create(file=("batchinput.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=file.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata={"description": "nightly eval job"},
    )
    assert batch.status == "validating" and batch.object == "batch"
    return batch.id


def _wait(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(x) for x in text.splitlines()]


def test_a_batch_of_50_chat_requests(server: Server) -> None:
    client = server.client()
    lines = [_line(i) for i in range(50)]
    lines[7]["body"]["temperature"] = 9  # the live endpoint's 400, in the error file
    batch_id = _submit(client, lines)
    done = _wait(client, batch_id, {"completed", "failed"})
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (50, 49)
    assert done.request_counts.failed == 1 and done.model == MODEL
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.metadata == {"description": "nightly eval job"}
    output = {x["custom_id"]: x for x in _lines(client, done.output_file_id)}
    assert set(output) == {f"request-{i}" for i in range(50) if i != 7}
    for x in output.values():
        assert x["error"] is None and x["id"].startswith("batch_req_")
        assert x["response"]["status_code"] == 200 and x["response"]["request_id"]
        body = openai.types.chat.ChatCompletion.model_validate(x["response"]["body"])
        assert body.model == MODEL and body.choices[0].finish_reason in ("stop", "length")
    # Each answer is its own line's: greedy, so the live endpoint says the same to the same body.
    for i in (3, 41):
        live = client.chat.completions.create(**lines[i]["body"])
        got = output[f"request-{i}"]["response"]["body"]["choices"][0]["message"]["content"]
        assert got == live.choices[0].message.content
    (bad,) = _lines(client, done.error_file_id)
    assert bad["custom_id"] == "request-7" and bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["param"] == "temperature"
    for file_id in (done.output_file_id, done.error_file_id):
        assert client.files.retrieve(file_id).purpose == "batch_output"
    listed = client.batches.list(limit=100)
    assert batch_id in [b.id for b in listed.data]
    # Another organization sees nothing of it.
    other = server.client(key=OTHER_ORG_KEY)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch_id)
    assert batch_id not in [b.id for b in other.batches.list().data]


def _failed_with(client: openai.OpenAI, lines: list[dict[str, Any]] | bytes) -> list[Any]:
    batch = _wait(client, _submit(client, lines), {"failed", "completed"}, timeout=30)
    assert batch.status == "failed" and batch.failed_at and batch.errors is not None
    assert batch.output_file_id is None
    return list(batch.errors.data or [])


def test_a_bad_input_file_fails_the_batch_naming_the_line(server: Server) -> None:
    client = server.client()
    (dup,) = _failed_with(client, [_line(1), _line(2), {**_line(3), "custom_id": "request-1"}])
    assert (dup.code, dup.line, dup.param) == ("duplicate_custom_id", 3, "custom_id")
    (url,) = _failed_with(client, [_line(1), _line(2, url="/v1/completions")])
    assert (url.code, url.line, url.param) == ("url_mismatch", 2, "url")
    (model,) = _failed_with(client, [_line(1), _line(2, model="ftserve-tiny-other")])
    assert (model.code, model.line, model.param) == ("model_mismatch", 2, "body.model")
    (method,) = _failed_with(client, [{**_line(1), "method": "GET"}])
    assert (method.code, method.line, method.param) == ("invalid_value", 1, "method")
    (bad_json,) = _failed_with(client, json.dumps(_line(1)).encode() + b"\n{not json\n")
    assert (bad_json.code, bad_json.line) == ("invalid_json_line", 2)
    (empty,) = _failed_with(client, b"\n")
    assert empty.code == "empty_file"


def test_refused_requests(server: Server) -> None:
    client = server.client()
    file = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    refused = ["/v1/embeddings", "/v1/moderations"]
    paths = httpx.get(server.root + "/openapi.json").json()["paths"]
    if "/responses" not in paths:
        refused.append("/v1/responses")  # a batch endpoint only where the server has the route
    for endpoint in refused:
        with pytest.raises(openai.BadRequestError) as err:
            client.batches.create(
                input_file_id=file.id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
            )
        assert err.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(
            input_file_id=file.id,
            endpoint=CHAT,
            completion_window="1h",  # type: ignore[arg-type]
        )
    assert err.value.body["param"] == "completion_window"  # type: ignore[index]
    tune = client.files.create(
        file=(
            "t.jsonl",
            b'{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n',
        ),
        purpose="fine-tune",
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=tune.id, endpoint=CHAT, completion_window="24h")
    assert err.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_cancel_ends_cancelled_with_what_finished(server: Server) -> None:
    client = server.client()
    batch_id = _submit(client, [_line(i, max_tokens=64) for i in range(100)])
    deadline = time.monotonic() + 60
    while (client.batches.retrieve(batch_id).request_counts or _NONE).completed == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = _wait(client, batch_id, {"cancelled"}, timeout=60)
    assert done.cancelled_at
    finished = _lines(client, done.output_file_id)
    not_run = _lines(client, done.error_file_id)
    assert finished and not_run and len(finished) + len(not_run) == 100
    assert {x["custom_id"] for x in finished + not_run} == {f"request-{i}" for i in range(100)}
    assert all(x["error"]["code"] == "batch_cancelled" for x in not_run)
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(_wait(client, _submit(client, [_line(0)]), {"completed"}).id)


def test_kill_9_mid_batch_loses_and_repeats_nothing(fresh_server: Server) -> None:
    fresh_server.env = {"FTSERVE_WORKERS": "0", "FTSERVE_LEASE_SECONDS": "2"}
    fresh_server.start()
    client = fresh_server.client()
    batch_id = _submit(client, [_line(i, max_tokens=16) for i in range(30)])
    deadline = time.monotonic() + 120
    while (client.batches.retrieve(batch_id).request_counts or _NONE).completed < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fresh_server.stop(signal.SIGKILL)
    store = fresh_server.open_store()
    try:
        before = {x.custom_id: x.result for x in store.batch_lines(batch_id, pending=False)}
        held = store.get_batch(None, batch_id)
    finally:
        store.close()
    finished = {c: r for c, r in before.items() if r is not None}
    assert held is not None and held.status == "in_progress" and held.claim_token
    assert 5 <= len(finished) < 30, len(finished)

    fresh_server.start()  # the dead server's lease runs out; the new one takes the batch
    done = _wait(client, batch_id, {"completed", "failed"})
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (30, 0)
    output = _lines(client, done.output_file_id)
    ids = [x["custom_id"] for x in output]
    assert sorted(ids) == sorted(f"request-{i}" for i in range(30))  # each exactly once
    by_id = {x["custom_id"]: x for x in output}
    # A line finished before the kill is in the output as it was stored then, not run again:
    # its line id and its completion's id are the first run's.
    for custom_id, result in finished.items():
        assert by_id[custom_id] == json.loads(result or "")
    chat_ids = [x["response"]["body"]["id"] for x in output]
    assert len(set(chat_ids)) == 30


def test_past_its_window_a_batch_expires_with_what_finished(server: Server) -> None:
    client = server.client()
    batch_id = _submit(client, [_line(i, max_tokens=64) for i in range(100)])
    deadline = time.monotonic() + 60
    while (client.batches.retrieve(batch_id).request_counts or _NONE).completed == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    store = server.open_store()  # the window ends now (24 hours are not waited for)
    try:
        ended = store.update_batch(
            batch_id, expect={"in_progress"}, changes={"expires_at": int(time.time())}
        )
    finally:
        store.close()
    assert ended is not None
    done = _wait(client, batch_id, {"expired"}, timeout=60)
    assert done.expired_at and done.request_counts is not None
    finished = _lines(client, done.output_file_id)
    not_run = _lines(client, done.error_file_id)
    assert finished and not_run and len(finished) + len(not_run) == 100
    assert len(finished) == done.request_counts.completed
    assert all(x["response"]["status_code"] == 200 for x in finished)
    assert all(x["error"]["code"] == "batch_expired" for x in not_run)


def test_a_batch_of_legacy_completions(server: Server) -> None:
    client = server.client()
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": MODEL, "prompt": f"Once {i}", "max_tokens": 3, "temperature": 0},
        }
        for i in range(3)
    ]
    done = _wait(client, _submit(client, lines, "/v1/completions"), {"completed", "failed"})
    assert done.status == "completed" and done.endpoint == "/v1/completions"
    output = {x["custom_id"]: x["response"]["body"] for x in _lines(client, done.output_file_id)}
    assert set(output) == {"c0", "c1", "c2"}
    live = client.completions.create(**lines[1]["body"])
    assert (
        openai.types.Completion.model_validate(output["c1"]).choices[0].text == live.choices[0].text
    )
