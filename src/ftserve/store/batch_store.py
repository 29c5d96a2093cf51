"""The Store's Batch API methods, written once over a dialect (mixed into SqlStore).

A batch is claimed like a job: a lease and a claim token, new on every claim. Every write of a
runner carries the token and is made only while it is current, in the transaction that holds
the batch's row (``{lock}``), so a runner whose lease ran out (and whose batch another replica
took) writes nothing, and a line's result is recorded once: ``finish_batch_line`` only fills a
line that has none.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from typing import Any

from . import batch_sql as q
from . import rows, sql
from .batch_records import BatchChanges, BatchLine, BatchRecord
from .dialect import Dialect, Session
from .protocol import UnknownCursor
from .records import FileRecord, Page


def _nul(value: str | None) -> bool:
    return value is not None and "\x00" in value


class BatchMethods:
    _db: Dialect

    def create_batch(self, batch: BatchRecord) -> None:
        with self._db.tx() as s:
            s.run(q.BATCH_INSERT, q.batch_values(batch))

    def get_batch(self, organization: str | None, batch_id: str) -> BatchRecord | None:
        if _nul(batch_id):
            return None
        args = {"id": batch_id, "org": organization}
        row = self._db.read(lambda s: s.one(q.BATCH_GET, args))
        return None if row is None else q.batch_record(row)

    def list_batches(
        self, organization: str, *, after: str | None, limit: int
    ) -> Page[BatchRecord]:
        args: dict[str, Any] = {"org": organization, "after": after, "limit": limit + 1}
        query = q.BATCHES_OF_ORG + (q.BATCHES_AFTER if after is not None else "")
        query += q.BATCHES_NEWEST_FIRST

        def read(s: Session) -> Page[BatchRecord]:
            if after is not None:
                row = None if _nul(after) else s.one(q.BATCH_SEQ, args)
                if row is None:
                    raise UnknownCursor(after)
                args["seq"] = row[0]
            found = s.all(query, args)
            return Page([q.batch_record(r) for r in found[:limit]], len(found) > limit)

        return self._db.read(read)

    def update_batch(
        self,
        batch_id: str,
        *,
        expect: Collection[str],
        changes: BatchChanges,
        token: str | None = None,
        add_files: Sequence[FileRecord] = (),
    ) -> BatchRecord | None:
        with self._db.tx() as s:
            row = s.one(q.BATCH_LOCK, {"id": batch_id})
            if row is None:
                return None
            batch = q.batch_record(row)
            if batch.status not in expect or (token is not None and batch.claim_token != token):
                return None
            for file in add_files:
                s.run(sql.FILE_INSERT, rows.file_values(file))
            if not changes:
                return batch
            new = s.one(q.batch_update(changes), {**q.change_values(changes), "id": batch_id})
            return q.batch_record(new)

    def claim_batch(self, worker_id: str, now: float, lease_seconds: float) -> BatchRecord | None:
        if self._db.read(lambda s: s.one(q.ANY_CLAIMABLE, {"now": now})) is None:
            return None
        args = {
            "worker": worker_id,
            "now": now,
            "until": now + lease_seconds,
            "token": secrets.token_hex(8),
        }
        with self._db.tx() as s:
            row = s.one(q.BATCH_CLAIM, args)
        return None if row is None else q.batch_record(row)

    def renew_batch_lease(self, batch_id: str, token: str, until: float) -> bool:
        with self._db.tx() as s:
            return s.run(q.BATCH_RENEW, {"id": batch_id, "token": token, "until": until}) == 1

    def add_batch_lines(
        self, batch_id: str, token: str, lines: Sequence[BatchLine], changes: BatchChanges
    ) -> BatchRecord | None:
        """The validated lines of a ``validating`` batch, and its move out of validation, in one
        transaction while ``token`` is its claim; None (nothing written) otherwise."""
        with self._db.tx() as s:
            row = s.one(q.BATCH_LOCK, {"id": batch_id})
            if row is None:
                return None
            batch = q.batch_record(row)
            if batch.status != "validating" or batch.claim_token != token:
                return None
            for line in lines:
                s.run(
                    q.LINE_INSERT,
                    {
                        "batch_id": batch_id,
                        "line": line.line,
                        "custom_id": line.custom_id,
                        "body": line.body,
                    },
                )
            new = s.one(q.batch_update(changes), {**q.change_values(changes), "id": batch_id})
            return q.batch_record(new)

    def batch_lines(
        self, batch_id: str, *, pending: bool, after: int = 0, limit: int = 1000
    ) -> list[BatchLine]:
        """Lines after line number ``after``, in file order: those without a result
        (``pending``) or all of them."""
        args = {"id": batch_id, "after": after, "limit": limit}
        query = q.LINES_PENDING if pending else q.LINES_ALL
        return [q.line_record(r) for r in self._db.read(lambda s: s.all(query, args))]

    def finish_batch_line(
        self, batch_id: str, token: str, line: int, result: str, failed: bool, now: int
    ) -> bool:
        """Record a line's result while ``token`` is the batch's claim and the batch is
        ``in_progress`` or ``cancelling``, once (a line with a result keeps it), counting it in
        the batch's request counts. True when this call recorded it."""
        with self._db.tx() as s:
            row = s.one(q.BATCH_LOCK, {"id": batch_id})
            if row is None:
                return False
            batch = q.batch_record(row)
            if batch.claim_token != token or batch.status not in ("in_progress", "cancelling"):
                return False
            args = {"id": batch_id, "line": line, "result": result, "failed": int(failed)}
            if s.run(q.LINE_FINISH, {**args, "now": now}) != 1:
                return False
            s.run(q.BATCH_COUNT, {"id": batch_id, "ok": int(not failed), "bad": int(failed)})
            return True
