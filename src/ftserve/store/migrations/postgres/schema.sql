-- ftserve PostgreSQL schema, version 5 (PostgreSQL support began at 3; each later version comes
-- with a numbered step NNNN_*.sql beside this file): the same logical schema as ../sqlite/schema.sql.
-- Applied by `ftserve migrate` in one transaction on a database without it (postgres.py).
-- JSON columns hold the exact text orjson wrote (as in SQLite), so records round-trip as
-- written; event bodies are bytea, returned as the bytes appended.
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
    -- New on every claim; every write of a worker or its training process carries it.
    claim_token      TEXT,
    -- The devices the job trains on (0: "auto", every device of the worker that takes it).
    devices          BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX jobs_by_org ON jobs (organization, seq);
-- Covers the "is this job visible to this organization" check of every events page.
CREATE INDEX jobs_visible ON jobs (id, organization);
CREATE INDEX jobs_by_status ON jobs (status, seq);
-- GET /models/{ft:...} and inference look a fine-tuned model up by its name.
CREATE INDEX jobs_by_model ON jobs (fine_tuned_model) WHERE fine_tuned_model IS NOT NULL;

-- One page is one range of the primary key. seq is gap-free per job: appends take the job's
-- row FOR UPDATE before computing max(seq) + 1. The body is written once: append-only.
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

-- Fine-tuned and checkpoint models deleted with DELETE /models/{model}. The job keeps its
-- fine_tuned_model and its checkpoint rows (history); a name here is no longer a model.
CREATE TABLE deleted_models (
    name         TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    deleted_at   BIGINT NOT NULL
);
CREATE INDEX deleted_models_by_org ON deleted_models (organization);

-- Append-only means append-only: the database itself refuses to change or drop an event.
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

-- Each worker's devices, how many are free, what "auto" takes there, and when it said so.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    devices      BIGINT NOT NULL,
    devices_free BIGINT NOT NULL,
    auto_devices BIGINT NOT NULL,
    seen_at      DOUBLE PRECISION NOT NULL
);

-- Stored responses of the Responses API, per organization, until they expire.
CREATE TABLE responses (
    id           TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    body         TEXT NOT NULL,
    items        TEXT NOT NULL
);
CREATE INDEX responses_by_expiry ON responses (expires_at);

-- The Batch API: batches, and their lines with each one's result once it finished.
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

-- Jobs on several machines: where a claim's ranks meet, and the workers that took its node ranks.
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

-- The schema's version: one row, written by `ftserve migrate` only.
CREATE TABLE ftserve_schema (
    version INTEGER NOT NULL
);
