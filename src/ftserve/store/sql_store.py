"""The Store, written once for every SQL database (SQLite and PostgreSQL: sqlite.py,
postgres.py give the :class:`~ftserve.store.dialect.Dialect`).

Every method is one transaction of the dialect. A write decides on what it has locked: the job's
row (``{lock}`` in sql.py, PostgreSQL's ``FOR UPDATE``; SQLite's single writer holds the whole
database) before a guard is checked or an event appended, so a job's ``seq`` stays gap-free
and ordered under concurrent appends, and no cancel, pause or new claim commits between a
claim's fence and its write.

Keys holding U+0000 name no row (ids never hold one) and are answered as absent before any
query: PostgreSQL text cannot hold the character, and SQLite answers so by itself, so both
databases say the same.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..jobs.states import FINAL, Status, log_accepts
from . import rows, sql
from .batch_store import BatchMethods
from .changes import ChangeFeed
from .dialect import Dialect, Row, Session
from .protocol import Fence, UnknownCursor, WriteRefused
from .records import (
    CheckpointRecord,
    Claim,
    EventsAfter,
    FileRecord,
    GangSeat,
    JobChanges,
    JobRecord,
    LoggedEvent,
    NewEvent,
    Page,
    ResponseRecord,
)


def _nul(value: str | None) -> bool:
    return value is not None and "\x00" in value


class _NothingQueued(Exception):
    """Leaves a claim's transaction that found no job (rolled back: nothing to tell anyone)."""


class SqlStore(BatchMethods):
    def __init__(self, dialect: Dialect) -> None:
        self._db = dialect
        self.changes: ChangeFeed = dialect.changes
        self._queue_empty = True  # the last claim found nothing (see claim_job)

    def close(self) -> None:
        self._db.close()

    # -- files -------------------------------------------------------------------------------
    def add_file(self, file: FileRecord) -> None:
        with self._db.tx() as s:
            s.run(sql.FILE_INSERT, rows.file_values(file))

    def get_file(self, organization: str, file_id: str, now: int) -> FileRecord | None:
        if _nul(file_id):
            return None
        args = {"id": file_id, "org": organization, "now": now}
        row = self._db.read(lambda s: s.one(sql.FILE_GET, args))
        return None if row is None else rows.file_record(row)

    def list_files(
        self,
        organization: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: int,
    ) -> Page[FileRecord]:
        args: dict[str, Any] = {"org": organization, "now": now, "after": after}
        where = [sql.FILES_OF_ORG]
        if purpose is not None:
            where.append(sql.FILES_OF_PURPOSE)
            args["purpose"] = purpose
        if after is not None:
            where.append(sql.AFTER_SEQ_ASC if ascending else sql.AFTER_SEQ_DESC)
        order = "ASC" if ascending else "DESC"
        query = f"{sql.FILE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT :n"

        def read(s: Session) -> Page[FileRecord]:
            seq = None if after is None else self._seq(s, sql.FILE_SEQ, args, after)
            found = s.all(query, {**args, "seq": seq, "n": limit + 1})
            return Page([rows.file_record(r) for r in found[:limit]], len(found) > limit)

        return self._db.read(read)

    def delete_file(self, organization: str, file_id: str) -> FileRecord | None:
        if _nul(file_id):
            return None
        with self._db.tx() as s:
            row = s.one(sql.FILE_DELETE, {"id": file_id, "org": organization})
            return None if row is None else rows.file_record(row)

    def file_blobs(self) -> set[str]:
        return self._db.read(lambda s: {str(r[0]) for r in s.all(sql.FILE_BLOBS)})

    @staticmethod
    def _seq(s: Session, statement: str, args: Mapping[str, Any], after: str) -> Any:
        """The place of a list's cursor item; UnknownCursor when there is none."""
        row = None if _nul(after) else s.one(statement, args)
        if row is None:
            raise UnknownCursor(after)
        return row[0]

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, job: JobRecord, events: Sequence[NewEvent]) -> None:
        with self._db.tx() as s:
            # The new row is this transaction's (and locked by it) until the commit.
            s.run(sql.JOB_INSERT, rows.job_values(job))
            self._append(s, job.id, events, None, job.status)
            self._db.wake_for(None, job.status, job.lease_owner, False)

    def get_job(self, job_id: str, organization: str | None = None) -> JobRecord | None:
        if _nul(job_id):
            return None
        args = {"id": job_id, "org": organization}
        row = self._db.read(lambda s: s.one(sql.JOB_GET, args))
        return None if row is None else rows.job_record(row)

    def list_jobs(
        self,
        organization: str,
        *,
        after: str | None,
        limit: int,
        metadata: Mapping[str, str] | None,
    ) -> Page[JobRecord]:
        args: dict[str, Any] = {"org": organization, "after": after, "limit": limit + 1}
        where = [sql.JOBS_OF_ORG]
        if after is not None:
            where.append(sql.AFTER_SEQ_DESC)
        for i, (key, value) in enumerate((metadata or {}).items()):
            where.append(sql.metadata_has(i))
            args[f"pair{i}"] = rows.metadata_pair(key, value)
        query = f"{sql.JOB_SELECT} WHERE {' AND '.join(where)}{sql.NEWEST_FIRST}"

        def read(s: Session) -> Page[JobRecord]:
            seq = None if after is None else self._seq(s, sql.JOB_SEQ, args, after)
            found = s.all(query, {**args, "seq": seq})
            return Page([rows.job_record(r) for r in found[:limit]], len(found) > limit)

        return self._db.read(read)

    def update_job(
        self,
        job_id: str,
        *,
        expect: Collection[str] | None,
        changes: JobChanges,
        events: Sequence[NewEvent] = (),
        expect_claim: str | None = None,
    ) -> JobRecord | None:
        rows.check_changes(changes)
        with self._db.tx() as s:
            row = s.one(sql.JOB_LOCK, {"id": job_id})
            if row is None:
                return None
            job = rows.job_record(row)
            if expect is not None and job.status not in expect:
                return None
            if expect_claim is not None and job.claim_token != expect_claim:
                return None
            new = self._set(s, job_id, changes)
            after = str(changes.get("status", job.status))
            self._append(s, job_id, events, job.status, after)
            self._db.wake_for(job.status, after, job.lease_owner, _releases(changes))
            return job if new is None else rows.job_record(new)

    @staticmethod
    def _set(s: Session, job_id: str, changes: Mapping[str, Any]) -> Row | None:
        """The job's row after the changes (None when there are none)."""
        if not changes:
            return None
        return s.one(sql.job_update(changes), {**rows.change_values(changes), "id": job_id})

    def jobs_with_status(self, status: str, limit: int) -> list[JobRecord]:
        args = {"status": status, "limit": limit}
        return [
            rows.job_record(r) for r in self._db.read(lambda s: s.all(sql.JOBS_WITH_STATUS, args))
        ]

    # -- queue -------------------------------------------------------------------------------
    def claim_job(
        self,
        worker_id: str,
        now: float,
        lease_seconds: float,
        events: Sequence[NewEvent],
        *,
        free: int = 1,
        auto: int = 1,
    ) -> JobRecord | None:
        fit = {"free": free, "auto": auto}
        # Idle workers ask often: once a claim found nothing, a read answers "still nothing"
        # without a write transaction; after one that found a job, the next claim goes straight
        # to the transaction (a busy queue saves the read).
        if self._queue_empty and self._db.read(lambda s: s.one(sql.ANY_QUEUED, fit)) is None:
            return None
        args = {
            "worker": worker_id,
            "until": now + lease_seconds,
            "token": secrets.token_hex(8),
            **fit,
        }
        try:
            with self._db.tx() as s:
                new = s.one(sql.CLAIM, args)
                if new is None:
                    raise _NothingQueued  # rolled back: no commit, no notification
                claimed = rows.job_record(new)
                self._append(s, claimed.id, events, Status.QUEUED, Status.RUNNING)
        except _NothingQueued:
            self._queue_empty = True
            return None
        self._queue_empty = False
        return claimed

    # -- workers' capacity ------------------------------------------------------------------
    def record_worker(self, worker_id: str, devices: int, free: int, auto: int, now: float) -> None:
        args = {"id": worker_id, "devices": devices, "free": free, "auto": auto, "now": now}
        with self._db.tx() as s:
            s.run(sql.WORKER_UPSERT, args)

    def forget_workers(self, worker_id: str | None, seen_before: float) -> None:
        with self._db.tx() as s:
            if worker_id is not None:
                s.run(sql.WORKER_DELETE, {"id": worker_id})
            s.run(sql.WORKERS_STALE_DELETE, {"before": seen_before})

    def unfit_jobs(self, live_since: float, told: str, limit: int) -> list[JobRecord]:
        args = {"live": live_since, "key": told, "limit": limit}
        found = self._db.read(lambda s: s.all(sql.UNFIT_JOBS, args))
        return [rows.job_record(r) for r in found]

    # -- gangs -------------------------------------------------------------------------------
    def open_gang(
        self, claim: Claim, nodes: int, devices: int, address: str, port: int, now: float
    ) -> bool:
        args = {"job": claim.job_id, "token": claim.token}
        with self._db.tx() as s:
            row = s.one(sql.JOB_FENCE_LOCK, {"id": claim.job_id})
            if row is None or row[1] != claim.token or row[0] != Status.RUNNING:
                return False
            # An earlier claim's gang is dead: its rows go with this one's arrival.
            s.run(sql.GANG_MEMBERS_DROP, args)
            s.run(sql.GANG_DROP, args)
            where = {"address": address, "port": port, "now": now}
            s.run(sql.GANG_INSERT, {**args, "nodes": nodes, "devices": devices, **where})
            # Idle workers look at the queue when told a job became claimable; a gang with
            # places left is claimable by them in the same sense.
            self._db.wake_for(None, Status.QUEUED, None, False)
            return True

    def join_gang(self, worker_id: str, free: int, now: float) -> GangSeat | None:
        look = {"free": free, "worker": worker_id}
        # Idle workers ask at every look at the queue: a read answers "none" without a write
        # transaction, almost always.
        if self._db.read(lambda s: s.one(sql.GANG_OPEN, look)) is None:
            return None
        with self._db.tx() as s:
            row = s.one(sql.GANG_OPEN, look)
            if row is None:
                return None
            job_id, token, nodes, devices, address, port, joined = row
            seat = GangSeat(
                Claim(job_id, token), int(joined) + 1, int(nodes), int(devices), address, int(port)
            )
            args = {"job": job_id, "token": token, "rank": seat.node_rank, "worker": worker_id}
            if s.run(sql.GANG_MEMBER_INSERT, {**args, "now": now}) != 1:
                return None  # another worker took that node rank first
            return seat

    def gang_members(self, claim: Claim) -> list[str]:
        args = {"job": claim.job_id, "token": claim.token}
        return [r[0] for r in self._db.read(lambda s: s.all(sql.GANG_MEMBERS, args))]

    def close_gang(self, claim: Claim) -> None:
        args = {"job": claim.job_id, "token": claim.token}
        with self._db.tx() as s:
            s.run(sql.GANG_MEMBERS_CLOSE, args)
            s.run(sql.GANG_CLOSE, args)

    def renew_lease(self, claim: Claim, until: float) -> bool:
        with self._db.tx() as s:
            return s.run(sql.RENEW, {"until": until, "id": claim.job_id, "token": claim.token}) == 1

    def release_claim(self, claim: Claim) -> bool:
        with self._db.tx() as s:
            row = s.one(sql.CLAIM_HOLDER_LOCK, {"id": claim.job_id, "token": claim.token})
            if row is None:
                return False
            s.run(sql.RELEASE, {"id": claim.job_id})
            self._db.wake_for(row[0], row[0], row[1], True)
            return True

    def write_claimed(
        self,
        claim: Claim,
        *,
        fence: Fence = "running",
        changes: JobChanges | None = None,
        events: Sequence[NewEvent] = (),
        add_checkpoint: CheckpointRecord | None = None,
        drop_checkpoints: Sequence[str] = (),
        add_files: Sequence[FileRecord] = (),
    ) -> str:
        changes = changes or {}
        rows.check_changes(changes)
        job_id = claim.job_id
        with self._db.tx() as s:
            # The lock holds the fence: no cancel, pause or new claim commits between the check
            # and this write.
            row = s.one(sql.JOB_FENCE_LOCK, {"id": job_id})
            if row is None:
                raise WriteRefused(job_id, None, False, "the job does not exist")
            status, token, owner = row
            if token != claim.token:
                raise WriteRefused(job_id, status, False, "the claim is no longer current")
            if fence == "running" and status != Status.RUNNING:
                raise WriteRefused(job_id, status, True, f"the job is {status}")
            if status in FINAL:
                raise WriteRefused(job_id, status, True, f"the job has {status}")
            after = str(changes.get("status", status))
            if events and not log_accepts(status, after):
                raise WriteRefused(job_id, status, True, f"the job's log is closed ({status})")
            self._set(s, job_id, changes)
            self._append(s, job_id, events, status, after)
            self._db.wake_for(status, after, owner, _releases(changes))
            if add_checkpoint is not None:
                s.run(sql.CKPT_UPSERT, rows.ckpt_values(add_checkpoint))
            for checkpoint_id in drop_checkpoints:
                s.run(sql.CKPT_DROP, {"id": checkpoint_id, "job": job_id})
            for file in add_files:
                s.run(sql.FILE_INSERT, rows.file_values(file))
            return after

    def expired_leases(self, now: float) -> list[JobRecord]:
        found = self._db.read(lambda s: s.all(sql.EXPIRED_LEASES, {"now": now}))
        return [rows.job_record(r) for r in found]

    # -- events ------------------------------------------------------------------------------
    @staticmethod
    def _append(
        s: Session, job_id: str, events: Sequence[NewEvent], before: str | None, after: str
    ) -> int:
        """Callers hold the job (its row lock, or the row is their own insert)."""
        if not events:
            return 0
        if not log_accepts(before, after):
            raise WriteRefused(job_id, after, False, f"the job's log is closed ({after})")
        added = 0
        for event in events:
            added += s.run(sql.EVENT_APPEND, rows.event_values(job_id, event))
        return added

    def append_events(self, job_id: str, events: Sequence[NewEvent]) -> int:
        with self._db.tx() as s:
            row = s.one(sql.JOB_STATUS_LOCK, {"id": job_id})
            if row is None:
                raise WriteRefused(job_id, None, False, "the job does not exist")
            return self._append(s, job_id, events, row[0], row[0])

    def event_page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[bytes] | None:
        if _nul(job_id):
            return None
        args = {"job": job_id, "org": organization, "limit": limit + 1, "after": after}
        bad_cursor = _nul(after)

        def read(s: Session) -> Page[bytes] | None:
            query = sql.PAGE_FIRST if after is None else sql.PAGE_AFTER
            found = [] if bad_cursor else s.all(query, args)
            if not found:
                if s.one(sql.JOB_VISIBLE, args) is None:
                    return None
                if after is not None and (bad_cursor or s.one(sql.EVENT_OF_JOB, args) is None):
                    raise UnknownCursor(after)
            return Page([bytes(r[0]) for r in found[:limit]], len(found) > limit)

        return self._db.read(read)

    def events_after(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> EventsAfter | None:
        if _nul(job_id) or _nul(organization):
            return None
        args = {"job": job_id, "org": organization, "limit": limit, "after": after}

        def read(s: Session) -> EventsAfter | None:
            # The status first: once it is final the log is complete, so the events read next
            # (a later snapshot) hold the terminal one.
            row = s.one(sql.STATUS_AND_CURSOR, {**args, "after": None if _nul(after) else after})
            if row is None:
                return None
            if after is not None and row[1] is None:
                raise UnknownCursor(after)
            seq = int(row[1] or 0)
            found = s.all(sql.EVENTS_AFTER, {**args, "seq": seq})
            return EventsAfter(
                Status(row[0]), seq, [LoggedEvent(r[0], r[1], bytes(r[2])) for r in found]
            )

        return self._db.read(read)

    def event_bodies(self, job_id: str, kind: str | None = None) -> list[bytes]:
        args = {"job": job_id, "kind": kind}
        query = sql.EVENT_BODIES if kind is None else sql.EVENT_BODIES_OF_KIND
        return [bytes(r[0]) for r in self._db.read(lambda s: s.all(query, args))]

    # -- checkpoints -------------------------------------------------------------------------
    def list_checkpoints(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> Page[CheckpointRecord] | None:
        if _nul(job_id):
            return None
        args = {"job": job_id, "org": organization, "after": after, "limit": limit + 1}

        def read(s: Session) -> Page[CheckpointRecord] | None:
            if organization is not None and s.one(sql.JOB_VISIBLE, args) is None:
                return None
            if after is None:
                found = s.all(sql.CKPTS_FIRST, args)
            else:
                step = self._seq(s, sql.CKPT_STEP, args, after)
                found = s.all(sql.CKPTS_AFTER, {**args, "step": step})
            return Page([rows.ckpt_record(r) for r in found[:limit]], len(found) > limit)

        return self._db.read(read)

    # -- fine-tuned models --------------------------------------------------------------------
    def succeeded_jobs(self, organization: str) -> list[JobRecord]:
        found = self._db.read(lambda s: s.all(sql.SUCCEEDED_JOBS, {"org": organization}))
        return [rows.job_record(r) for r in found]

    def job_for_model(self, organization: str, fine_tuned_model: str) -> JobRecord | None:
        if _nul(fine_tuned_model):
            return None
        args = {"name": fine_tuned_model, "org": organization}
        row = self._db.read(lambda s: s.one(sql.JOB_FOR_MODEL, args))
        return None if row is None else rows.job_record(row)

    def deleted_models(self, organization: str, names: Sequence[str] | None = None) -> set[str]:
        query, args = sql.DELETED_MODELS, {"org": organization}
        if names is not None:
            among, values = self._db.names_in("name", names)
            query, args = f"{query} AND {among}", {**args, **values}
        return {r[0] for r in self._db.read(lambda s: s.all(query, args))}

    def delete_models(
        self, organization: str, job_id: str, names: Sequence[str], now: int
    ) -> list[str]:
        with self._db.tx() as s:
            row = s.one(sql.JOB_STATUS_OF_ORG_LOCK, {"id": job_id, "org": organization})
            if row is None or row[0] != Status.SUCCEEDED:
                return []
            args = {"org": organization, "job": job_id, "now": now}
            return [n for n in names if s.run(sql.DELETED_MODEL_INSERT, {**args, "name": n})]

    # -- stored responses ---------------------------------------------------------------------
    def add_response(self, response: ResponseRecord, now: int) -> None:
        with self._db.tx() as s:
            # Expired responses go with the next write: no sweeper to run, and the table holds
            # no more than the responses of the last TTL.
            s.run(sql.RESPONSES_EXPIRED, {"now": now})
            s.run(sql.RESPONSE_INSERT, rows.response_values(response))

    def get_response(self, organization: str, response_id: str, now: int) -> ResponseRecord | None:
        if _nul(response_id):
            return None
        args = {"id": response_id, "org": organization, "now": now}
        row = self._db.read(lambda s: s.one(sql.RESPONSE_GET, args))
        return None if row is None else ResponseRecord(*row)

    def delete_response(self, organization: str, response_id: str, now: int) -> bool:
        if _nul(response_id):
            return False
        with self._db.tx() as s:
            args = {"id": response_id, "org": organization, "now": now}
            return s.run(sql.RESPONSE_DELETE, args) > 0


def _releases(changes: Mapping[str, Any]) -> bool:
    return changes.get("claim_token", "") is None  # the claim let go (worker/lease.py RELEASED)
