"""The trainer's hooks on the worker side: every record a training process makes for its job.

Each step's metrics event is written before the next step starts, in one transaction fenced by
the job's claim (``Store.write_claimed``); the store refuses it once the user cancelled or
paused the job or another claim took it over, and the refusal is the trainer's signal to stop.
So a stop request lands at most one step late, and nothing is ever logged after the cancel or
pause event. Each metrics event carries a per-step key, so a step replayed after a resume is
never written twice.

Checkpoint directories become the job's when their row commits under the current claim: each is
written locally (atomically), uploaded whole to the blob store (a no-op on the directory store,
where training writes in place), and only then named by its fenced row; a save that finds the
store unreachable is retried with a bounded backoff (blobs/retry.py) and fails the job with a
clear error if the store stays down. The retention rule (keep the newest ``keep`` epoch
checkpoints; drop a pause checkpoint once a newer checkpoint exists) is applied in that same
transaction, and only then are the files of the dropped rows deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from ..blobs import BlobCache, BlobError, BlobUnavailable, tree_prefix
from ..blobs.retry import retrying
from ..events import messages, rewards
from ..events.metrics import STEP, checkpoint_metrics
from ..ids import checkpoint_id
from ..jobs.method import Hyperparameters
from ..jobs.naming import checkpoint_name, model_name
from ..jobs.states import FINAL, Status
from ..store.protocol import Fence, Store, WriteRefused
from ..store.records import CheckpointRecord, Claim, JobRecord, NewEvent

if TYPE_CHECKING:
    from ..training.spec import (
        CheckpointInfo,
        Control,
        MemoryPlan,
        Metrics,
        ResolvedHyperparameters,
    )

KEEP_CHECKPOINTS = 3
PROGRESS_SECONDS = 1.0  # how often the job's estimated_finish rides along with a step's write
RETRY_SECONDS = 120.0  # how long a save rides out an unreachable blob store (the setting's default)

log = logging.getLogger("ftserve.child")
T = TypeVar("T")


class StoreHooks:
    def __init__(
        self,
        store: Store,
        job: JobRecord,
        claim: Claim,
        worker_alive: Callable[[], bool],
        blobs: BlobCache | os.PathLike[str],
        *,
        keep_checkpoints: int = KEEP_CHECKPOINTS,
        step_log: Path | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        from ..files.service import as_cache

        self.store = store
        self.job = job
        self.claim = claim
        self.worker_alive = worker_alive
        self.blobs = blobs if isinstance(blobs, BlobCache) else as_cache(Path(blobs))
        self.retry_seconds = retry_seconds
        self.keep = max(1, keep_checkpoints)
        self.lost = False  # the claim is gone (lease taken, or the worker died): touch nothing
        self.total_steps = 0
        self.hook_seconds = 0.0  # time spent inside hooks, for the overhead benchmark
        self._started_at = time.monotonic()
        self._first_step = 0
        self._progress_at = 0.0
        self._step_log: IO[str] | None = None
        if step_log is not None:
            step_log.parent.mkdir(parents=True, exist_ok=True)
            self._step_log = step_log.open("a", buffering=1, encoding="utf-8")

    # -- TrainingHooks ---------------------------------------------------------------------
    def on_start(self, hp: ResolvedHyperparameters, resumed_from: CheckpointInfo | None) -> Control:
        t0 = time.perf_counter()
        self.total_steps = hp.total_steps
        dpo = self.job.method.type == "dpo"
        resolved = Hyperparameters(
            batch_size=hp.batch_size,
            learning_rate_multiplier=hp.learning_rate_multiplier,
            n_epochs=hp.n_epochs,
            beta=hp.beta if dpo else None,
            # A reinforcement job's own (None for the other methods: not in their set).
            compute_multiplier=hp.compute_multiplier,
            eval_interval=hp.eval_interval,
            eval_samples=hp.eval_samples,
            reasoning_effort=hp.reasoning_effort,
        )
        events: list[NewEvent] = []
        if resumed_from is not None:
            # The checkpoint's own step is recorded now if the run that saved it could not
            # (a pause refused its metrics); the key makes this a no-op otherwise.
            events.append(_metrics_event(resumed_from.metrics))
            events.append(messages.training_resumed(resumed_from.step))
        self._first_step = resumed_from.step if resumed_from is not None else 0
        answer, _ = self._write(
            changes={
                "hyperparameters": resolved.common(),
                "method": replace(self.job.method, hyperparameters=resolved),
            },
            events=events,
        )
        self._started_at = time.monotonic()
        self.hook_seconds += time.perf_counter() - t0
        return answer

    def on_step(self, m: Metrics) -> Control:
        t0 = time.perf_counter()
        computed = time.time()
        changes = None
        now = time.monotonic()
        done = m.step - self._first_step
        if done > 0 and now - self._progress_at >= PROGRESS_SECONDS:
            per_step = (now - self._started_at) / done
            changes = {"estimated_finish": int(time.time() + per_step * (m.total_steps - m.step))}
            self._progress_at = now
        answer, _ = self._write(changes=changes, events=[_metrics_event(m)])
        if self._step_log is not None:
            # step, when it was computed, when its record was answered, and the answer
            self._step_log.write(f"{m.step} {computed:.6f} {time.time():.6f} {answer}\n")
        self.hook_seconds += time.perf_counter() - t0
        return answer

    def on_checkpoint(self, c: CheckpointInfo) -> Control:
        t0 = time.perf_counter()
        name = (
            model_name(self.job)
            if c.step == self.total_steps
            else checkpoint_name(self.job, c.step)
        )
        data = _reward_data(c.metrics)
        if data is not None:
            metrics = rewards.checkpoint_metrics(data)
        else:
            # OpenAI's checkpoints carry the step as a number (4.0), the checkpoint's own.
            metrics = checkpoint_metrics({**asdict(c.metrics), STEP.name: float(c.step)})
        record = CheckpointRecord(
            id=checkpoint_id(),
            job_id=self.job.id,
            created_at=int(time.time()),
            step_number=c.step,
            fine_tuned_model_checkpoint=name,
            metrics=metrics,
            path=self.blobs.key_for(c.path),
            kind=c.kind,
        )
        # Uploaded whole before its row: a row never names an incomplete checkpoint.
        self.save_tree(record.path, c.path, f"save checkpoint step {c.step}")
        page = self.store.list_checkpoints(None, self.job.id, after=None, limit=10_000)
        drop, unused = retired(page.items if page else [], record, self.keep)
        # "held": a pause checkpoint is saved after the pause event, by the claim holder,
        # without an event of its own.
        answer, written = self._write(
            fence="held", add_checkpoint=record, drop_checkpoints=[d.id for d in drop]
        )
        # The store has it now (or it is garbage): a remote store's local copy is not needed.
        self.blobs.forget_work(record.path)
        if written:  # only files that no row names any more are deleted
            for key in unused:
                self._delete_tree(key)
        self.hook_seconds += time.perf_counter() - t0
        return answer

    def on_memory(self, plan: MemoryPlan, warning: str | None) -> None:
        """The plan is echoed in the job's ``ftserve`` object (what "auto" became, and the
        budget an out-of-memory back-off lowered); a warning becomes a ``warn`` event. Fenced
        like a step: a refusal changes nothing here, the next step's write answers it."""
        t0 = time.perf_counter()
        extensions = {
            **self.job.extensions,
            "gradient_checkpointing": plan.gradient_checkpointing,
            "max_tokens_per_micro_batch": plan.max_tokens_per_micro_batch,
            "fsdp": plan.fsdp,
        }
        events = [] if warning is None else [messages.memory_warning(warning)]
        _, written = self._write(changes={"extensions": extensions}, events=events)
        if written:
            self.job = dataclasses.replace(self.job, extensions=extensions)
        self.hook_seconds += time.perf_counter() - t0

    # -- the blob store ----------------------------------------------------------------------
    def save_tree(self, key: str, local: Path, what: str) -> None:
        """Upload a tree the trainer wrote locally, riding out an unreachable store for up to
        ``retry_seconds``; BlobUnavailable after that (or once the job is not ours any more)."""
        self.with_retries(what, lambda: self.blobs.blobs.put_tree(key, local))

    def with_retries(self, what: str, fn: Callable[[], T]) -> T:
        return retrying(what, fn, seconds=self.retry_seconds, stop=self._not_ours)

    def _not_ours(self) -> bool:
        """Whether retrying is pointless: the worker died, the claim went, the job ended."""
        if not self.worker_alive():
            self.lost = True
            return True
        job = self.store.get_job(self.claim.job_id)
        if job is None or job.claim_token != self.claim.token:
            self.lost = True
            return True
        return job.status in FINAL

    def _delete_tree(self, key: str) -> None:
        try:
            self.blobs.blobs.delete_prefix(tree_prefix(key))
        except (BlobError, BlobUnavailable) as exc:
            # Unnamed now, so the claim sweep at the job's end deletes it.
            log.warning("job %s: could not delete %s yet: %s", self.job.id, key, exc)

    # -- helpers -----------------------------------------------------------------------------
    def _write(self, *, fence: Fence = "running", **what: Any) -> tuple[Control, bool]:
        """Write under the claim; the answer for the trainer, and whether it was written."""
        if not self.worker_alive():
            # The worker died: stop without touching the job; its lease will expire and another
            # worker resumes from the last checkpoint.
            self.lost = True
            return "cancel", False
        try:
            status = self.store.write_claimed(self.claim, fence=fence, **what)
        except WriteRefused as refused:
            if not refused.claim_current:
                self.lost = True
                return "cancel", False
            return _answer(refused.status), False
        return _answer(status), True

    def close(self) -> None:
        if self._step_log is not None:
            self._step_log.close()
            self._step_log = None


def _answer(status: str | None) -> Control:
    if status == Status.RUNNING:
        return "continue"
    # Paused, or resumed again before this process stopped (queued, still under this claim):
    # either way the work so far is saved and the claim let go.
    if status in (Status.PAUSED, Status.QUEUED):
        return "pause"
    return "cancel"


def _reward_data(m: Metrics) -> dict[str, Any] | None:
    """A reinforcement step's event data (``RewardMetrics.data``); None for a loss step's. Read
    by attribute: this module (which the API imports) never imports the training package."""
    data = getattr(m, "data", None)
    return data if isinstance(data, dict) else None


def _metrics_event(m: Metrics) -> NewEvent:
    data = _reward_data(m)
    if data is not None:
        return messages.reward_metrics(data)
    return messages.metrics(asdict(m))


def retired(
    existing: list[CheckpointRecord], new: CheckpointRecord, keep: int
) -> tuple[list[CheckpointRecord], list[str]]:
    """What adding ``new`` retires: the rows to drop (pause checkpoints older than the newest
    checkpoint, epoch checkpoints beyond the newest ``keep``, a reinforcement job's validation
    checkpoints beyond the ``keep`` best by ``valid_reward_mean`` except the newest, which a
    resume starts from), and the directories no row names afterwards (theirs, and that of a row
    at ``new``'s step, which ``new`` replaces)."""
    same_step = [c for c in existing if c.step_number == new.step_number]
    rows = [c for c in existing if c.step_number != new.step_number] + [new]
    newest = max(c.step_number for c in rows)
    epochs = sorted((c for c in rows if c.kind == "epoch"), key=lambda c: c.step_number)
    drop = [c for c in rows if c.kind == "pause" and c.step_number < newest]
    drop += [c for c in epochs[: max(0, len(epochs) - keep)] if c not in drop]
    evals = [c for c in rows if c.kind == "eval"]
    if evals:
        newest_eval = max(evals, key=lambda c: c.step_number)
        # The best rewards, the later checkpoint first among equals.
        best = sorted(evals, key=lambda c: (_valid_reward(c), c.step_number), reverse=True)[:keep]
        drop += [c for c in evals if c not in best and c is not newest_eval and c not in drop]
    drop = [c for c in drop if c is not new]
    unused = [c.path for c in drop] + [c.path for c in same_step if c.path != new.path]
    return drop, unused


def _valid_reward(c: CheckpointRecord) -> float:
    value = c.metrics.get("valid_reward_mean")
    return float(value) if isinstance(value, int | float) else float("-inf")
