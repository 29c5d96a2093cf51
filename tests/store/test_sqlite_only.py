"""SQLite alone: it migrates itself when opened (every older version to the fresh schema),
refuses a newer one, and its change feed sees the commits of other processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ftserve.errors import StoreError
from ftserve.store.protocol import Store
from ftserve.store.sqlite import MIGRATIONS, SqliteStore
from tests.store.records import new_job


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_an_older_database_migrates_to_the_fresh_schema(tmp_path: Path, version: int) -> None:
    assert MIGRATIONS.version == 7
    old = tmp_path / f"v{version}.sqlite"
    conn = sqlite3.connect(old)
    conn.executescript(V1_SCHEMA)
    # A version-2 database is what version 2 of ftserve made of a version-1 one (its fresh
    # schema had the same shape, as this test checked then).
    for step in range(2, version + 1):
        conn.executescript(MIGRATIONS.steps[step])
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

    def shape(store: Store) -> dict[str, object]:
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
    assert shape(fresh)["version"] == (7,)
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
    threading.Timer(0.05, lambda: store.create_job(new_job(), [])).start()
    assert store.changes.wait(seen, 5.0) != seen
    store.close()


def test_schema_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


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
