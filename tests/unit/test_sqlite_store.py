"""The SQLite Store: paging, guards, idempotent appends, append-only events."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from ftserve.events.messages import make_event
from ftserve.ids import job_id
from ftserve.store.protocol import UnknownCursor, WriteRefused
from ftserve.store.records import CheckpointRecord, Claim, FileRecord, JobRecord
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
    assert claimed.attempts == 1 and claimed.claim_token
    assert store.claim_job("w2", now=10.0, lease_seconds=5, events=[]) is None
    mine = Claim(job.id, claimed.claim_token)
    assert not store.renew_lease(Claim(job.id, "not-the-token"), 99.0)
    assert store.renew_lease(mine, 99.0)
    assert [j.id for j in store.expired_leases(100.0)] == [job.id]
    assert store.update_job(job.id, expect=None, expect_claim="other", changes={}) is None


def _claimed(store: SqliteStore, worker: str = "w1") -> tuple[JobRecord, Claim]:
    job = store.claim_job(worker, now=time.time(), lease_seconds=60, events=[])
    assert job is not None and job.claim_token is not None
    return job, Claim(job.id, job.claim_token)


def _messages(store: SqliteStore, job_id: str) -> list[str]:
    return [orjson.loads(b)["message"] for b in store.event_bodies(job_id)]


def test_every_claim_gets_a_new_token_even_for_the_same_worker(store: SqliteStore) -> None:
    store.create_job(_job(), [])
    job, first = _claimed(store)
    assert store.release_claim(first)
    assert not store.release_claim(first)  # released already: no longer current
    store.update_job(job.id, expect=["running"], changes={"status": "queued"})
    _, second = _claimed(store)
    assert second.token != first.token
    with pytest.raises(WriteRefused) as info:
        store.write_claimed(first, events=[make_event("stale")])
    assert not info.value.claim_current and info.value.status == "running"
    store.write_claimed(second, events=[make_event("current")])
    assert _messages(store, job.id) == ["current"]


def test_claimed_writes_stop_when_the_user_stops_the_job(store: SqliteStore) -> None:
    store.create_job(_job(), [])
    job, claim = _claimed(store)
    assert store.write_claimed(claim, events=[make_event("Step 1", key="step:1")]) == "running"
    store.update_job(
        job.id, expect=["running"], changes={"status": "paused"}, events=[make_event("paused")]
    )
    # A step's metrics after the pause are refused, with the reason the trainer acts on ...
    with pytest.raises(WriteRefused) as info:
        store.write_claimed(claim, events=[make_event("Step 2", key="step:2")])
    assert info.value.claim_current and info.value.status == "paused"
    # ... while the holder may still record its pause checkpoint, without an event.
    ckpt = CheckpointRecord("ftckpt_a", job.id, 1, 2, "ft:x:ckpt-step-2", {}, "p", "pause")
    assert store.write_claimed(claim, fence="held", add_checkpoint=ckpt) == "paused"
    with pytest.raises(WriteRefused):
        store.write_claimed(claim, fence="held", events=[make_event("after pause")])
    page = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert page is not None and [(c.step_number, c.kind) for c in page.items] == [(2, "pause")]
    store.update_job(
        job.id, expect=["paused"], changes={"status": "cancelled"}, events=[make_event("cancelled")]
    )
    for fence in ("running", "held"):
        with pytest.raises(WriteRefused) as info:
            store.write_claimed(claim, fence=fence, changes={"estimated_finish": 1})  # type: ignore[arg-type]
        assert info.value.status == "cancelled"
    assert store.release_claim(claim)  # letting go is always allowed to the holder
    assert _messages(store, job.id) == ["Step 1", "paused", "cancelled"]


def test_the_log_ends_with_the_terminal_event(store: SqliteStore) -> None:
    job = _job()
    store.create_job(job, [make_event("created")])
    done = store.update_job(
        job.id, expect=["queued"], changes={"status": "cancelled"}, events=[make_event("cancelled")]
    )
    assert done is not None
    with pytest.raises(WriteRefused):
        store.append_events(job.id, [make_event("late")])
    with pytest.raises(WriteRefused):
        store.update_job(job.id, expect=None, changes={}, events=[make_event("late")])
    assert _messages(store, job.id) == ["created", "cancelled"]


def test_claimed_write_is_one_transaction(store: SqliteStore) -> None:
    store.create_job(_job(), [])
    job, claim = _claimed(store)
    old = CheckpointRecord("ftckpt_old", job.id, 1, 1, "n1", {}, "a", "epoch")
    store.write_claimed(claim, add_checkpoint=old)
    result = FileRecord("file-r", "personal", 3, 1, "step_metrics.csv", "fine-tune-results", "b")
    new = CheckpointRecord("ftckpt_new", job.id, 1, 2, "n2", {}, "c", "epoch")
    store.write_claimed(
        claim,
        changes={"status": "succeeded", "claim_token": None},
        events=[make_event("done")],
        add_checkpoint=new,
        drop_checkpoints=["ftckpt_old"],
        add_files=[result],
    )
    page = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert page is not None and [c.id for c in page.items] == ["ftckpt_new"]
    assert store.get_file("personal", "file-r", 0) is not None
    assert store.get_job(job.id).status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_migrates_to_the_fresh_schema(tmp_path: Path, version: int) -> None:
    from ftserve.store.sqlite import _MIGRATIONS, SCHEMA_VERSION

    assert SCHEMA_VERSION == 3
    old = tmp_path / f"v{version}.sqlite"
    conn = sqlite3.connect(old)
    conn.executescript(V1_SCHEMA)
    # A version-2 database is what version 2 of ftserve made of a version-1 one (its fresh
    # schema had the same shape, as this test checked then).
    for step in range(2, version + 1):
        for statement in _MIGRATIONS[step]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute(
        "INSERT INTO jobs (id, organization, model, model_source, status, created_at, "
        "training_file, hyperparameters, method, seed, extensions, result_files, lease_owner, "
        "lease_expires_at) VALUES ('ftjob-1', 'personal', 'm', 'm', 'running', 1, 'f', '{}', "
        "'{}', 0, '{}', '[]', 'host/1/ab', 5.0)"
    )
    conn.commit()
    conn.close()
    migrated = SqliteStore(old)
    fresh = SqliteStore(tmp_path / "fresh.sqlite")

    def shape(store: SqliteStore) -> dict[str, object]:
        conn = sqlite3.connect(store.path)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
        columns = {
            t: conn.execute(f"PRAGMA table_info({t})").fetchall()
            for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        version = conn.execute("PRAGMA user_version").fetchone()
        conn.close()
        return {"objects": tables, "columns": columns, "version": version}

    assert shape(migrated) == shape(fresh)
    assert shape(fresh)["version"] == (3,)
    job = migrated.get_job("ftjob-1")
    assert job is not None
    if version == 1:
        assert job.claim_token  # a v1 lease matches no claim of this version
    # Version 3's table works on the migrated database.
    migrated.update_job("ftjob-1", expect=None, changes={"status": "succeeded"})
    assert migrated.delete_models("personal", "ftjob-1", ["ft:m:personal::1"], 5) == [
        "ft:m:personal::1"
    ]
    assert migrated.delete_models("personal", "ftjob-1", ["ft:m:personal::1"], 6) == []
    assert migrated.deleted_models("personal") == {"ft:m:personal::1"}
    assert migrated.deleted_models("other") == set()
    migrated.close()
    fresh.close()


def test_change_feed_sees_commits_of_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    seen = store.changes.version()
    # Nothing committed: the wait runs into its timeout.
    assert store.changes.wait(seen, 0.05) == seen
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; time.sleep(0.3); c = sqlite3.connect(sys.argv[1]); "
            "c.execute(\"INSERT INTO files VALUES (NULL, 'file-z', 'o', 1, 1, 'f', 'p', 'b', "
            "NULL, 'processed', NULL)\"); c.commit()",
            str(path),
        ]
    )
    t0 = time.monotonic()
    moved = store.changes.wait(seen, 10.0)
    waited = time.monotonic() - t0
    other.wait()
    assert moved != seen and 0.2 < waited < 2.0
    # In-process commits wake at once.
    seen = moved
    threading.Timer(0.05, lambda: store.create_job(_job(), [])).start()
    assert store.changes.wait(seen, 5.0) != seen
    store.close()


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


# The schema as version 1 of ftserve created it, kept verbatim to test the migration.
V1_SCHEMA = """
-- ftserve SQLite schema, version 1. Applied in one transaction on a fresh database.
CREATE TABLE files (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    organization   TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    filename       TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    blob           TEXT NOT NULL,
    expires_at     INTEGER,
    status         TEXT NOT NULL,
    status_details TEXT
);
CREATE INDEX files_by_org ON files (organization, seq);

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    organization     TEXT NOT NULL,
    model            TEXT NOT NULL,
    model_source     TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    training_file    TEXT NOT NULL,
    validation_file  TEXT,
    hyperparameters  TEXT NOT NULL,
    method           TEXT NOT NULL,
    seed             INTEGER NOT NULL,
    suffix           TEXT,
    metadata         TEXT,
    integrations     TEXT,
    extensions       TEXT NOT NULL,
    finished_at      INTEGER,
    fine_tuned_model TEXT,
    error            TEXT,
    trained_tokens   INTEGER,
    result_files     TEXT NOT NULL,
    estimated_finish INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at REAL
);
CREATE INDEX jobs_by_org ON jobs (organization, seq);
-- Covers the "is this job visible to this organization" check of every events page.
CREATE INDEX jobs_visible ON jobs (id, organization);
CREATE INDEX jobs_by_status ON jobs (status, seq);

-- Clustered by job so one page is one contiguous range (notes/perf.md: 1.7-3.2x faster than a
-- rowid table). The body is the event's wire JSON, written once: events are append-only.
CREATE TABLE events (
    job_id     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    key        TEXT,
    body       BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_id ON events (id);
CREATE UNIQUE INDEX events_by_key ON events (job_id, key) WHERE key IS NOT NULL;

CREATE TABLE checkpoints (
    id                          TEXT PRIMARY KEY,
    job_id                      TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    step_number                 INTEGER NOT NULL,
    fine_tuned_model_checkpoint TEXT NOT NULL,
    metrics                     TEXT NOT NULL,
    path                        TEXT NOT NULL,
    UNIQUE (job_id, step_number)
);

-- Append-only means append-only: the database itself refuses to change or drop an event.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
"""
