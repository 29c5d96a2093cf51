"""The live event stream against a server that trains ``ftserve-tiny``: a stream opened while
the job trains, reconnects with ``Last-Event-ID`` cut at random bytes, a paused job's stream kept
open with heartbeats until the resume."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from tests.api.sse_client import (
    Message,
    RawStream,
    assert_equals_list,
    assert_sse_headers,
    has_text,
    message_texts,
    steps_in,
    stream_path,
)
from tests.conftest import Server, chat_rows, database_url_for, upload, wait_status

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

HEARTBEAT = 0.25  # FTSERVE_EVENTS_HEARTBEAT of the training server
SUCCEEDED = "The job has successfully completed"


@pytest.fixture(scope="module")
def trainer(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp(f"stream-{backend}") / "data",
        env={
            "FTSERVE_WORKERS": "1",
            "FTSERVE_INFERENCE": "0",
            "FTSERVE_EVENTS_HEARTBEAT": str(HEARTBEAT),
        },
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def training_file(trainer: Server) -> str:
    return upload(trainer.client(), chat_rows(20))


def new_job(srv: Server, file_id: str, **hyperparameters: int) -> str:
    client = srv.client(strict=False)  # strict mode's status Literal lacks "paused"
    return client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=file_id, seed=3, hyperparameters=hyperparameters
    ).id


def test_a_stream_follows_training_and_ends_after_the_terminal_event(
    trainer: Server, training_file: str
) -> None:
    client = trainer.client()
    job_id = new_job(trainer, training_file, n_epochs=3, batch_size=2)  # 30 steps
    stream = RawStream(trainer.port, stream_path(job_id))
    try:
        assert_sse_headers(stream)
        # The events arrive as they happen: the first step is there while the job trains.
        stream.read_until(lambda s: steps_in(s) >= 1)
        assert client.fine_tuning.jobs.retrieve(job_id).status == "running"
        stream.read_to_end()
    finally:
        stream.close()
    messages = stream.messages()
    texts = message_texts(messages)
    assert texts[0] == f"Created fine-tuning job: {job_id}"
    assert texts[-1] == SUCCEEDED
    assert sum(t.startswith("Step ") for t in texts) == 30
    assert client.fine_tuning.jobs.retrieve(job_id).status == "succeeded"
    assert_equals_list(trainer.root, job_id, messages)

    # A finished job's stream replays everything and closes, under every prefix.
    for prefix, query in (
        ("/v1", "stream=true"),
        ("/openai/v1", "stream=true"),
        ("/openai", "api-version=2024-10-21&stream=true"),
    ):
        replay = RawStream(trainer.port, stream_path(job_id, prefix, query))
        try:
            assert_sse_headers(replay)
            replay.read_to_end(timeout=30)
        finally:
            replay.close()
        assert replay.body == stream.body.replace(b": ping\n\n", b""), prefix
        if prefix != "/v1":
            assert replay.headers["apim-request-id"] == replay.headers["x-request-id"]

    # After the terminal event nothing follows; after a middle one, exactly the rest.
    last = RawStream(trainer.port, stream_path(job_id), {"Last-Event-ID": str(messages[-1].id)})
    middle = RawStream(trainer.port, stream_path(job_id), {"Last-Event-ID": str(messages[9].id)})
    try:
        last.read_to_end(timeout=30)
        middle.read_to_end(timeout=30)
    finally:
        last.close()
        middle.close()
    assert last.status == 200 and last.messages() == []
    assert [m.id for m in middle.messages()] == [m.id for m in messages[10:]]


def test_reconnects_with_last_event_id_get_exactly_the_missed_events(
    trainer: Server, training_file: str
) -> None:
    """The connection is cut at random bytes (mid-message too) while the job trains; each
    reconnect sends the id of the last complete message received."""
    client = trainer.client()
    job_id = new_job(trainer, training_file, n_epochs=5, batch_size=1)  # 100 steps
    wait_status(client, job_id, {"running"}, timeout=120)
    rng = random.Random(2024)
    received: list[Message] = []
    statuses_at_reconnect: list[str] = []
    while True:
        headers = {"Last-Event-ID": str(received[-1].id)} if received else {}
        stream = RawStream(trainer.port, stream_path(job_id), headers)
        try:
            assert_sse_headers(stream)
            cut_after = rng.randint(1, 2500)  # bytes of body
            while not stream.ended and len(stream.body) < cut_after:
                stream.recv()
        finally:
            stream.close()  # abruptly, whatever was in flight
        got = stream.messages()
        if got:
            # Each connection starts right after the id it was given: none twice, none lost.
            assert got[0].id not in {m.id for m in received}
        received += got
        if stream.ended:
            break
        statuses_at_reconnect.append(client.fine_tuning.jobs.retrieve(job_id).status)
    assert "running" in statuses_at_reconnect, statuses_at_reconnect  # cuts fell mid-job
    assert len(statuses_at_reconnect) >= 5
    assert message_texts(received)[-1] == SUCCEEDED
    assert_equals_list(trainer.root, job_id, received)


def test_a_paused_job_keeps_its_stream_open_with_heartbeats_until_resumed(
    trainer: Server, training_file: str
) -> None:
    client = trainer.client(strict=False)
    job_id = new_job(trainer, training_file, n_epochs=40, batch_size=1)  # 800 steps
    stream = RawStream(trainer.port, stream_path(job_id))
    try:
        stream.read_until(lambda s: steps_in(s) >= 3)
        assert client.fine_tuning.jobs.pause(job_id).status == "paused"
        stream.read_until(lambda s: has_text(s, "Fine-tuning job paused"))
        assert message_texts(stream.messages())[-1] == "Fine-tuning job paused"
        # Paused is not final: the stream stays open, and only heartbeats come, on time.
        seen, steps, pings_before = stream.count(), steps_in(stream), stream.pings()
        started = time.monotonic()
        stream.read_until(lambda s: s.pings() >= pings_before + 4, timeout=10 * HEARTBEAT + 10)
        elapsed = time.monotonic() - started
        assert 3 * HEARTBEAT * 0.8 < elapsed < 4 * HEARTBEAT + 2.0, elapsed
        assert not stream.ended and stream.count() == seen
        assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"

        client.fine_tuning.jobs.resume(job_id)
        stream.read_until(lambda s: steps_in(s) >= steps + 3)
        assert has_text(stream, "Fine-tuning job resumed, moving job to queued state")
        assert has_text(stream, "Fine-tuning job resumed from the checkpoint")
        client.fine_tuning.jobs.cancel(job_id)
        stream.read_to_end()
    finally:
        stream.close()
    messages = stream.messages()
    assert message_texts(messages)[-1] == "Fine-tuning job cancelled"
    assert_equals_list(trainer.root, job_id, messages)
