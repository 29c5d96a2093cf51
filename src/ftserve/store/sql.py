"""Every statement of the SQL store, named, written once for both databases.

Parameters are ``:name`` (SQLite's own style; PostgreSQL's ``%(name)s`` is made from it, see
:func:`to_pyformat`). Where the two databases truly differ, a statement holds a marker that the
dialect fills in (``dialect.py``):

* ``{lock}`` — `` FOR UPDATE`` on PostgreSQL, where a write locks the job row it decides on;
  nothing on SQLite, whose single writer (``BEGIN IMMEDIATE``) already excludes every other.
* ``{skip_locked}`` — `` FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers racing for the queue
  take different jobs instead of waiting; nothing on SQLite (one writer: no race to skip).
* ``{strpos}`` — the substring-position function (``instr`` / ``strpos``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .rows import CKPT_COLUMNS, FILE_COLUMNS, JOB_COLUMNS, RESPONSE_COLUMNS

JOB_SELECT = "SELECT " + ", ".join(JOB_COLUMNS) + " FROM jobs"
FILE_SELECT = "SELECT " + ", ".join(FILE_COLUMNS) + " FROM files"
CKPT_SELECT = "SELECT " + ", ".join(CKPT_COLUMNS) + " FROM checkpoints"


def metadata_has(i: int) -> str:
    """list_jobs: the ``i``-th metadata pair of the filter is in the job's metadata."""
    return f"{{strpos}}(metadata, :pair{i}) > 0"


def insert(table: str, columns: list[str]) -> str:
    marks = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


# -- files ------------------------------------------------------------------------------------
FILE_INSERT = insert("files", FILE_COLUMNS)
FILE_GET = (
    f"{FILE_SELECT} WHERE id = :id AND organization = :org "
    "AND (expires_at IS NULL OR expires_at > :now)"
)
FILE_SEQ = "SELECT seq FROM files WHERE id = :after AND organization = :org"
FILE_DELETE = (
    f"DELETE FROM files WHERE id = :id AND organization = :org RETURNING {', '.join(FILE_COLUMNS)}"
)
FILE_BLOBS = "SELECT blob FROM files"
# list_files: FILE_SELECT, the WHERE parts that apply, the order, then LIMIT.
FILES_OF_ORG = "organization = :org AND (expires_at IS NULL OR expires_at > :now)"
FILES_OF_PURPOSE = "purpose = :purpose"
AFTER_SEQ_ASC = "seq > :seq"
AFTER_SEQ_DESC = "seq < :seq"

# -- jobs -------------------------------------------------------------------------------------
JOB_INSERT = insert("jobs", JOB_COLUMNS)
JOB_GET = f"{JOB_SELECT} WHERE id = :id AND (CAST(:org AS TEXT) IS NULL OR organization = :org)"
JOB_LOCK = f"{JOB_SELECT} WHERE id = :id{{lock}}"


def job_update(columns: Iterable[str]) -> str:
    """The update of the given job columns (their values: rows.change_values), returning the
    row after it."""
    sets = ", ".join(f"{c} = :set_{c}" for c in columns)
    return f"UPDATE jobs SET {sets} WHERE id = :id RETURNING {', '.join(JOB_COLUMNS)}"


JOB_SEQ = "SELECT seq FROM jobs WHERE id = :after AND organization = :org"
JOB_VISIBLE = "SELECT 1 FROM jobs WHERE id = :job AND organization = :org"
JOB_STATUS_LOCK = "SELECT status FROM jobs WHERE id = :id{lock}"
JOB_STATUS_OF_ORG_LOCK = "SELECT status FROM jobs WHERE id = :id AND organization = :org{lock}"
JOB_FENCE_LOCK = "SELECT status, claim_token, lease_owner FROM jobs WHERE id = :id{lock}"
JOBS_WITH_STATUS = f"{JOB_SELECT} WHERE status = :status ORDER BY seq LIMIT :limit"
# list_jobs: JOB_SELECT, the WHERE parts, newest first, LIMIT. Metadata is a flat string map
# stored as orjson writes it (compact, canonical escapes), so `"key":"value"` with its quotes
# occurs in the text exactly when the pair is there: inside a JSON string every quote is
# escaped. Both databases decide the match on that text: SQLite's json_each stops at an escaped
# U+0000, which the API allows, and no PostgreSQL text or jsonb value can hold one at all.
JOBS_OF_ORG = "organization = :org"
NEWEST_FIRST = " ORDER BY seq DESC LIMIT :limit"

# -- queue ------------------------------------------------------------------------------------
# A job fits a worker whose free devices cover what it asks for ("auto", 0, asks for what
# `auto` takes on that worker: all of its GPUs, or 1 on CPU).
FITS = "(CASE WHEN devices = 0 THEN :auto ELSE devices END) <= :free"
CLAIMABLE = f"status = 'queued' AND claim_token IS NULL AND {FITS}"
ANY_QUEUED = f"SELECT 1 FROM jobs WHERE {CLAIMABLE} LIMIT 1"
# Finds, takes and returns the oldest claimable job that fits in one statement. On PostgreSQL a
# job another worker is claiming right now is skipped, not waited for, and its row is
# re-checked against the condition once locked, so no two claims take one job.
CLAIM = (
    "UPDATE jobs SET status = 'running', lease_owner = :worker, lease_expires_at = :until, "
    "claim_token = :token, attempts = attempts + 1 WHERE id = ("
    f"SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY seq LIMIT 1"
    f"{{skip_locked}}) RETURNING {', '.join(JOB_COLUMNS)}"
)
# -- workers' capacity --------------------------------------------------------------------------
WORKER_UPSERT = (
    "INSERT INTO workers (id, devices, devices_free, auto_devices, seen_at) "
    "VALUES (:id, :devices, :free, :auto, :now) ON CONFLICT (id) DO UPDATE SET "
    "devices = excluded.devices, devices_free = excluded.devices_free, "
    "auto_devices = excluded.auto_devices, seen_at = excluded.seen_at"
)
WORKER_DELETE = "DELETE FROM workers WHERE id = :id"
WORKERS_STALE_DELETE = "DELETE FROM workers WHERE seen_at < :before"
# Queued jobs that no live worker could take even when idle, not yet told so (the key of the
# event that tells them is :key).
UNFIT_JOBS = (
    f"{JOB_SELECT} WHERE status = 'queued' AND claim_token IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.seen_at >= :live AND "
    "(CASE WHEN jobs.devices = 0 THEN w.auto_devices ELSE jobs.devices END) <= w.devices) "
    "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = jobs.id AND e.key = :key) "
    "ORDER BY seq LIMIT :limit"
)
# -- gangs: one claim of a job trained by several workers ----------------------------------------
GANG_DROP = "DELETE FROM gangs WHERE job_id = :job"
GANG_MEMBERS_DROP = "DELETE FROM gang_members WHERE job_id = :job"
GANG_INSERT = (
    "INSERT INTO gangs (job_id, claim_token, nodes, devices, address, port, opened_at) "
    "VALUES (:job, :token, :nodes, :devices, :address, :port, :now)"
)
_GANG_SIZE = (
    "(SELECT COUNT(*) FROM gang_members m "
    "WHERE m.job_id = g.job_id AND m.claim_token = g.claim_token)"
)
# The oldest job's gang that is still its current claim's, has a node rank left, fits this
# worker's free devices and is neither led nor joined by it already; with how many joined.
# (A node rank is taken once by the primary key: of two workers that counted the same members,
# the second insert takes nothing.)
GANG_OPEN = (
    f"SELECT g.job_id, g.claim_token, g.nodes, g.devices, g.address, g.port, {_GANG_SIZE} "
    "FROM gangs g JOIN jobs j ON j.id = g.job_id AND j.claim_token = g.claim_token "
    "WHERE j.status = 'running' AND g.devices <= :free AND j.lease_owner <> :worker "
    f"AND {_GANG_SIZE} < g.nodes - 1 AND NOT EXISTS (SELECT 1 FROM gang_members m "
    "WHERE m.job_id = g.job_id AND m.claim_token = g.claim_token AND m.worker_id = :worker) "
    "ORDER BY j.seq LIMIT 1"
)
GANG_MEMBER_INSERT = (
    "INSERT INTO gang_members (job_id, claim_token, node_rank, worker_id, joined_at) "
    "VALUES (:job, :token, :rank, :worker, :now) ON CONFLICT DO NOTHING"
)
GANG_MEMBERS = (
    "SELECT worker_id FROM gang_members WHERE job_id = :job AND claim_token = :token "
    "ORDER BY node_rank"
)
GANG_CLOSE = "DELETE FROM gangs WHERE job_id = :job AND claim_token = :token"
GANG_MEMBERS_CLOSE = "DELETE FROM gang_members WHERE job_id = :job AND claim_token = :token"

RENEW = "UPDATE jobs SET lease_expires_at = :until WHERE id = :id AND claim_token = :token"
CLAIM_HOLDER_LOCK = (
    "SELECT status, lease_owner FROM jobs WHERE id = :id AND claim_token = :token{lock}"
)
RELEASE = (
    "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL WHERE id = :id"
)
EXPIRED_LEASES = (
    f"{JOB_SELECT} WHERE lease_owner IS NOT NULL AND lease_expires_at < :now ORDER BY seq"
)

# -- events -----------------------------------------------------------------------------------
# The next seq is found in the insert itself. The writer holds the job (PostgreSQL: its row
# lock; SQLite: the only write transaction), so max(seq) cannot move under it: seq stays
# gap-free and in commit order per job. A duplicate id or key is ignored (keyed step events).
EVENT_APPEND = (
    "INSERT INTO events (job_id, seq, id, created_at, kind, key, body) "
    "SELECT :job, COALESCE(MAX(seq), 0) + 1, :id, :at, :kind, :key, :body "
    "FROM events WHERE job_id = :job ON CONFLICT DO NOTHING"
)
# One statement on the hot path: the organization check rides along as a constant EXISTS;
# only an empty result needs the extra look-ups that tell why it is empty.
PAGE_FIRST = (
    "SELECT body FROM events WHERE job_id = :job "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = :job AND organization = :org) "
    "ORDER BY seq DESC LIMIT :limit"
)
PAGE_AFTER = (
    "SELECT body FROM events WHERE job_id = :job "
    "AND seq < (SELECT seq FROM events WHERE id = :after AND job_id = :job) "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = :job AND organization = :org) "
    "ORDER BY seq DESC LIMIT :limit"
)
EVENT_OF_JOB = "SELECT 1 FROM events WHERE id = :after AND job_id = :job"
# The status and the cursor's place in one statement (one round trip); the events after it.
STATUS_AND_CURSOR = (
    "SELECT j.status, c.seq FROM jobs j "
    "LEFT JOIN events c ON c.id = :after AND c.job_id = j.id "
    "WHERE j.id = :job AND (CAST(:org AS TEXT) IS NULL OR j.organization = :org)"
)
EVENTS_AFTER = (
    "SELECT seq, id, body FROM events WHERE job_id = :job AND seq > :seq ORDER BY seq LIMIT :limit"
)
EVENT_BODIES = "SELECT body FROM events WHERE job_id = :job ORDER BY seq"
EVENT_BODIES_OF_KIND = "SELECT body FROM events WHERE job_id = :job AND kind = :kind ORDER BY seq"

# -- checkpoints ------------------------------------------------------------------------------
# A checkpoint at a step the job already has (a resumed run saving the same epoch end again)
# replaces the row: the newer files are the ones a current claim names.
CKPT_UPSERT = (
    insert("checkpoints", CKPT_COLUMNS)
    + " ON CONFLICT (job_id, step_number) DO UPDATE SET created_at = excluded.created_at, "
    "metrics = excluded.metrics, path = excluded.path, kind = excluded.kind"
)
CKPT_DROP = "DELETE FROM checkpoints WHERE id = :id AND job_id = :job"
CKPT_STEP = "SELECT step_number FROM checkpoints WHERE id = :after AND job_id = :job"
CKPTS_FIRST = f"{CKPT_SELECT} WHERE job_id = :job ORDER BY step_number DESC LIMIT :limit"
CKPTS_AFTER = (
    f"{CKPT_SELECT} WHERE job_id = :job AND step_number < :step "
    "ORDER BY step_number DESC LIMIT :limit"
)

# -- fine-tuned models ------------------------------------------------------------------------
SUCCEEDED_JOBS = (
    f"{JOB_SELECT} WHERE organization = :org AND status = 'succeeded' "
    "AND fine_tuned_model IS NOT NULL ORDER BY finished_at NULLS FIRST, seq"
)
JOB_FOR_MODEL = (
    f"{JOB_SELECT} WHERE fine_tuned_model = :name AND organization = :org ORDER BY seq LIMIT 1"
)
DELETED_MODELS = "SELECT name FROM deleted_models WHERE organization = :org"
DELETED_MODEL_INSERT = (
    "INSERT INTO deleted_models (name, organization, job_id, deleted_at) "
    "VALUES (:name, :org, :job, :now) ON CONFLICT DO NOTHING"
)

# -- stored responses (the Responses API) ------------------------------------------------------
RESPONSE_INSERT = insert("responses", RESPONSE_COLUMNS)
RESPONSES_EXPIRED = "DELETE FROM responses WHERE expires_at <= :now"
RESPONSE_GET = (
    f"SELECT {', '.join(RESPONSE_COLUMNS)} FROM responses "
    "WHERE id = :id AND organization = :org AND expires_at > :now"
)
RESPONSE_DELETE = (
    "DELETE FROM responses WHERE id = :id AND organization = :org AND expires_at > :now"
)

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def to_pyformat(statement: str) -> str:
    """``:name`` → ``%(name)s`` (psycopg), a literal ``%`` doubled; ``::type`` casts kept."""
    return _NAMED.sub(r"%(\1)s", statement.replace("%", "%%"))
