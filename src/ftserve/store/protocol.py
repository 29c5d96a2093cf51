"""The narrow storage seam. Services talk to this protocol only; SQL lives in its implementations.

Every method is one transaction. A method that changes a job's state takes the events that
describe the change and writes them in the same transaction, so the event log and the job never
disagree, even across ``kill -9``.

The log ends where the job ended: no event is appended to a job that is ``succeeded``,
``failed`` or ``cancelled``, nor to a ``paused`` one, unless the same transaction moves it out
of that status (a resume, a cancel of a paused job). Writes by a worker and its training
process carry their :class:`~ftserve.store.records.Claim` and are checked against the job's
current claim in the transaction that would write (``write_claimed``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from .batch_records import BatchChanges, BatchLine, BatchRecord
from .changes import ChangeFeed
from .records import (
    CheckpointRecord,
    Claim,
    EventsAfter,
    FileRecord,
    GangSeat,
    JobChanges,
    JobRecord,
    JoinedPage,
    NewEvent,
    Page,
    ResponseRecord,
)

Fence = Literal["running", "held"]


class UnknownCursor(Exception):
    """``after`` names no item of the list being paged."""


class WriteRefused(Exception):
    """The store refused a write that would contradict the job's state; nothing was written.

    Raised when a claim is no longer current (``claim_current`` False: the lease expired or
    another claim took the job), when a claimed write needs a ``running`` job and the job is
    not (the user cancelled or paused it: ``status`` says which), and when events would be
    appended to a log that is closed (after the terminal event, or while the job is paused).
    A trainer takes it as its signal to stop. It is not a :class:`~ftserve.errors.StoreError`:
    a refusal is an answer, a StoreError is a database that could not answer.
    """

    def __init__(self, job_id: str, status: str | None, claim_current: bool, why: str) -> None:
        super().__init__(f"write for {job_id} refused: {why}")
        self.job_id = job_id
        self.status = status
        self.claim_current = claim_current


class Store(Protocol):
    changes: ChangeFeed
    """The wake-up seam: tells this process about commits by any process (see changes.py)."""

    # -- files -------------------------------------------------------------------------------
    def add_file(self, file: FileRecord) -> None: ...

    def get_file(self, organization: str, file_id: str, now: int) -> FileRecord | None: ...

    def list_files(
        self,
        organization: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: int,
    ) -> Page[FileRecord]: ...

    def delete_file(self, organization: str, file_id: str) -> FileRecord | None: ...

    def file_blobs(self) -> set[str]:
        """Every blob key a file row names, expired files' included (the start's sweep of
        orphaned file blobs keeps these)."""
        ...

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, job: JobRecord, events: Sequence[NewEvent]) -> None: ...

    def get_job(self, job_id: str, organization: str | None = None) -> JobRecord | None: ...

    def list_jobs(
        self,
        organization: str,
        *,
        after: str | None,
        limit: int,
        metadata: Mapping[str, str] | None,
    ) -> Page[JobRecord]: ...

    def update_job(
        self,
        job_id: str,
        *,
        expect: Collection[str] | None,
        changes: JobChanges,
        events: Sequence[NewEvent] = (),
        expect_claim: str | None = None,
    ) -> JobRecord | None:
        """Apply ``changes`` and append ``events`` atomically, only if the job's status is in
        ``expect`` (any status when None) and, when given, its claim token is
        ``expect_claim``. Returns the updated job, or None when the guard failed. Raises
        :class:`WriteRefused` when ``events`` would go to a closed log."""
        ...

    def jobs_with_status(self, status: str, limit: int) -> list[JobRecord]: ...

    # -- queue (the jobs table is the queue) -------------------------------------------------
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
        """Atomically take the oldest unclaimed ``queued`` job that fits in ``free`` devices
        (a job asking for ``"auto"`` needs ``auto``): status ``running``, lease to worker_id,
        a new ``claim_token``, attempts + 1, ``events`` appended."""
        ...

    def record_worker(self, worker_id: str, devices: int, free: int, auto: int, now: float) -> None:
        """Say what a worker has: its devices, how many are free, what ``"auto"`` takes there
        (a worker says it again within every lease; older rows are stale)."""
        ...

    def forget_workers(self, worker_id: str | None, seen_before: float) -> None:
        """Drop a worker's row (it stopped), and every row not renewed since ``seen_before``."""
        ...

    def unfit_jobs(self, live_since: float, told: str, limit: int) -> list[JobRecord]:
        """Queued jobs that no worker seen since ``live_since`` could take even when idle and
        that have no event keyed ``told`` yet (the event that says so)."""
        ...

    # -- gangs: one job trained by several workers --------------------------------------------
    def open_gang(
        self, claim: Claim, nodes: int, devices: int, address: str, port: int, now: float
    ) -> bool:
        """The leader (the holder of ``claim``, current and ``running``) says where the ranks
        of its ``nodes`` workers of ``devices`` each meet; replaces an earlier claim's gang.
        False, nothing written, when the claim is not current or the job not running."""
        ...

    def join_gang(self, worker_id: str, free: int, now: float) -> GangSeat | None:
        """Atomically take the next node rank of the oldest job's open gang that fits in
        ``free`` devices, is its current claim's and that this worker neither leads nor has
        joined. A node rank is taken once per claim; None when there is none to take."""
        ...

    def gang_members(self, claim: Claim) -> list[str]:
        """The workers that joined the claim's gang, by node rank (1, 2, …)."""
        ...

    def close_gang(self, claim: Claim) -> None:
        """Drop the claim's gang and its members (nobody else may join it)."""
        ...

    def renew_lease(self, claim: Claim, until: float) -> bool:
        """Extend the lease while ``claim`` is current; False when it is not."""
        ...

    def release_claim(self, claim: Claim) -> bool:
        """Let go of the job (lease and token cleared, status kept) while ``claim`` is
        current; False when it is not."""
        ...

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
        """One write of a claim holder, in one transaction, fenced by the claim: refused with
        :class:`WriteRefused` unless ``claim`` is current and the job is ``running`` (``fence
        "running"``: metrics, progress, the final status) or at least not finished (``fence
        "held"``: a pause checkpoint saved after the pause, checkpoint retention). Returns the
        job's status after the write."""
        ...

    def expired_leases(self, now: float) -> list[JobRecord]: ...

    # -- events ------------------------------------------------------------------------------
    def append_events(self, job_id: str, events: Sequence[NewEvent]) -> int:
        """Append unfenced (tests, benchmarks); refused like any append to a closed log."""
        ...

    def event_page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[bytes] | None:
        """Serialised events, newest first. None when the job is unknown to this organization;
        raises UnknownCursor when ``after`` is not an event of this job."""
        ...

    def events_after(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> EventsAfter | None:
        """Up to ``limit`` events that follow the event ``after`` (from the first when None),
        OLDEST first, with the job's status read before them (live event streams). None when
        the job is unknown (to ``organization``, when given); raises UnknownCursor when
        ``after`` is not an event of this job."""
        ...

    def event_bodies(self, job_id: str, kind: str | None = None) -> list[bytes]:
        """All of a job's events, oldest first (for result files)."""
        ...

    # -- checkpoints (written through write_claimed) ----------------------------------------
    def list_checkpoints(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> Page[CheckpointRecord] | None: ...

    # -- fine-tuned models (the jobs that made them, and their deletion) ----------------------
    def succeeded_jobs(self, organization: str) -> list[JobRecord]:
        """The organization's succeeded jobs that named a fine-tuned model, oldest finish
        first."""
        ...

    def job_for_model(self, organization: str, fine_tuned_model: str) -> JobRecord | None:
        """The organization's job whose ``fine_tuned_model`` is this name, in any status."""
        ...

    def deleted_models(self, organization: str, names: Sequence[str] | None = None) -> set[str]:
        """The model names of the organization deleted so far (only among ``names`` when
        given)."""
        ...

    def delete_models(
        self, organization: str, job_id: str, names: Sequence[str], now: int
    ) -> list[str]:
        """Record ``names`` (the job's fine-tuned model and/or checkpoint models) as deleted, in
        one transaction, only while the job is the organization's and ``succeeded``. Returns the
        names newly recorded (a name deleted before is left as it was)."""
        ...

    # -- stored responses (the Responses API) ------------------------------------------------
    def add_response(self, response: ResponseRecord, now: int) -> None:
        """Store a response; responses expired at ``now`` (any organization's) are dropped in
        the same transaction."""
        ...

    def get_response(self, organization: str, response_id: str, now: int) -> ResponseRecord | None:
        """The organization's response, unless it expired before ``now``."""
        ...

    def delete_response(self, organization: str, response_id: str, now: int) -> bool:
        """Delete the organization's response; False when there was none (or it expired)."""
        ...

    # -- batches (the Batch API; claimed by runners like jobs by workers) -------------------
    def create_batch(self, batch: BatchRecord) -> None: ...

    def get_batch(self, organization: str | None, batch_id: str) -> BatchRecord | None:
        """The batch, when it is ``organization``'s (any organization's when None)."""
        ...

    def list_batches(
        self, organization: str, *, after: str | None, limit: int
    ) -> Page[BatchRecord]:
        """Newest first; raises UnknownCursor when ``after`` is not one of its batches."""
        ...

    def update_batch(
        self,
        batch_id: str,
        *,
        expect: Collection[str],
        changes: BatchChanges,
        token: str | None = None,
        add_files: Sequence[FileRecord] = (),
    ) -> BatchRecord | None:
        """Apply ``changes`` and add ``add_files`` in one transaction, only while the batch's
        status is in ``expect`` and, when given, its claim token is ``token``. Returns the
        batch after it, or None when the guard failed (nothing written)."""
        ...

    def claim_batch(self, worker_id: str, now: float, lease_seconds: float) -> BatchRecord | None:
        """Take the oldest unfinished batch nobody holds (or whose holder's lease ran out):
        lease to ``worker_id`` and a new claim token."""
        ...

    def renew_batch_lease(self, batch_id: str, token: str, until: float) -> bool:
        """Extend the lease while ``token`` is the batch's claim; False when it is not."""
        ...

    def add_batch_lines(
        self, batch_id: str, token: str, lines: Sequence[BatchLine], changes: BatchChanges
    ) -> BatchRecord | None: ...

    def batch_lines(
        self, batch_id: str, *, pending: bool, after: int = 0, limit: int = 1000
    ) -> list[BatchLine]: ...

    def finish_batch_line(
        self, batch_id: str, token: str, line: int, result: str, failed: bool, now: int
    ) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncEventReads(Protocol):
    """An optional capability of a store whose reads cost a network round trip (PostgreSQL):
    the events page awaited on the event loop instead of blocking it. Checked once, at startup,
    with ``isinstance``; a store without it (SQLite) keeps the inline :meth:`Store.event_page`.

    ``event_page_async`` answers as ``event_page`` does, the page's bodies joined by commas
    (``b",".join(page.items)``): the endpoint sends them so, and the store can join them where
    it is cheaper. ``close_async_reads`` is awaited by the app's lifespan, on the loop the
    reads ran on."""

    async def event_page_async(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> JoinedPage | None: ...

    async def close_async_reads(self) -> None: ...
