"""Events: pages newest first, the live read oldest first, bodies, idempotent keyed appends,
a gap-free ``seq`` under concurrent writers, and the log that ends where the job ended."""

from __future__ import annotations

import sqlite3
import threading

import orjson
import pytest

from ftserve.events.messages import make_event
from ftserve.store.protocol import Store, UnknownCursor, WriteRefused
from ftserve.store.sqlite import SqliteStore
from tests.store.conftest import Opener
from tests.store.records import messages, new_job

pytestmark = pytest.mark.both_backends


def test_event_pages_walk_every_event_once(store: Store) -> None:
    job = new_job()
    store.create_job(job, [make_event(f"e{i}", created_at=100) for i in range(53)])
    bodies, after = [], None
    while True:
        page = store.event_page("personal", job.id, after=after, limit=10)
        assert page is not None
        bodies += page.items
        if not page.has_more:
            break
        after = orjson.loads(page.items[-1])["id"]
    assert [orjson.loads(b)["message"] for b in bodies] == [f"e{i}" for i in range(52, -1, -1)]
    last = orjson.loads(bodies[-1])["id"]
    end = store.event_page("personal", job.id, after=last, limit=10)
    assert end is not None and end.items == [] and not end.has_more
    with pytest.raises(UnknownCursor):
        store.event_page("personal", job.id, after="ftevent-nope", limit=10)
    assert store.event_page("other", job.id, after=None, limit=10) is None


def test_events_after_reads_oldest_first_with_the_status(store: Store) -> None:
    job = new_job()
    store.create_job(job, [make_event(f"e{i}") for i in range(5)])
    first = store.events_after(None, job.id, after=None, limit=2)
    assert first is not None and first.status == "queued" and first.after_seq == 0
    assert [e.seq for e in first.events] == [1, 2]
    assert [orjson.loads(e.body)["message"] for e in first.events] == ["e0", "e1"]
    rest = store.events_after("personal", job.id, after=first.events[-1].id, limit=10)
    assert rest is not None and rest.after_seq == 2 and [e.seq for e in rest.events] == [3, 4, 5]
    assert store.events_after("other", job.id, after=None, limit=10) is None
    assert store.events_after(None, "ftjob-nope", after=None, limit=10) is None
    with pytest.raises(UnknownCursor):
        store.events_after(None, job.id, after="ftevent-nope", limit=10)


def test_event_bodies_are_oldest_first_and_of_a_kind(store: Store) -> None:
    job = new_job()
    store.create_job(job, [make_event("hello")])
    store.append_events(job.id, [make_event("Step 1", kind="metrics", data={"step": 1})])
    store.append_events(job.id, [make_event("bye")])
    assert messages(store, job.id) == ["hello", "Step 1", "bye"]
    metrics = store.event_bodies(job.id, "metrics")
    assert [orjson.loads(b)["message"] for b in metrics] == ["Step 1"]
    assert store.event_bodies("ftjob-nope") == []


def test_keyed_events_are_written_once(store: Store) -> None:
    job = new_job()
    store.create_job(job, [])
    assert store.append_events(job.id, [make_event("a", key="step:1")]) == 1
    assert (
        store.append_events(
            job.id, [make_event("a again", key="step:1"), make_event("b", key="step:2")]
        )
        == 1
    )
    page = store.event_page("personal", job.id, after=None, limit=10)
    assert page is not None
    assert [orjson.loads(b)["message"] for b in page.items] == ["b", "a"]
    with pytest.raises(WriteRefused) as refused:
        store.append_events("ftjob-nope", [make_event("x")])
    assert refused.value.status is None and not refused.value.claim_current


def test_events_are_append_only(store: Store) -> None:
    job = new_job()
    store.create_job(job, [make_event("x")])
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET body = x'00'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
        conn.close()
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as pg:  # type: ignore[attr-defined]
        for statement in (
            "UPDATE events SET body = '\\x00'",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                pg.execute(statement)
    assert messages(store, job.id) == ["x"]


def test_the_log_ends_with_the_terminal_event(store: Store) -> None:
    job = new_job()
    store.create_job(job, [make_event("created")])
    done = store.update_job(
        job.id, expect=["queued"], changes={"status": "cancelled"}, events=[make_event("cancelled")]
    )
    assert done is not None
    with pytest.raises(WriteRefused):
        store.append_events(job.id, [make_event("late")])
    with pytest.raises(WriteRefused):
        store.update_job(job.id, expect=None, changes={}, events=[make_event("late")])
    assert messages(store, job.id) == ["created", "cancelled"]


def test_concurrent_appends_keep_seq_gap_free(open_store: Opener) -> None:
    """Four stores (as four processes would) append to one job at once: every event once, seq
    1, 2, 3, … with no gap, each writer's events in its own order."""
    stores = [open_store() for _ in range(4)]
    job = new_job()
    stores[0].create_job(job, [make_event("created")])
    start = threading.Barrier(len(stores))

    def append(i: int) -> None:
        start.wait()
        for n in range(25):
            stores[i].append_events(job.id, [make_event(f"w{i} {n}", key=f"w{i}:{n}")])

    threads = [threading.Thread(target=append, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    read = stores[0].events_after(None, job.id, after=None, limit=1000)
    assert read is not None and [e.seq for e in read.events] == list(range(1, 102))
    logged = messages(stores[0], job.id)
    for i in range(4):
        assert [m for m in logged if m.startswith(f"w{i} ")] == [f"w{i} {n}" for n in range(25)]
