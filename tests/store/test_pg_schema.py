"""The PostgreSQL schema: a migrated database equals a freshly created one, catalog for catalog;
migrations are one transaction, applied once; and nothing runs on a schema it does not know —
``ftserve serve`` and ``ftserve worker`` refuse it with a message saying to run ``ftserve
migrate``, and start once it has run.

PostgreSQL support began at schema version 3, so there is no version-1 or -2 PostgreSQL
database to migrate (SQLite's are tested in test_sqlite_only.py). ``KEPT`` holds every
PostgreSQL schema version ftserve has shipped, verbatim: each is built, migrated with the
command an operator runs, and compared with a fresh database: every shipped version from 3 on
(4 added the jobs' devices and the workers' capacity, 5 the stored responses, 6 the batches,
7 the gangs of a job on several workers).
An edit of migrations/postgres/schema.sql that comes without a new version and a migration fails
here; a new version adds its script to KEPT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

# The catalog, as information_schema and pg_catalog describe it: what a migration must leave
# exactly as the fresh script makes it. Column order is left out: ALTER TABLE can only append
# a column, and no statement of the store depends on the order (every one names its columns).
_CATALOG = {
    "tables": (
        "SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1"
    ),
    "columns": (
        "SELECT table_name, column_name, data_type, udt_name, character_maximum_length, "
        "numeric_precision, is_nullable, column_default, is_identity, identity_generation, "
        "is_generated, generation_expression, collation_name "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
    ),
    "constraints": (
        "SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid), "
        "co.condeferrable, co.condeferred FROM pg_constraint co "
        "JOIN pg_class cl ON cl.oid = co.conrelid "
        "JOIN pg_namespace n ON n.oid = co.connamespace "
        "WHERE n.nspname = 'public' ORDER BY 1, 2"
    ),
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = 'public' ORDER BY 1, 2",
    "triggers": (
        "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal ORDER BY 1, 2"
    ),
    "functions": (
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
        "pg_get_functiondef(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1, 2"
    ),
    "sequences": (
        "SELECT sequencename, data_type, start_value, increment_by, min_value, max_value, "
        "cycle FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"
    ),
    "version": "SELECT version FROM ftserve_schema ORDER BY 1",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in _CATALOG.items()}


def cli(
    *args: str, url: str, data_dir: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``ftserve ARGS`` as an operator runs it, against the database at ``url``."""
    env = {**os.environ, "FTSERVE_DATABASE_URL": url, "FTSERVE_API_KEYS": "sk-test-0123456789"}
    return subprocess.run(
        [sys.executable, "-m", "ftserve", *args, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _apply(url: str, script: str, version: int) -> None:
    """A database as ftserve's schema version ``version`` made it."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(script.encode())
        conn.execute("INSERT INTO ftserve_schema (version) VALUES (%s)", (version,))


@pytest.mark.parametrize("version", [3, 4, 5, 6, 7])
def test_a_migrated_database_equals_a_fresh_one(
    pg_empty_url: str, pg_url: str, tmp_path: Path, version: int
) -> None:
    from ftserve.store.postgres import MIGRATIONS

    current = MIGRATIONS.version
    from tests.conftest import create_database

    assert set(KEPT) == set(range(3, current + 1)), "keep every shipped version's script"
    old = pg_empty_url
    _apply(old, KEPT[version], version)
    migrated = cli("migrate", url=old, data_dir=tmp_path / "a")
    assert migrated.returncode == 0, migrated.stderr
    fresh = create_database(pg_url, "template0")
    made = cli("migrate", url=fresh, data_dir=tmp_path / "b")
    assert made.returncode == 0 and "no schema -> schema version" in made.stdout, made.stderr
    got, want = catalog(old), catalog(fresh)
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    # The dump is not vacuous: it sees what the schema holds.
    assert want["version"] == [(current,)]
    assert {r[1] for r in want["triggers"]} >= {"events_no_update", "events_no_delete"}
    assert any(r[0] == "ftserve_events_append_only" for r in want["functions"])
    assert any(r[1] == "events_pkey" and r[2] == "p" for r in want["constraints"])
    assert any("events_by_key" in r[1] and "WHERE" in r[2] for r in want["indexes"])


def test_the_catalog_dump_sees_a_difference(
    pg_store_url: str, pg_url: str, pg_server_template: str
) -> None:
    """What the equality test compares catches each kind of drift a migration could leave."""
    import psycopg

    from tests.conftest import create_database

    reference = catalog(pg_store_url)
    drifts: list[tuple[set[str], str]] = [
        ({"columns"}, "ALTER TABLE jobs ALTER COLUMN attempts SET DEFAULT 1"),
        ({"columns"}, "ALTER TABLE checkpoints ALTER COLUMN kind DROP NOT NULL"),
        ({"columns"}, "ALTER TABLE files ALTER COLUMN bytes TYPE INTEGER"),
        (
            {"indexes"},
            "DROP INDEX jobs_by_model; CREATE INDEX jobs_by_model ON jobs (fine_tuned_model)",
        ),
        (  # a unique constraint goes with its index
            {"constraints", "indexes"},
            "ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_job_id_step_number_key",
        ),
        ({"triggers"}, "DROP TRIGGER events_no_truncate ON events"),
        (
            {"functions"},
            "CREATE OR REPLACE FUNCTION ftserve_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$",
        ),
        ({"tables", "columns"}, "CREATE TABLE leftover (x INTEGER)"),
        ({"sequences"}, "ALTER TABLE jobs ALTER COLUMN seq RESTART WITH 1 SET INCREMENT BY 2"),
    ]
    for parts, statement in drifts:
        url = create_database(pg_url, pg_server_template)  # migrated, like pg_store_url
        with psycopg.connect(url) as conn:
            conn.execute(statement.encode())
        changed = catalog(url)
        differ = {k for k in reference if changed[k] != reference[k]}
        assert differ == parts, (statement, differ)


def test_migration_steps_run_in_one_transaction(
    pg_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (made-up) next version is applied on top of the shipped one and recorded; a step that fails
    leaves the database exactly at its old version, the steps before it undone."""
    import psycopg

    from ftserve.errors import StoreError
    from ftserve.store import postgres

    before = catalog(pg_store_url)
    shipped = postgres.MIGRATIONS
    now, made_up = shipped.version, shipped.version + 1

    def with_step(script: str) -> None:
        monkeypatch.setattr(
            postgres, "MIGRATIONS", replace(shipped, steps={**shipped.steps, made_up: script})
        )

    with_step("ALTER TABLE jobs ADD COLUMN note TEXT; ALTER TABLE jobs ADD COLUMN broken NOPE;")
    with pytest.raises(StoreError, match="could not migrate"):
        postgres.migrate(pg_store_url)
    assert catalog(pg_store_url) == before
    with pytest.raises(
        postgres.SchemaNotReady, match=rf"schema version {now}.*needs {made_up}.*ftserve migrate"
    ):
        postgres.PostgresStore(pg_store_url)

    with_step("ALTER TABLE jobs ADD COLUMN note TEXT;")
    assert postgres.migrate(pg_store_url) == (now, made_up)
    assert postgres.migrate(pg_store_url) == (made_up, made_up)
    after = catalog(pg_store_url)
    assert after["version"] == [(made_up,)]
    assert [c for c in after["columns"] if c not in before["columns"]] == [
        ("jobs", "note", "text", "text", None, None, "YES", None, "NO", None, "NEVER", None, None)
    ]
    store = postgres.PostgresStore(pg_store_url)
    store.close()
    with psycopg.connect(pg_store_url) as conn:
        conn.execute("UPDATE ftserve_schema SET version = %s", (made_up + 1,))
    with pytest.raises(
        StoreError, match=rf"schema version {made_up + 1}; this ftserve knows {made_up}\. Upgrade"
    ):
        postgres.migrate(pg_store_url)


def test_concurrent_migrations_apply_the_schema_once(pg_empty_url: str, pg_store_url: str) -> None:
    from ftserve.store.postgres import MIGRATIONS, migrate

    results: list[tuple[int | None, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(pg_empty_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    now = MIGRATIONS.version
    assert sorted(results, key=str) == [(now, now), (now, now), (now, now), (None, now)]
    assert catalog(pg_empty_url) == catalog(pg_store_url)


def test_a_version_from_before_postgresql_support_is_refused(pg_store_url: str) -> None:
    """No ftserve wrote a PostgreSQL schema below 3; a database claiming one is not guessed at
    (it used to end in a KeyError)."""
    import psycopg

    from ftserve.errors import StoreError
    from ftserve.store.postgres import PostgresStore, migrate

    with psycopg.connect(pg_store_url) as conn:
        conn.execute("UPDATE ftserve_schema SET version = 2")
    with pytest.raises(StoreError, match=r"schema version 2, older than PostgreSQL support \(3\)"):
        migrate(pg_store_url)
    with pytest.raises(StoreError, match=r"schema version 2, older than PostgreSQL support"):
        PostgresStore(pg_store_url)


def test_serve_and_worker_refuse_an_unmigrated_database_until_migrate(
    pg_empty_url: str, tmp_path: Path
) -> None:
    import httpx2 as httpx

    port = str(free_port())
    for command in (["serve", "--port", port], ["worker"]):
        out = cli(*command, url=pg_empty_url, data_dir=tmp_path / "data", timeout=60)
        assert out.returncode != 0, (command, out.stdout, out.stderr)
        assert "has no ftserve schema; run `ftserve migrate`" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr, out.stderr
    assert cli("migrate", url=pg_empty_url, data_dir=tmp_path / "data").returncode == 0
    env = {
        **os.environ,
        "FTSERVE_DATABASE_URL": pg_empty_url,
        "FTSERVE_API_KEYS": "sk-test-0123456789",
        "FTSERVE_WORKERS": "0",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ftserve",
            "serve",
            "--port",
            port,
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the server exited after the migration"
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/v1/fine_tuning/jobs",
                    headers={"Authorization": "Bearer sk-test-0123456789"},
                    timeout=2,
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["data"] == []
    finally:
        server.terminate()
        server.wait(30)


def test_an_older_schema_stops_the_server_with_the_migrate_message(
    pg_store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server of a newer ftserve (one knowing a made-up next version) on a database at the
    shipped one."""
    from ftserve.cli.main import main
    from ftserve.store import postgres

    step = "ALTER TABLE jobs ADD COLUMN note TEXT;"
    now = postgres.MIGRATIONS.version
    monkeypatch.setattr(
        postgres,
        "MIGRATIONS",
        replace(postgres.MIGRATIONS, steps={**postgres.MIGRATIONS.steps, now + 1: step}),
    )
    monkeypatch.setenv("FTSERVE_DATABASE_URL", pg_store_url)
    monkeypatch.setenv("FTSERVE_API_KEYS", "sk-test-0123456789")
    for command in (["serve", "--port", str(free_port())], ["worker"]):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--data-dir", str(tmp_path / "data")])
        assert f"schema version {now}; this ftserve needs {now + 1}: run `ftserve migrate`" in str(
            stopped.value.code
        )


# Every PostgreSQL schema version ftserve shipped, verbatim (see the module docstring).
KEPT: dict[int, str] = {
    3: """
CREATE TABLE files (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    organization   TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    filename       TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    blob           TEXT NOT NULL,
    expires_at     BIGINT,
    status         TEXT NOT NULL,
    status_details TEXT
);
CREATE INDEX files_by_org ON files (organization, seq);

CREATE TABLE jobs (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    organization     TEXT NOT NULL,
    model            TEXT NOT NULL,
    model_source     TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    training_file    TEXT NOT NULL,
    validation_file  TEXT,
    hyperparameters  TEXT NOT NULL,
    method           TEXT NOT NULL,
    seed             BIGINT NOT NULL,
    suffix           TEXT,
    metadata         TEXT,
    integrations     TEXT,
    extensions       TEXT NOT NULL,
    finished_at      BIGINT,
    fine_tuned_model TEXT,
    error            TEXT,
    trained_tokens   BIGINT,
    result_files     TEXT NOT NULL,
    estimated_finish BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at DOUBLE PRECISION,
    claim_token      TEXT
);
CREATE INDEX jobs_by_org ON jobs (organization, seq);
CREATE INDEX jobs_visible ON jobs (id, organization);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_model ON jobs (fine_tuned_model) WHERE fine_tuned_model IS NOT NULL;

CREATE TABLE events (
    job_id     TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    key        TEXT,
    body       BYTEA NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE UNIQUE INDEX events_by_id ON events (id);
CREATE UNIQUE INDEX events_by_key ON events (job_id, key) WHERE key IS NOT NULL;

CREATE TABLE checkpoints (
    id                          TEXT PRIMARY KEY,
    job_id                      TEXT NOT NULL,
    created_at                  BIGINT NOT NULL,
    step_number                 BIGINT NOT NULL,
    fine_tuned_model_checkpoint TEXT NOT NULL,
    metrics                     TEXT NOT NULL,
    path                        TEXT NOT NULL,
    kind                        TEXT NOT NULL DEFAULT 'epoch',
    UNIQUE (job_id, step_number)
);

CREATE TABLE deleted_models (
    name         TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    deleted_at   BIGINT NOT NULL
);
CREATE INDEX deleted_models_by_org ON deleted_models (organization);

CREATE FUNCTION ftserve_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION ftserve_events_append_only();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ftserve_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ftserve_events_append_only();

CREATE TABLE ftserve_schema (
    version INTEGER NOT NULL
);
""",
}
# Version 4 as shipped: version 3 and its step (the jobs' devices, the workers' capacity).
KEPT[4] = (
    KEPT[3]
    + """
ALTER TABLE jobs ADD COLUMN devices BIGINT NOT NULL DEFAULT 1;
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    devices      BIGINT NOT NULL,
    devices_free BIGINT NOT NULL,
    auto_devices BIGINT NOT NULL,
    seen_at      DOUBLE PRECISION NOT NULL
);
"""
)
# Version 5 as shipped: version 4 and its step (stored responses of the Responses API).
KEPT[5] = (
    KEPT[4]
    + """
CREATE TABLE responses (
    id           TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    body         TEXT NOT NULL,
    items        TEXT NOT NULL
);
CREATE INDEX responses_by_expiry ON responses (expires_at);
"""
)
# Version 6 as shipped: version 5 and its step (the batches and their lines).
KEPT[6] = (
    KEPT[5]
    + """
CREATE TABLE batches (
    seq                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    organization         TEXT NOT NULL,
    endpoint             TEXT NOT NULL,
    input_file_id        TEXT NOT NULL,
    completion_window    TEXT NOT NULL,
    status               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    in_progress_at       BIGINT,
    finalizing_at        BIGINT,
    completed_at         BIGINT,
    failed_at            BIGINT,
    expired_at           BIGINT,
    cancelling_at        BIGINT,
    cancelled_at         BIGINT,
    output_file_id       TEXT,
    error_file_id        TEXT,
    errors               TEXT,
    metadata             TEXT,
    output_expires_after BIGINT,
    model                TEXT,
    total                BIGINT NOT NULL DEFAULT 0,
    completed            BIGINT NOT NULL DEFAULT 0,
    failed               BIGINT NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_expires_at     DOUBLE PRECISION,
    claim_token          TEXT
);
CREATE INDEX batches_by_org ON batches (organization, seq);
CREATE INDEX batches_by_status ON batches (status, seq);
CREATE TABLE batch_lines (
    batch_id    TEXT NOT NULL,
    line        BIGINT NOT NULL,
    custom_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    result      TEXT,
    failed      BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT,
    PRIMARY KEY (batch_id, line),
    UNIQUE (batch_id, custom_id)
);
CREATE INDEX batch_lines_pending ON batch_lines (batch_id, line) WHERE result IS NULL;
"""
)
# Version 7 as shipped: version 6 and its step (gangs: one job on several workers).
KEPT[7] = (
    KEPT[6]
    + """
CREATE TABLE gangs (
    job_id      TEXT PRIMARY KEY,
    claim_token TEXT NOT NULL,
    nodes       BIGINT NOT NULL,
    devices     BIGINT NOT NULL,
    address     TEXT NOT NULL,
    port        BIGINT NOT NULL,
    opened_at   DOUBLE PRECISION NOT NULL
);
CREATE TABLE gang_members (
    job_id      TEXT NOT NULL,
    claim_token TEXT NOT NULL,
    node_rank   BIGINT NOT NULL,
    worker_id   TEXT NOT NULL,
    joined_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, claim_token, node_rank)
);
"""
)
