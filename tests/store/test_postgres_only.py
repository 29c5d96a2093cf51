"""PostgreSQL alone: ``ftserve migrate`` and the schema a store accepts, the LISTEN/NOTIFY
change feed and its channels (who is woken by what), and driver errors stopped at the seam.
The migrations themselves, catalog for catalog: tests/store/test_pg_schema.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ftserve.events.messages import make_event
from ftserve.store.protocol import Store
from ftserve.store.records import Claim, FileRecord, JobRecord
from tests.store.records import new_job


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
    from ftserve.store.postgres import MIGRATIONS, PostgresStore

    monkeypatch.setenv("FTSERVE_DATABASE_URL", pg_empty_url)
    main(["migrate", "--data-dir", str(tmp_path / "data")])
    assert "no schema -> schema version 7" in capsys.readouterr().out
    main(["migrate", "--data-dir", str(tmp_path / "data")])  # a second run changes nothing
    assert "at schema version 7" in capsys.readouterr().out
    assert MIGRATIONS.version == 7 and _pg_version(pg_empty_url) == [7]
    # The same shape as every other migrated database.
    assert _pg_shape(pg_empty_url) == _pg_shape(pg_store_url)
    store = open_store(settings_from_env())
    assert isinstance(store, PostgresStore)
    job = new_job()
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
    # PostgreSQL began at 3: no ftserve made a 2 (an older known one: test_pg_schema.py).
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
        second.create_job(new_job(), [])
        committed.append(time.monotonic())

    threading.Timer(0.1, commit).start()
    assert store.changes.wait(seen, 10.0) != seen
    woke_at = time.monotonic()
    time.sleep(0.05)
    assert committed and woke_at - committed[0] < 0.5
    # In-process commits wake at once.
    seen = store.changes.version()
    threading.Timer(0.05, lambda: store.create_job(new_job(), [])).start()
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
        job = new_job()
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
        other = new_job()
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


def test_postgres_driver_errors_stop_at_the_seam(pg_store_url: str) -> None:
    import psycopg

    from ftserve.errors import StoreError
    from ftserve.store.postgres import PostgresStore

    store = PostgresStore(pg_store_url)
    job = new_job()
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
