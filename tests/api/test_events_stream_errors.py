"""The live event stream on the API-only ``server`` fixture: errors before the stream starts,
``stream=false``, the wire framing read byte by byte from a socket, a queued job's stream kept
open."""

from __future__ import annotations

import re
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from ftserve.events.messages import make_event
from tests.api.sse_client import (
    RawStream,
    assert_equals_list,
    assert_sse_headers,
    message_texts,
    stream_path,
)
from tests.conftest import API_KEY, OTHER_ORG_KEY, Server, chat_rows, upload, wait_status

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

MARK = "a mark written by the test"


@pytest.fixture(scope="module")
def queued_job(server: Server) -> str:
    """A job that stays queued (the `server` fixture runs no worker)."""
    client = server.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(12))
    )
    assert wait_status(client, job.id, {"queued"}) == "queued"
    return job.id


@pytest.fixture(scope="module")
def cancelled_job(server: Server) -> str:
    client = server.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(12))
    )
    wait_status(client, job.id, {"queued"})
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    return job.id


def error_of(stream: RawStream) -> dict[str, Any]:
    assert stream.headers["content-type"] == "application/json"
    assert stream.headers["x-request-id"].startswith("req_")
    error: dict[str, Any] = stream.json()["error"]
    return error


def raw_get(server: Server, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    stream = RawStream(server.port, path, headers, **kw)
    stream.read_to_end(timeout=30)
    stream.close()
    return stream


def test_errors_come_before_the_stream_as_json(
    server: Server, queued_job: str, cancelled_job: str
) -> None:
    unknown = raw_get(server, stream_path("ftjob-nope"))
    listed = raw_get(server, "/v1/fine_tuning/jobs/ftjob-nope/events")
    assert unknown.status == listed.status == 404
    assert error_of(unknown) == error_of(listed)
    assert error_of(unknown)["param"] == "fine_tune_id"
    # Another organization's job is unknown too, whatever Last-Event-ID says.
    other = raw_get(
        server, stream_path(queued_job), {"Last-Event-ID": "ftevent-x"}, key=OTHER_ORG_KEY
    )
    assert other.status == 404 and error_of(other)["code"] == "fine_tune_not_found"

    nokey = raw_get(server, stream_path(queued_job), key=None)
    assert nokey.status == 401 and error_of(nokey)["type"] == "invalid_request_error"
    assert nokey.headers["www-authenticate"].startswith("Bearer")

    event_of_other_job = server.client().fine_tuning.jobs.list_events(cancelled_job).data[0].id
    cases: list[tuple[str, dict[str, str], str]] = [
        ("stream=true&after=ftevent-x", {}, "after"),
        ("stream=true&limit=5", {}, "limit"),
        ("stream=true&limit=0", {}, "limit"),
        ("stream=yes", {}, "stream"),
        ("stream=True", {}, "stream"),
        ("stream=1", {}, "stream"),
        ("stream=", {}, "stream"),
        ("stream=true", {"Last-Event-ID": "ftevent-nope"}, "Last-Event-ID"),
        ("stream=true", {"Last-Event-ID": event_of_other_job}, "Last-Event-ID"),
    ]
    for query, headers, param in cases:
        resp = raw_get(server, stream_path(queued_job, query=query), headers)
        assert resp.status == 400, (query, headers, resp.body)
        error = error_of(resp)
        assert error["param"] == param, (query, error)
        assert error["type"] == "invalid_request_error"
    for prefix, query in (("/openai/v1", "stream=yes"), ("/openai", "api-version=x&stream=yes")):
        resp = raw_get(server, stream_path(queued_job, prefix, query))
        assert resp.status == 400 and error_of(resp)["param"] == "stream"
        assert resp.headers["apim-request-id"] == resp.headers["x-request-id"]


def test_stream_false_is_the_list(server: Server, queued_job: str) -> None:
    plain = raw_get(server, f"/v1/fine_tuning/jobs/{queued_job}/events?limit=2")
    explicit = raw_get(server, stream_path(queued_job, query="stream=false&limit=2"))
    assert plain.status == explicit.status == 200
    assert explicit.headers["content-type"] == "application/json"
    assert explicit.body == plain.body
    assert len(explicit.json()["data"]) == 2
    # Last-Event-ID means nothing to a list.
    with_header = raw_get(
        server, stream_path(queued_job, query="stream=false&limit=2"), {"Last-Event-ID": "x"}
    )
    assert with_header.body == plain.body


MESSAGE = re.compile(
    rb'id: (ftevent-[0-9A-Za-z]{24})\ndata: (\{"object":"fine_tuning\.job\.event"[^\n]*\})\n\n'
)


def test_wire_framing(server: Server, cancelled_job: str) -> None:
    stream = raw_get(server, stream_path(cancelled_job))
    assert stream.status_line == "HTTP/1.1 200 OK"
    assert_sse_headers(stream)
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    # The whole body is messages and nothing else: id line, data line, blank line.
    found = MESSAGE.findall(stream.body)
    assert b"".join(b"id: %s\ndata: %s\n\n" % m for m in found) == stream.body
    assert [orjson.loads(data)["id"].encode() for _, data in found] == [i for i, _ in found]
    assert len(found) == 4  # created, validating, validated, cancelled
    assert_equals_list(server.root, cancelled_job, stream.messages())
    # HEAD: the same headers, no body, no connection held until the job ends.
    head = httpx.head(
        server.root + stream_path(cancelled_job), headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")


def test_a_queued_jobs_stream_stays_open_and_a_disconnect_is_clean(server: Server) -> None:
    client = server.client()
    job_id = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(12))
    ).id
    assert wait_status(client, job_id, {"queued"}) == "queued"
    stream = RawStream(server.port, stream_path(job_id))
    try:
        stream.read_until(lambda s: s.count() == 3, timeout=30)
        # Nothing more comes while the job is queued, its log open: an event written now (from
        # another process, as a worker's is) is the very next message, and the stream is open.
        store = server.open_store()
        try:
            store.append_events(job_id, [make_event(MARK)])
        finally:
            store.close()
        stream.read_until(lambda s: s.count() >= 4, timeout=30)
        assert message_texts(stream.messages())[3:] == [MARK]
        assert not stream.ended
    finally:
        stream.close()
    # The server is unharmed and the list unchanged: the three events and the mark.
    assert len(server.client().fine_tuning.jobs.list_events(job_id).data) == 4
