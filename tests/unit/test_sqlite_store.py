"""The SQLite Store: paging, guards, idempotent appends, append-only events."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from ftserve.events.messages import make_event
from ftserve.ids import job_id
from ftserve.store.protocol import UnknownCursor
from ftserve.store.records import JobRecord
from ftserve.store.sqlite import SqliteStore


def _job(org: str = "personal") -> JobRecord:
    return JobRecord(
        id=job_id(),
        organization=org,
        model="ftserve-tiny",
        model_source="ftserve-tiny",
        status="queued",
        created_at=1,
        training_file="file-x",
        validation_file=None,
        hyperparameters={"n_epochs": "auto"},
        method={"type": "supervised"},
        seed=1,
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "db.sqlite")


def test_event_pages_walk_every_event_once(store: SqliteStore) -> None:
    job = _job()
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


def test_keyed_events_are_written_once(store: SqliteStore) -> None:
    job = _job()
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


def test_events_are_append_only(store: SqliteStore, tmp_path: Path) -> None:
    job = _job()
    store.create_job(job, [make_event("x")])
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET body = x'00'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_update_guard_and_claim(store: SqliteStore) -> None:
    job = _job()
    store.create_job(job, [])
    assert store.update_job(job.id, expect=["running"], changes={"status": "failed"}) is None
    claimed = store.claim_job("w1", now=10.0, lease_seconds=5, events=[make_event("started")])
    assert claimed is not None and claimed.status == "running" and claimed.lease_owner == "w1"
    assert claimed.attempts == 1
    assert store.claim_job("w2", now=10.0, lease_seconds=5, events=[]) is None
    assert store.renew_lease(job.id, "w2", 99.0) is None
    assert store.renew_lease(job.id, "w1", 99.0) is not None
    assert [j.id for j in store.expired_leases(100.0)] == [job.id]
    assert store.update_job(job.id, expect=None, expect_lease_owner="w2", changes={}) is None


def test_schema_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    from ftserve.errors import StoreError

    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


def test_metadata_filter_keys_are_literal(store: SqliteStore) -> None:
    from dataclasses import replace

    a = replace(_job(), metadata={"a.b": "1"})
    b = replace(_job(), metadata={"a": "1"})
    store.create_job(a, [])
    store.create_job(b, [])
    found = store.list_jobs("personal", after=None, limit=10, metadata={"a.b": "1"})
    assert [j.id for j in found.items] == [a.id]


def test_stale_upload_leftovers_are_swept(tmp_path: Path) -> None:
    import os
    import time

    from ftserve.files.service import FileService

    store = SqliteStore(tmp_path / "db.sqlite")
    tmp = tmp_path / "blobs" / "tmp"
    tmp.mkdir(parents=True)
    old, fresh = tmp / "upload-old", tmp / "upload-fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    FileService(store, tmp_path / "blobs")
    assert not old.exists() and fresh.exists()
