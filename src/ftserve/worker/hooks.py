"""The trainer's hooks on the worker side: events in batches, checkpoints, stop requests.

Metrics events are buffered and written in one transaction at most every ``FLUSH_SECONDS`` (or
``FLUSH_EVENTS`` events), so recording costs a fraction of a percent of step time; each carries a
per-step key, so a step replayed after a resume is never written twice.
"""

from __future__ import annotations

import os
import time
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING

from ..events import messages
from ..ids import checkpoint_id
from ..jobs.naming import checkpoint_name, model_name
from ..jobs.states import Status
from ..store.protocol import Store
from ..store.records import CheckpointRecord, JobRecord, NewEvent

if TYPE_CHECKING:
    from ..training.spec import CheckpointInfo, Control, ResolvedHyperparameters, StepMetrics

FLUSH_SECONDS = 0.5
FLUSH_EVENTS = 200
CONTINUE, CANCEL, PAUSE = 0, 1, 2


class StoreHooks:
    def __init__(
        self,
        store: Store,
        job: JobRecord,
        worker_id: str,
        command: Synchronized[int],
        parent_pid: int,
        blob_dir: os.PathLike[str],
    ) -> None:
        self.store = store
        self.job = job
        self.worker_id = worker_id
        self.command = command
        self.parent_pid = parent_pid
        self.blob_dir = os.fspath(blob_dir)
        self.parent_gone = False
        self.total_steps = 0
        self.hook_seconds = 0.0  # time spent inside hooks, for the overhead benchmark
        self._buffer: list[NewEvent] = []
        self._last_flush = time.monotonic()
        self._started_at = time.monotonic()
        self._first_step: int | None = None

    # -- TrainingHooks ---------------------------------------------------------------------
    def on_start(self, hp: ResolvedHyperparameters, resumed_from_step: int) -> None:
        t0 = time.perf_counter()
        self.total_steps = hp.total_steps
        resolved = {
            "batch_size": hp.batch_size,
            "learning_rate_multiplier": hp.learning_rate_multiplier,
            "n_epochs": hp.n_epochs,
        }
        method = dict(self.job.method)
        kind = str(method.get("type", "supervised"))
        method_hp = {**resolved, **({"beta": hp.beta} if kind == "dpo" else {})}
        method[kind] = {"hyperparameters": method_hp}
        events = [messages.training_resumed(resumed_from_step)] if resumed_from_step else []
        self.store.update_job(
            self.job.id,
            expect=None,
            expect_lease_owner=self.worker_id,
            changes={"hyperparameters": resolved, "method": method},
            events=events,
        )
        self._started_at = time.monotonic()
        self._first_step = resumed_from_step
        self.hook_seconds += time.perf_counter() - t0

    def on_step(self, m: StepMetrics) -> None:
        t0 = time.perf_counter()
        self._buffer.append(
            messages.metrics(
                m.step,
                m.total_steps,
                m.train_loss,
                m.train_mean_token_accuracy,
                m.valid_loss,
                m.valid_mean_token_accuracy,
                m.full_valid_loss,
                m.full_valid_mean_token_accuracy,
            )
        )
        now = time.monotonic()
        if len(self._buffer) >= FLUSH_EVENTS or now - self._last_flush >= FLUSH_SECONDS:
            self.flush(progress_step=m.step)
        self.hook_seconds += time.perf_counter() - t0

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        t0 = time.perf_counter()
        self.flush()
        name = (
            model_name(self.job)
            if c.step == self.total_steps
            else checkpoint_name(self.job, c.step)
        )
        m = c.metrics
        metrics = {
            "step": float(c.step),
            "train_loss": m.train_loss,
            "train_mean_token_accuracy": m.train_mean_token_accuracy,
            "valid_loss": m.valid_loss,
            "valid_mean_token_accuracy": m.valid_mean_token_accuracy,
            "full_valid_loss": m.full_valid_loss,
            "full_valid_mean_token_accuracy": m.full_valid_mean_token_accuracy,
        }
        record = CheckpointRecord(
            id=checkpoint_id(),
            job_id=self.job.id,
            created_at=int(time.time()),
            step_number=c.step,
            fine_tuned_model_checkpoint=name,
            metrics={k: v for k, v in metrics.items() if v is not None},
            path=os.path.relpath(c.path, self.blob_dir),
        )
        self.store.add_checkpoint(record, [])
        self.prune_checkpoints()
        self.hook_seconds += time.perf_counter() - t0

    def control(self) -> Control:
        if os.getppid() != self.parent_pid:
            # The worker died: stop without touching the job; its lease will expire and another
            # worker resumes from the last checkpoint.
            self.parent_gone = True
            return "cancel"
        value = self.command.value
        if value == CANCEL:
            return "cancel"
        if value == PAUSE:
            return "pause"
        return "continue"

    # -- helpers -----------------------------------------------------------------------------
    def flush(self, progress_step: int | None = None) -> None:
        if self._buffer:
            self.store.append_events(self.job.id, self._buffer)
            self._buffer = []
        self._last_flush = time.monotonic()
        if progress_step is not None and self.total_steps and self._first_step is not None:
            done = progress_step - self._first_step
            if done > 0:
                per_step = (time.monotonic() - self._started_at) / done
                eta = int(time.time() + per_step * (self.total_steps - progress_step))
                self.store.update_job(
                    self.job.id,
                    expect=[Status.RUNNING],
                    expect_lease_owner=self.worker_id,
                    changes={"estimated_finish": eta},
                )

    def prune_checkpoints(self) -> None:
        """Drop rows of checkpoints the trainer removed from disk (it keeps the newest few)."""
        page = self.store.list_checkpoints(None, self.job.id, after=None, limit=1000)
        for c in page.items if page else []:
            if not os.path.isdir(os.path.join(self.blob_dir, c.path)):
                self.store.delete_checkpoint(c.id)
