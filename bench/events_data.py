"""A store filled with realistic fine-tuning event logs, and random cursors into it: the
data side of bench/events_bench.py and bench/events_pg_bench.py."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftserve.config import Settings
from ftserve.events.messages import format_loss, make_event
from ftserve.ids import file_id, job_id, short_model_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.store.records import JobRecord, NewEvent
from ftserve.store.sqlite import SqliteStore

ORG = "personal"  # the organization FTSERVE_API_KEYS gives a key without an ORG: prefix
PAGE = 20
APPEND_BATCH = 1_000  # events per append_events transaction, as a busy trainer would batch them
START_EVENTS = 4  # created, validating, validated, started: what create_job stores up front
MIN_EVENTS_PER_JOB = 40  # room for a deep cursor with a full page (and more) behind it
BASE_MODEL = "gpt-4o-mini-2024-07-18"


# -- filling a store ----------------------------------------------------------------------------


@dataclass
class Filled:
    """A filled data dir and what the bench needs to know about it without asking the server."""

    data_dir: Path
    jobs: list[str]
    counts: list[int]  # events per job, index-aligned with jobs; seq runs 1..count
    events: int
    seconds: float
    build_seconds: float  # of which: building NewEvents (ids + orjson bodies)
    db_bytes: int = 0


def _job_record(rng: random.Random, jid: str, created_at: int, steps: int) -> JobRecord:
    hyper = Hyperparameters(batch_size=1, learning_rate_multiplier=1.8, n_epochs=3)
    return JobRecord(
        id=jid,
        organization=ORG,
        model=BASE_MODEL,
        model_source="ftserve-tiny",
        # Finished, so neither the validator nor the embedded workers of the server under test
        # pick it up (they act on validating_files and queued jobs).
        # Running while its events are appended (a finished job's log is closed); marked
        # succeeded once they are all in (fill_store).
        status="running",
        created_at=created_at,
        training_file=file_id(),
        validation_file=file_id() if rng.random() < 0.3 else None,
        hyperparameters=hyper,
        method=Method("supervised", hyper),
        seed=rng.randrange(1 << 31),
        finished_at=created_at + 60 + 2 * steps,
        fine_tuned_model=f"ft:{BASE_MODEL}:{ORG}::{short_model_id()}",
        trained_tokens=steps * 512,
        result_files=[file_id()],
    )


def _job_events(rng: random.Random, job: JobRecord, total: int) -> Iterator[NewEvent]:
    """``total`` events of one finished job in the order a real job writes them.

    Mostly metrics (one per step, with full-precision floats as trainers report them), the
    start/end messages, and three checkpoint messages, as in OpenAI's own event streams
    (shared/spec/observed-wire-examples.md §7-9).
    """
    t0 = job.created_at
    steps = total - START_EVENTS - 3 - 2
    validating = f"Validating training file: {job.training_file}"
    if job.validation_file:
        validating += f" and validation file: {job.validation_file}"
    yield make_event(f"Created fine-tuning job: {job.id}", created_at=t0)
    yield make_event(validating, created_at=t0)
    yield make_event("Files validated, moving job to queued state", created_at=t0 + 20)
    yield make_event("Fine-tuning job started", data=None, created_at=t0 + 30)
    checkpoints = (steps // 3, 2 * steps // 3, steps)
    model = job.fine_tuned_model
    loss, acc = 2.0 + rng.random(), 0.3 + 0.2 * rng.random()
    for step in range(1, steps + 1):
        loss = max(1e-6, loss * (0.995 + 0.004 * rng.random()) - 0.0005 * rng.random())
        acc = min(1.0, acc + 0.002 * rng.random())
        data: dict[str, Any] = {
            "step": step,
            "train_loss": loss,
            "total_steps": steps,
            "train_mean_token_accuracy": acc,
        }
        text = f"Step {step}/{steps}: training loss={format_loss(loss)}"
        if job.validation_file and step % 10 == 0:
            vloss = loss * (1.05 + 0.1 * rng.random())
            data["valid_loss"] = vloss
            data["valid_mean_token_accuracy"] = acc * 0.95
            text += f", validation loss={format_loss(vloss)}"
        yield make_event(
            text, kind="metrics", data=data, key=f"step:{step}", created_at=t0 + 40 + 2 * step
        )
        if step in checkpoints:
            yield make_event(
                f"Checkpoint created at step {step} with Snapshot ID: {model}:ckpt-step-{step}",
                created_at=t0 + 41 + 2 * step,
            )
    yield make_event(f"New fine-tuned model created: {model}", created_at=job.finished_at)
    yield make_event("The job has successfully completed", created_at=job.finished_at)


def _job_sizes(rng: random.Random, events: int, jobs: int) -> list[int]:
    """Sizes that vary +-50 % around the mean (jobs differ in steps) and sum to ``events``."""
    weights = [0.5 + rng.random() for _ in range(jobs)]
    scale = (events - MIN_EVENTS_PER_JOB * jobs) / sum(weights)
    sizes = [MIN_EVENTS_PER_JOB + int(w * scale) for w in weights]
    for i in range(events - sum(sizes)):  # rounding leftovers, one each
        sizes[i % jobs] += 1
    return sizes


def fill_store(data_dir: Path, events: int, jobs: int, seed: int, label: str) -> Filled:
    """Fill through the Store API, interleaving jobs in ~1,000-event appends.

    Jobs are appended round-robin rather than one after another so that, at 10M events, the
    clustered ``(job_id, seq)`` table is built the way concurrent trainers build it: many jobs
    growing at once, not each job's pages laid out back to back.
    """
    rng = random.Random(seed)
    sizes = _job_sizes(rng, events, jobs)
    store = SqliteStore(Settings(data_dir=data_dir).sqlite_path)
    now = int(time.time())
    jids: list[str] = []
    streams: list[Iterator[NewEvent]] = []
    counts = [0] * jobs
    build = 0.0
    t_start = time.perf_counter()
    last_report = t_start
    done = 0
    try:
        for i, size in enumerate(sizes):
            jid = job_id()
            steps = size - START_EVENTS - 5
            record = _job_record(rng, jid, now - 86_400 * 30 + 600 * i, steps)
            stream = _job_events(rng, record, size)
            t = time.perf_counter()
            first = list(itertools.islice(stream, START_EVENTS))
            build += time.perf_counter() - t
            store.create_job(record, first)
            counts[i] = len(first)
            done += len(first)
            jids.append(jid)
            streams.append(stream)
        pending = list(range(jobs))
        while pending:
            still = []
            for i in pending:
                t = time.perf_counter()
                batch = list(itertools.islice(streams[i], APPEND_BATCH))
                build += time.perf_counter() - t
                if not batch:
                    continue
                added = store.append_events(jids[i], batch)
                if added != len(batch):
                    raise RuntimeError(f"append_events stored {added} of {len(batch)} events")
                counts[i] += added
                done += added
                still.append(i)
                now_t = time.perf_counter()
                if now_t - last_report > 30:  # a sign of life on the 10M fill
                    last_report = now_t
                    rate = done / (now_t - t_start)
                    print(f"  [{label}] {done:,}/{events:,} events, {rate:,.0f}/s", flush=True)
            pending = still
        for jid in jids:
            store.update_job(jid, expect=("running",), changes={"status": "succeeded"})
    finally:
        # Closing the last connection checkpoints the WAL into the main file, as a long-running
        # server's periodic checkpoints would: reads then come from the (mmapped) db file.
        store.close()
    seconds = time.perf_counter() - t_start
    if counts != sizes:
        raise RuntimeError("fill: stored event counts differ from the plan")
    db = Settings(data_dir=data_dir).sqlite_path
    size_bytes = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return Filled(data_dir, jids, counts, done, seconds, build, size_bytes)


# -- cursors ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    job: str
    seq: int  # the cursor event's seq: the page holds seq-1 down to seq-20
    event: str

    @property
    def path(self) -> str:
        return f"/v1/fine_tuning/jobs/{self.job}/events?after={self.event}&limit={PAGE}"

    @property
    def has_more(self) -> bool:
        return self.seq - 1 > PAGE


def sample_cursors(filled: Filled, n: int, seed: int) -> list[Cursor]:
    """Random (job, event) pairs with a full page behind each one.

    A uniformly random job, then a uniformly random event of it with at least 20 older events,
    so every request returns a full 20-event page, as the fixed baseline does.
    """
    rng = random.Random(seed)
    db = sqlite3.connect(f"file:{Settings(data_dir=filled.data_dir).sqlite_path}?mode=ro", uri=True)
    try:
        out = []
        for _ in range(n):
            i = rng.randrange(len(filled.jobs))
            seq = rng.randint(PAGE + 1, filled.counts[i])
            row = db.execute(
                "SELECT id FROM events WHERE job_id = ? AND seq = ?", (filled.jobs[i], seq)
            ).fetchone()
            out.append(Cursor(filled.jobs[i], seq, row[0]))
        return out
    finally:
        db.close()


def expected_ids(db: sqlite3.Connection, job: str, below: int | None) -> list[str]:
    if below is None:
        rows = db.execute(
            "SELECT id FROM events WHERE job_id = ? ORDER BY seq DESC LIMIT ?", (job, PAGE)
        ).fetchall()
    else:
        rows = db.execute(
            "SELECT id FROM events WHERE job_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (job, below, PAGE),
        ).fetchall()
    return [r[0] for r in rows]
