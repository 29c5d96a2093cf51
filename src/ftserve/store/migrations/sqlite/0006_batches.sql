-- Version 6: the Batch API. A batch, its lines (one row per request of its input file, kept
-- from validation on), and each line's result, written as the line finishes so a batch resumes
-- after a crash without running a finished line again.
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
