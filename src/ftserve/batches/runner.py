"""The batch runner: in every API process that serves inference, a task on its event loop that
claims unfinished batches through the Store (a lease and a claim token, as workers claim jobs,
so two replicas never run one batch) and drives each to its end:

``validating`` → the input file is checked (input.py) → ``failed`` with its errors, or its lines
stored and ``in_progress`` → every line without a result runs through the live endpoint
(dispatch.py; at most ``concurrency`` at once, at the batch priority, so live requests go first)
and its result is stored the moment it finishes, fenced by the claim → ``finalizing`` → the
output and error files written and recorded with the final status, in one transaction.

A runner that dies (``kill -9``) leaves its claim to expire; the next claim resumes the batch
from its stored lines: a finished line is never run again, a line that was running is run once
more (its first run left nothing). A user's cancel (``cancelling``) and the end of the
completion window stop the lines in flight; the batch ends ``cancelled`` or ``expired`` with the
finished lines in its output file and the others in its error file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from starlette.types import ASGIApp

from ..errors import StoreUnavailable
from ..files.service import FileService
from ..store.batch_records import BatchLine, BatchRecord
from ..store.protocol import Store
from .dispatch import Answer, call
from .input import check_file
from .output import result_line, write_files
from .schemas import MAX_FILE_BYTES, batch_error

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # an idle runner looks for a batch this often; a running one for a cancel
_RELEASE = {"lease_owner": None, "lease_expires_at": None, "claim_token": None}


def _keeps_running(batch: BatchRecord | None, token: str) -> bool:
    """Whether the lines of ``batch`` (as just read) may go on running under ``token``."""
    return (
        batch is not None
        and batch.claim_token == token
        and batch.status == "in_progress"
        and time.time() < batch.expires_at
    )


class _Lost(Exception):
    """The claim is no longer this runner's (its lease ran out and another took the batch)."""


class BatchRunner:
    def __init__(
        self,
        store: Store,
        files: FileService,
        app: ASGIApp,
        *,
        lease_seconds: float,
        concurrency: int,
    ) -> None:
        self._store = store
        self._files = files
        self._app = app
        self._lease = lease_seconds
        self._concurrency = max(1, concurrency)
        self._id = f"{socket.gethostname()}/{os.getpid()}/batches"
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="ftserve-batches")

    def wake(self) -> None:
        """A batch was created or cancelled in this process: look now rather than at the next
        poll (any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                batch = await asyncio.to_thread(
                    self._store.claim_batch, self._id, time.time(), self._lease
                )
                if batch is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                    self._wake.clear()
                    continue
                await self._drive(batch)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # an outage the API already reports: no traceback
                log.warning("batch runner: %s; trying again", exc)
                await asyncio.sleep(POLL_SECONDS * 4)
            except Exception:
                log.exception("batch runner")
                await asyncio.sleep(POLL_SECONDS * 4)

    async def _drive(self, batch: BatchRecord) -> None:
        token = batch.claim_token or ""
        renewer = asyncio.create_task(self._renew(batch.id, token))
        try:
            current: BatchRecord | None = batch
            while current is not None:
                current = await self._step(current, token)
        except _Lost:
            log.warning("batch %s: claim lost to another runner", batch.id)
        except asyncio.CancelledError:
            # Shutting down: let the next runner (this server restarted, or a replica) take it
            # at once instead of after the lease.
            await asyncio.shield(
                asyncio.to_thread(
                    self._store.update_batch,
                    batch.id,
                    expect=("validating", "in_progress", "finalizing", "cancelling"),
                    changes=dict(_RELEASE),  # type: ignore[arg-type]
                    token=token,
                )
            )
            raise
        finally:
            renewer.cancel()

    async def _renew(self, batch_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            until = time.time() + self._lease
            if not await asyncio.to_thread(self._store.renew_batch_lease, batch_id, token, until):
                return

    async def _step(self, batch: BatchRecord, token: str) -> BatchRecord | None:
        """One move of the batch; the batch after it, or None when this runner is done."""
        now = int(time.time())
        if batch.status == "validating":
            return await self._validate(batch, token)
        if batch.status == "in_progress" and now >= batch.expires_at:
            return await self._finish(batch, token, "expired", {"expired_at": now})
        if batch.status == "in_progress":
            return await self._run_lines(batch, token)
        if batch.status == "finalizing":
            return await self._finish(batch, token, "completed", {"completed_at": now})
        if batch.status == "cancelling":
            return await self._finish(batch, token, "cancelled", {"cancelled_at": now})
        return None

    async def _update(
        self, batch: BatchRecord, token: str, changes: dict[str, object]
    ) -> BatchRecord:
        """The batch after ``changes``, or as a cancel left it (then unchanged by them)."""
        new = await asyncio.to_thread(
            self._store.update_batch,
            batch.id,
            expect=(batch.status,),
            changes=changes,  # type: ignore[arg-type]
            token=token,
        )
        if new is None:
            return await self._reread(batch, token)
        return new

    async def _reread(self, batch: BatchRecord, token: str) -> BatchRecord:
        """The batch as it is now (a cancel changed it under this runner); _Lost when the claim
        went elsewhere."""
        now = await asyncio.to_thread(self._store.get_batch, None, batch.id)
        if now is None or now.claim_token != token:
            raise _Lost
        return now

    async def _validate(self, batch: BatchRecord, token: str) -> BatchRecord | None:
        now = int(time.time())
        record = await asyncio.to_thread(
            self._store.get_file, batch.organization, batch.input_file_id, now
        )
        if record is None:
            errors = [
                batch_error(
                    "invalid_file",
                    f"The input file {batch.input_file_id} is no longer available.",
                    param="input_file_id",
                )
            ]
        elif record.bytes > MAX_FILE_BYTES:
            errors = [
                batch_error(
                    "file_too_large",
                    f"The input file is larger than the {MAX_FILE_BYTES >> 20} MB maximum.",
                    param="input_file_id",
                )
            ]
        else:
            path = await asyncio.to_thread(self._files.blob_path, record)
            checked = await asyncio.to_thread(check_file, path, batch.endpoint)
            errors = checked.errors
            if not errors:
                changes = {
                    "status": "in_progress",
                    "in_progress_at": int(time.time()),
                    "total": len(checked.lines),
                    "model": checked.model,
                }
                new = await asyncio.to_thread(
                    self._store.add_batch_lines,
                    batch.id,
                    token,
                    checked.lines,
                    changes,  # type: ignore[arg-type]
                )
                return new if new is not None else await self._reread(batch, token)
        failed: dict[str, object] = {
            "status": "failed",
            "failed_at": int(time.time()),
            "errors": errors,
            **_RELEASE,
        }
        return await self._update(batch, token, failed)

    async def _run_lines(self, batch: BatchRecord, token: str) -> BatchRecord:
        """Run every line without a result; the batch after (``finalizing``, or whatever a
        cancel or the window's end made of it)."""
        queue: asyncio.Queue[BatchLine] = asyncio.Queue()
        for line in await asyncio.to_thread(
            self._store.batch_lines, batch.id, pending=True, limit=1 << 30
        ):
            queue.put_nowait(line)
        gone = asyncio.Event()  # set: the lines in flight are abandoned (their clients "left")
        lost = False

        async def record(line: BatchLine, answer: Answer) -> None:
            nonlocal lost
            recorded = await asyncio.to_thread(
                self._store.finish_batch_line,
                batch.id,
                token,
                line.line,
                result_line(line.custom_id, answer),
                answer.status >= 400,
                int(time.time()),
            )
            if not recorded:
                lost = True
                gone.set()

        async def lane() -> None:
            # A line's result is written while the lane's next line already generates: the
            # write is off the path that keeps the decode batch full.
            writing: asyncio.Task[None] | None = None
            try:
                while not gone.is_set():
                    try:
                        line = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    body = line.body.encode()
                    answer = await call(self._app, batch.organization, batch.endpoint, body, gone)
                    if gone.is_set():
                        return
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(record(line, answer))
            finally:
                if writing is not None:
                    await writing

        lanes = [asyncio.create_task(lane()) for _ in range(self._concurrency)]
        try:
            while not all(t.done() for t in lanes):
                # A cancel made in this process wakes the runner at once; others are seen
                # within a poll.
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    [*lanes, woken], timeout=POLL_SECONDS, return_when="FIRST_COMPLETED"
                )
                woken.cancel()
                self._wake.clear()
                now = await asyncio.to_thread(self._store.get_batch, None, batch.id)
                if not _keeps_running(now, token):
                    gone.set()
            for t in lanes:
                t.result()
        finally:
            gone.set()
            for t in lanes:
                t.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
        current = await self._reread(batch, token)
        if lost or current.status != "in_progress" or time.time() >= current.expires_at:
            return current
        pending = await asyncio.to_thread(self._store.batch_lines, batch.id, pending=True, limit=1)
        if pending:
            return current
        return await self._update(
            current, token, {"status": "finalizing", "finalizing_at": int(time.time())}
        )

    async def _finish(
        self, batch: BatchRecord, token: str, ending: str, stamps: dict[str, object]
    ) -> BatchRecord | None:
        lines = await asyncio.to_thread(
            self._store.batch_lines, batch.id, pending=False, limit=1 << 30
        )
        made = await asyncio.to_thread(write_files, self._files, batch, lines, ending)
        changes: dict[str, object] = {"status": ending, **stamps, **_RELEASE}
        if "output" in made:
            changes["output_file_id"] = made["output"].id
        if "error" in made:
            changes["error_file_id"] = made["error"].id
        new = await asyncio.to_thread(
            self._store.update_batch,
            batch.id,
            expect=(batch.status,),
            changes=changes,  # type: ignore[arg-type]
            token=token,
            add_files=list(made.values()),
        )
        if new is None:  # a cancel came in between: the files are not the batch's
            for record in made.values():
                self._files.discard_generated(record)
            return await self._reread(batch, token)
        return None
