-- ftserve SQLite schema, at the version of the highest numbered step beside it (5). Applied in
-- one transaction on a fresh database; older databases are brought to the same shape by the
-- numbered steps (migrations.py).
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
    lease_expires_at REAL,
    -- New on every claim; every write of a worker or its training process carries it.
    claim_token      TEXT,
    -- The devices the job trains on (0: "auto", every device of the worker that takes it).
    devices          INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX jobs_by_org ON jobs (organization, seq);
-- Covers the "is this job visible to this organization" check of every events page.
CREATE INDEX jobs_visible ON jobs (id, organization);
CREATE INDEX jobs_by_status ON jobs (status, seq);
-- GET /models/{ft:...} and inference look a fine-tuned model up by its name.
CREATE INDEX jobs_by_model ON jobs (fine_tuned_model) WHERE fine_tuned_model IS NOT NULL;

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
    kind                        TEXT NOT NULL DEFAULT 'epoch',
    UNIQUE (job_id, step_number)
);

-- Fine-tuned and checkpoint models deleted with DELETE /models/{model}. The job keeps its
-- fine_tuned_model and its checkpoint rows (history); a name here is no longer a model.
CREATE TABLE deleted_models (
    name         TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    deleted_at   INTEGER NOT NULL
);
CREATE INDEX deleted_models_by_org ON deleted_models (organization);

-- Append-only means append-only: the database itself refuses to change or drop an event.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
-- Each worker's devices, how many are free, what "auto" takes there, and when it said so.
CREATE TABLE workers (id TEXT PRIMARY KEY, devices INTEGER NOT NULL, devices_free INTEGER NOT NULL, auto_devices INTEGER NOT NULL, seen_at REAL NOT NULL);

-- Stored responses of the Responses API, per organization, until they expire.
CREATE TABLE responses (id TEXT PRIMARY KEY, organization TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, body TEXT NOT NULL, items TEXT NOT NULL);
CREATE INDEX responses_by_expiry ON responses (expires_at);

-- The Batch API: batches, and their lines with each one's result once it finished.
CREATE TABLE batches (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    organization         TEXT NOT NULL,
    endpoint             TEXT NOT NULL,
    input_file_id        TEXT NOT NULL,
    completion_window    TEXT NOT NULL,
    status               TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    in_progress_at       INTEGER,
    finalizing_at        INTEGER,
    completed_at         INTEGER,
    failed_at            INTEGER,
    expired_at           INTEGER,
    cancelling_at        INTEGER,
    cancelled_at         INTEGER,
    output_file_id       TEXT,
    error_file_id        TEXT,
    errors               TEXT,
    metadata             TEXT,
    output_expires_after INTEGER,
    model                TEXT,
    total                INTEGER NOT NULL DEFAULT 0,
    completed            INTEGER NOT NULL DEFAULT 0,
    failed               INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_expires_at     REAL,
    claim_token          TEXT
);
CREATE INDEX batches_by_org ON batches (organization, seq);
CREATE INDEX batches_by_status ON batches (status, seq);
CREATE TABLE batch_lines (
    batch_id    TEXT NOT NULL,
    line        INTEGER NOT NULL,
    custom_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    result      TEXT,
    failed      INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER,
    PRIMARY KEY (batch_id, line),
    UNIQUE (batch_id, custom_id)
);
CREATE INDEX batch_lines_pending ON batch_lines (batch_id, line) WHERE result IS NULL;

-- Jobs on several machines: where a claim's ranks meet, and the workers that took its node ranks.
CREATE TABLE gangs (job_id TEXT PRIMARY KEY, claim_token TEXT NOT NULL, nodes INTEGER NOT NULL, devices INTEGER NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL, opened_at REAL NOT NULL);
CREATE TABLE gang_members (job_id TEXT NOT NULL, claim_token TEXT NOT NULL, node_rank INTEGER NOT NULL, worker_id TEXT NOT NULL, joined_at REAL NOT NULL, PRIMARY KEY (job_id, claim_token, node_rank));
