"""The Store on both backends (SQLite; PostgreSQL on a private cluster, tests/pg.py): paging,
guards, idempotent appends, append-only events. Migrations and the change feed are tested per
backend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from ftserve.events.messages import make_event
from ftserve.ids import job_id
from ftserve.store.protocol import Store, UnknownCursor, WriteRefused
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


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "db.sqlite")
    else:
        from ftserve.store.postgres import PostgresStore

        opened = PostgresStore(request.getfixturevalue("pg_store_url"))
    yield opened
    opened.close()


def test_event_pages_walk_every_event_once(store: Store) -> None:
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


def test_keyed_events_are_written_once(store: Store) -> None:
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


def test_events_are_append_only(store: Store) -> None:
    job = _job()
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
    assert _messages(store, job.id) == ["x"]


def test_update_guard_and_claim(store: Store) -> None:
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


def _claimed(store: Store, worker: str = "w1") -> tuple[JobRecord, Claim]:
    job = store.claim_job(worker, now=time.time(), lease_seconds=60, events=[])
    assert job is not None and job.claim_token is not None
    return job, Claim(job.id, job.claim_token)


def _messages(store: Store, job_id: str) -> list[str]:
    return [orjson.loads(b)["message"] for b in store.event_bodies(job_id)]


def test_every_claim_gets_a_new_token_even_for_the_same_worker(store: Store) -> None:
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


def test_claimed_writes_stop_when_the_user_stops_the_job(store: Store) -> None:
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


def test_the_log_ends_with_the_terminal_event(store: Store) -> None:
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


def test_claimed_write_is_one_transaction(store: Store) -> None:
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


def test_metadata_filter_keys_are_literal(store: Store) -> None:
    from dataclasses import replace

    a = replace(_job(), metadata={"a.b": "1"})
    b = replace(_job(), metadata={"a": "1"})
    store.create_job(a, [])
    store.create_job(b, [])
    found = store.list_jobs("personal", after=None, limit=10, metadata={"a.b": "1"})
    assert [j.id for j in found.items] == [a.id]


def test_metadata_with_nul_is_stored_and_filtered(store: Store) -> None:
    """U+0000 in metadata (the API allows it) is kept, and filters match it exactly; on
    PostgreSQL, where no text can hold it, one such job once made every metadata-filtered list
    of its organization fail, and so did a filter with a NUL in it."""
    from dataclasses import replace

    nul = replace(_job(), metadata={"k\x00": "v\x00w", "team": "a"})
    plain = replace(_job(), metadata={"team": "a", "k": "v"})
    near = replace(_job(), metadata={"x": '"k\\u0000":"v\\u0000w"', "team": "b"})
    for job in (nul, plain, near):
        store.create_job(job, [])

    def ids(metadata: dict[str, str], limit: int = 10) -> tuple[list[str], bool]:
        page = store.list_jobs("personal", after=None, limit=limit, metadata=metadata)
        return [j.id for j in page.items], page.has_more

    assert ids({"team": "a"}) == ([plain.id, nul.id], False)
    assert ids({"team": "a"}, limit=1) == ([plain.id], True)
    assert ids({"k\x00": "v\x00w", "team": "b"}) == ([], False)
    assert ids({"a\x00b": "x"}) == ([], False)
    assert ids({"k\x00": "v\x00w"}) == ([nul.id], False)
    assert ids({"k": "v"}) == ([plain.id], False)
    got = store.get_job(nul.id)
    assert got is not None and got.metadata == {"k\x00": "v\x00w", "team": "a"}


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


def test_orphaned_file_blobs_are_swept_at_start(store: Store, tmp_path: Path) -> None:
    """A file blob no row names (an upload cut off between its bytes and its row) is deleted
    when the API starts, once old; named blobs, expired files' included, and young orphans
    stay."""
    import os

    from ftserve.files.service import FileService

    files = tmp_path / "blobs" / "files"
    files.mkdir(parents=True)
    names = ["file-kept", "file-expired", "file-orphan", "file-young"]
    for name in names:
        (files / name).write_bytes(name.encode())
    day_ago = time.time() - 2 * 24 * 3600
    for name in names[:3]:
        os.utime(files / name, (day_ago, day_ago))
    store.add_file(
        FileRecord("file-kept", "personal", 9, 1, "a.jsonl", "fine-tune", "files/file-kept")
    )
    store.add_file(
        FileRecord(
            "file-expired", "personal", 12, 1, "b.jsonl", "fine-tune", "files/file-expired", 2
        )
    )
    FileService(store, tmp_path / "blobs", reclaim_after=24 * 3600)
    assert sorted(p.name for p in files.iterdir()) == ["file-expired", "file-kept", "file-young"]
    assert store.file_blobs() == {"files/file-kept", "files/file-expired"}


# -- PostgreSQL only: migrations, the LISTEN/NOTIFY feed, concurrency of separate stores -------


def _pg_version(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM ftserve_schema").fetchall()]


def _pg_shape(url: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
        ).fetchall()
    return [*columns, *indexes, *triggers]


def test_postgres_migrate_creates_the_schema_once(
    pg_empty_url: str,
    pg_store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ftserve.cli.main import main
    from ftserve.config import settings_from_env
    from ftserve.store.open import open_store
    from ftserve.store.postgres import SCHEMA_VERSION, PostgresStore

    monkeypatch.setenv("FTSERVE_DATABASE_URL", pg_empty_url)
    main(["migrate", "--data-dir", str(tmp_path / "data")])
    assert "no schema -> schema version 3" in capsys.readouterr().out
    main(["migrate", "--data-dir", str(tmp_path / "data")])  # a second run changes nothing
    assert "at schema version 3" in capsys.readouterr().out
    assert SCHEMA_VERSION == 3 and _pg_version(pg_empty_url) == [3]
    # The same shape as every other migrated database.
    assert _pg_shape(pg_empty_url) == _pg_shape(pg_store_url)
    store = open_store(settings_from_env())
    assert isinstance(store, PostgresStore)
    job = _job()
    store.create_job(job, [make_event("hello")])
    assert store.get_job(job.id) == job
    store.close()


def test_postgres_store_refuses_a_database_it_cannot_use(
    pg_empty_url: str, pg_store_url: str
) -> None:
    import psycopg

    from ftserve.config import Settings
    from ftserve.errors import StoreError
    from ftserve.store.open import open_store
    from ftserve.store.postgres import PostgresStore, SchemaNotReady

    with pytest.raises(SchemaNotReady, match="run `ftserve migrate`"):
        PostgresStore(pg_empty_url)
    with pytest.raises(SystemExit, match="run `ftserve migrate`"):
        open_store(Settings(database_url=pg_empty_url))
    with psycopg.connect(pg_store_url) as conn:
        conn.execute("UPDATE ftserve_schema SET version = 2")
    # PostgreSQL began at 3: no ftserve made a 2 (an older known one: test_pg_store_schema.py).
    with pytest.raises(StoreError, match=r"schema version 2, older than PostgreSQL support"):
        PostgresStore(pg_store_url)
    with psycopg.connect(pg_store_url) as conn:
        conn.execute("UPDATE ftserve_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        PostgresStore(pg_store_url)
    with pytest.raises(StoreError, match="could not open"):
        PostgresStore(pg_store_url.replace("/t", "/no_such_db", 1), timeout=2)


def test_postgres_change_feed_wakes_on_commits_of_other_processes(pg_store_url: str) -> None:
    from ftserve.store.postgres import PostgresStore

    store = PostgresStore(pg_store_url)
    seen = store.changes.version()
    assert store.changes.wait(seen, 0.05) == seen  # nothing committed: the timeout
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ftserve.store.postgres import PostgresStore\n"
            "from ftserve.store.records import FileRecord\n"
            "s = PostgresStore(sys.argv[1])\n"
            "time.sleep(0.3)\n"
            "s.add_file(FileRecord('file-z', 'o', 1, 1, 'f', 'p', 'b'))\n"
            "print(time.time(), flush=True)\n"
            "s.close()\n",
            pg_store_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    moved = store.changes.wait(seen, 30.0)
    woke = time.time()
    out, _ = other.communicate(timeout=30)
    assert other.returncode == 0
    assert moved != seen
    assert woke - float(out) < 0.5, f"woke {woke - float(out):.3f} s after the commit"
    assert store.get_file("o", "file-z", 0) is not None
    # A second store in this process: its commit reaches the first store's feed too.
    second = PostgresStore(pg_store_url)
    seen = store.changes.version()
    committed: list[float] = []

    def commit() -> None:
        second.create_job(_job(), [])
        committed.append(time.monotonic())

    threading.Timer(0.1, commit).start()
    assert store.changes.wait(seen, 10.0) != seen
    woke_at = time.monotonic()
    time.sleep(0.05)
    assert committed and woke_at - committed[0] < 0.5
    # In-process commits wake at once.
    seen = store.changes.version()
    threading.Timer(0.05, lambda: store.create_job(_job(), [])).start()
    assert store.changes.wait(seen, 5.0) != seen
    second.close()
    store.close()


def test_postgres_workers_are_woken_by_their_work_only(pg_store_url: str) -> None:
    # Workers hear that a job may be claimable, and what happens to the jobs they hold; not
    # every claim, step and checkpoint of every job (store/pg_changes.py says what that cost).
    from ftserve.store.postgres import PostgresStore
    from ftserve.store.wakes import Wakes

    writer = PostgresStore(pg_store_url, wakes=Wakes.nothing())
    api = PostgresStore(pg_store_url)  # hears everything: shows each notification went out
    a = PostgresStore(pg_store_url, wakes=Wakes.worker("host-1/10/aa"))
    b = PostgresStore(pg_store_url, wakes=Wakes.worker("host.two/20/bb"))
    listeners = {"api": api, "a": a, "b": b, "writer": writer}

    def woken(action: Callable[[], object]) -> set[str]:
        seen = {name: st.changes.version() for name, st in listeners.items()}
        action()
        assert api.changes.wait(seen["api"], 10.0) != seen["api"]
        time.sleep(0.3)  # the others' notifications, if any, arrive by now
        return {
            name
            for name, st in listeners.items()
            if name not in ("api", "writer") and st.changes.version() != seen[name]
        }

    try:
        job = _job()
        assert woken(lambda: writer.create_job(job, [])) == {"a", "b"}  # a queued job
        claimed: list[JobRecord] = []
        # The claim: only the claiming worker, which wakes itself, cares.
        assert woken(lambda: claimed.append(_claim_as(writer, "host-1/10/aa"))) == set()
        got = claimed[0]
        assert got.id == job.id and got.claim_token is not None
        claim = Claim(got.id, got.claim_token)
        step = make_event("Step 1/2: training loss=1.0", kind="metrics", data={"step": 1})
        assert woken(lambda: writer.write_claimed(claim, events=[step])) == set()  # a step
        # A cancel: the worker holding the job must stop its child.
        cancel = {"status": "cancelled", "finished_at": 2}
        assert woken(lambda: writer.update_job(job.id, expect=None, changes=cancel)) == {"a"}
        assert woken(lambda: writer.release_claim(claim)) == {"a"}
        # Resumed from pause while still held, then let go: claimable once the claim goes.
        other = _job()
        assert woken(lambda: writer.create_job(other, [])) == {"a", "b"}
        held = _claim_as(writer, "host.two/20/bb")  # (wakes nobody, as above)
        assert held.claim_token is not None
        paused = {"status": "paused"}
        assert woken(lambda: writer.update_job(other.id, expect=None, changes=paused)) == {"b"}
        queued = {"status": "queued"}
        assert woken(lambda: writer.update_job(other.id, expect=None, changes=queued)) == {
            "a",
            "b",
        }
        release = Claim(other.id, held.claim_token)
        assert woken(lambda: writer.release_claim(release)) == {"a", "b"}
    finally:
        for st in listeners.values():
            st.close()


def _claim_as(store: Store, worker: str) -> JobRecord:
    job = store.claim_job(worker, time.time(), 60.0, [])
    assert job is not None
    return job


def test_postgres_racing_claims_never_share_a_job(pg_store_url: str) -> None:
    from ftserve.store.postgres import PostgresStore

    setup = PostgresStore(pg_store_url)
    jobs = [_job() for _ in range(20)]
    for job in jobs:
        setup.create_job(job, [])
    stores = [PostgresStore(pg_store_url) for _ in range(4)]
    claimed: list[list[JobRecord]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        start.wait()
        while True:
            job = stores[i].claim_job(f"w{i}", time.time(), 60, [make_event(f"claimed by w{i}")])
            if job is None:
                # SKIP LOCKED can miss a job another worker is claiming right now; ask again
                # only while some are left.
                if not setup.jobs_with_status("queued", 1):
                    return
                continue
            claimed[i].append(job)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [j.id for got in claimed for j in got]
    assert sorted(ids) == sorted(j.id for j in jobs)  # every job once, none twice
    for job in jobs:
        now = setup.get_job(job.id)
        assert now is not None and now.status == "running" and now.attempts == 1
        assert len(_messages(setup, job.id)) == 1
    assert len({j.claim_token for got in claimed for j in got}) == 20
    for s in [*stores, setup]:
        s.close()


def test_postgres_concurrent_appends_keep_seq_gap_free(pg_store_url: str) -> None:
    import psycopg

    from ftserve.store.postgres import PostgresStore

    stores = [PostgresStore(pg_store_url) for _ in range(4)]
    job = _job()
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
    with psycopg.connect(pg_store_url) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM events WHERE job_id = %s ORDER BY seq", (job.id,)
            ).fetchall()
        ]
    assert seqs == list(range(1, 102))
    messages = _messages(stores[0], job.id)
    for i in range(4):  # each writer's events in its own order
        mine = [m for m in messages if m.startswith(f"w{i} ")]
        assert mine == [f"w{i} {n}" for n in range(25)]
    for s in stores:
        s.close()


def test_postgres_driver_errors_stop_at_the_seam(pg_store_url: str) -> None:
    import psycopg

    from ftserve.errors import StoreError
    from ftserve.store.postgres import PostgresStore

    store = PostgresStore(pg_store_url)
    job = _job()
    store.create_job(job, [])

    def kill_connections() -> None:
        with psycopg.connect(pg_store_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    kill_connections()
    assert store.get_job(job.id) == job  # a read retries once on a fresh connection
    kill_connections()
    with pytest.raises(StoreError):  # a write is not retried, and says StoreError
        store.add_file(FileRecord("file-1", "personal", 1, 1, "f", "p", "b"))
    store.add_file(FileRecord("file-1", "personal", 1, 1, "f", "p", "b"))
    with pytest.raises(StoreError):  # a constraint: still no psycopg exception
        store.add_file(FileRecord("file-1", "personal", 1, 1, "f", "p", "b"))
    assert store.get_file("personal", "file-1", 0) is not None
    store.close()


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


def test_keys_with_nul_name_nothing(store: Store) -> None:
    """The fuzz test sent `after=…%00…`: PostgreSQL text cannot hold U+0000, so such keys are
    answered as absent on every backend instead of a refused query (a 500)."""
    job = _job()
    store.create_job(job, [])
    bad = "x\x00y"
    assert store.get_job(bad) is None
    assert store.get_file("personal", bad, 0) is None
    assert store.event_page("personal", bad, after=None, limit=5) is None
    assert store.list_checkpoints("personal", bad, after=None, limit=5) is None
    for read in (
        lambda: store.list_jobs("personal", after=bad, limit=5, metadata=None),
        lambda: store.list_files(
            "personal", purpose=None, after=bad, limit=5, ascending=False, now=0
        ),
        lambda: store.event_page("personal", job.id, after=bad, limit=5),
        lambda: store.list_checkpoints(None, job.id, after=bad, limit=5),
    ):
        with pytest.raises(UnknownCursor):
            read()
