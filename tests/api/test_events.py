"""The seed endpoint: GET /fine_tuning/jobs/{id}/events — order, cursor, has_more, limits."""

from __future__ import annotations

import time

import httpx2 as httpx
import openai
import pytest

from ftserve.events.messages import make_event
from tests.conftest import API_KEY, Server, chat_rows, upload, wait_status

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

N_EXTRA = 300


@pytest.fixture(scope="module")
def busy_job(server: Server) -> str:
    """A job with hundreds of events, several per second, appended through the real store."""
    client = server.client()
    fid = upload(client, chat_rows(20))
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid)
    wait_status(client, job.id, {"queued"})
    store = server.open_store()
    now = int(time.time())
    events = [
        make_event(
            f"Step {i}/{N_EXTRA}: training loss={1 / i:.2f}",
            kind="metrics",
            data={
                "step": i,
                "total_steps": N_EXTRA,
                "train_loss": 1 / i,
                "train_mean_token_accuracy": 0.5,
            },
            created_at=now + i // 50,
        )  # many events share a second
        for i in range(1, N_EXTRA + 1)
    ]
    for start in range(0, N_EXTRA, 100):
        store.append_events(job.id, events[start : start + 100])
    store.close()
    return job.id


def test_validation_messages_in_openai_order(client: openai.OpenAI) -> None:
    fid = upload(client, chat_rows(50))
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid)
    assert wait_status(client, job.id, {"queued"}) == "queued"
    page = client.fine_tuning.jobs.list_events(job.id)
    assert [e.message for e in page.data] == [
        "Files validated, moving job to queued state",
        f"Validating training file: {fid}",
        f"Created fine-tuning job: {job.id}",
    ]
    assert page.has_more is False
    for e in page.data:
        assert e.object == "fine_tuning.job.event" and e.level == "info" and e.type == "message"
        assert e.id.startswith("ftevent-") and e.data == {}


def test_validation_file_variant(client: openai.OpenAI) -> None:
    t, v = upload(client, chat_rows(10)), upload(client, chat_rows(3))
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=t, validation_file=v)
    msgs = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert f"Validating training file: {t} and validation file: {v}" in msgs


def test_sdk_paging_equals_one_big_page(client: openai.OpenAI, busy_job: str) -> None:
    big = client.fine_tuning.jobs.list_events(busy_job, limit=1000)
    assert big.has_more is False
    assert len(big.data) == N_EXTRA + 3
    paged = list(client.fine_tuning.jobs.list_events(busy_job, limit=7))
    assert [e.id for e in paged] == [e.id for e in big.data]
    # Newest first: the last appended step leads, created_at never increases down the list.
    assert big.data[0].message == f"Step {N_EXTRA}/{N_EXTRA}: training loss=0.00"
    assert all(a.created_at >= b.created_at for a, b in zip(big.data, big.data[1:], strict=False))
    assert big.data[0].type == "metrics"
    assert big.data[0].data == {
        "step": N_EXTRA,
        "total_steps": N_EXTRA,
        "train_loss": 1 / N_EXTRA,
        "train_mean_token_accuracy": 0.5,
    }


def test_has_more_exact_and_past_the_end(client: openai.OpenAI, busy_job: str) -> None:
    total = N_EXTRA + 3
    exact = client.fine_tuning.jobs.list_events(busy_job, limit=total)
    assert len(exact.data) == total and exact.has_more is False
    one_short = client.fine_tuning.jobs.list_events(busy_job, limit=total - 1)
    assert one_short.has_more is True
    oldest = exact.data[-1].id
    resp = httpx.get(
        f"{client.base_url}fine_tuning/jobs/{busy_job}/events",
        params={"after": oldest},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert resp.status_code == 200
    assert resp.json() == {"object": "list", "data": [], "has_more": False}


def test_default_limit_is_20(client: openai.OpenAI, busy_job: str) -> None:
    page = client.fine_tuning.jobs.list_events(busy_job)
    assert len(page.data) == 20 and page.has_more


def test_node_and_old_client_stop_rules_terminate(server: Server, busy_job: str) -> None:
    url = f"{server.base_url}/fine_tuning/jobs/{busy_job}/events"
    h = {"Authorization": f"Bearer {API_KEY}"}
    # Node / python >= 1.62: stop when has_more is false.
    seen, after, requests = [], None, 0
    while True:
        body = httpx.get(
            url, params={"limit": 50, **({"after": after} if after else {})}, headers=h
        ).json()
        requests += 1
        seen += [e["id"] for e in body["data"]]
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert len(seen) == N_EXTRA + 3 and requests == 7
    # Old python / java: keep asking until an empty page.
    seen2, after, requests = [], None, 0
    while requests < 100:
        body = httpx.get(
            url, params={"limit": 50, **({"after": after} if after else {})}, headers=h
        ).json()
        requests += 1
        if not body["data"]:
            break
        seen2 += [e["id"] for e in body["data"]]
        after = body["data"][-1]["id"]
    assert seen2 == seen and requests == 8


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ("0", "integer_below_min_value"),
        ("-5", "integer_below_min_value"),
        ("abc", "invalid_type"),
        ("1.5", "invalid_type"),
        ("10001", "integer_above_max_value"),
    ],
)
def test_bad_limit(server: Server, busy_job: str, limit: str, code: str) -> None:
    resp = httpx.get(
        f"{server.azure_url}/fine_tuning/jobs/{busy_job}/events",
        params={"limit": limit},
        headers={"api-key": API_KEY},
    )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["param"], err["code"], err["type"]) == ("limit", code, "invalid_request_error")


def test_after_must_be_an_event_of_this_job(client: openai.OpenAI, busy_job: str) -> None:
    other = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(10))
    )
    foreign = client.fine_tuning.jobs.list_events(other.id).data[0].id
    for after in ("ftevent-nope", foreign):
        with pytest.raises(openai.BadRequestError) as info:
            client.fine_tuning.jobs.list_events(busy_job, after=after)
        assert info.value.param == "after"


def test_curl_style_404_on_azure_path(server: Server) -> None:
    resp = httpx.get(
        f"{server.azure_url}/fine_tuning/jobs/ftjob-nope/events", headers={"api-key": API_KEY}
    )
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "Could not find fine tune: ftjob-nope",
            "type": "invalid_request_error",
            "param": "fine_tune_id",
            "code": "fine_tune_not_found",
        }
    }


def test_event_ids_are_time_ordered(client: openai.OpenAI, busy_job: str) -> None:
    ids = [e.id for e in client.fine_tuning.jobs.list_events(busy_job, limit=1000).data]
    assert ids == sorted(ids, reverse=True)
    assert all(len(i) == len("ftevent-") + 24 for i in ids)


def test_checkpoints_shape_when_empty(client: openai.OpenAI, busy_job: str) -> None:
    page = client.fine_tuning.jobs.checkpoints.list(busy_job)
    assert page.data == [] and page.has_more is False
    raw = client.fine_tuning.jobs.checkpoints.with_raw_response.list(busy_job).http_response.json()
    assert raw == {
        "object": "list",
        "data": [],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.checkpoints.list(busy_job, limit=0)
    assert info.value.param == "limit"
