-- Version 6: the Batch API. A batch, its lines (one row per request of its input file, kept
-- from validation on), and each line's result, written as the line finishes so a batch resumes
-- after a crash without running a finished line again.
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
