#!/usr/bin/env python
"""Job-claim throughput on PostgreSQL: 1, 2, 4 and 8 worker processes draining one queue.

One run:

1. starts a private PostgreSQL cluster (tests/pg.py: own data dir, port and socket dir, unix
   socket only, stopped by PID), migrates a template database and queues N jobs in it through
   ``PostgresStore.create_job`` (each with its created/validating/validated events);
2. for each worker count W (1, 2, 4, 8; R rounds, taking turns), copies the template into a
   fresh database and starts W processes, each with its own ``PostgresStore`` (pool and
   LISTEN connection, as a worker has); at one signal they all drain the queue the way a worker
   does, through the real Store API but with no training process: ``claim_job`` (FOR UPDATE
   SKIP LOCKED, its "started" event), then ``write_claimed`` finishing the job (status
   succeeded, claim released, the terminal event), until the queue is empty or the time limit
   is reached;
3. checks from the database itself that no job was claimed twice: every finished job has
   ``attempts`` 1, one "started" event, the terminal event last, gap-free sequence numbers, and
   the jobs the workers report are each reported once; then prints jobs/s per W (medians over
   the rounds) and the ratio to the 1-worker run of the same round.

The goal (issue 9): no double claims; 4 workers >= 2x one on 2 cores. Everything (the worker
processes, PostgreSQL) shares the machine's cores; the ratio is the figure to read.

    .venv/bin/python bench/claim_bench.py                 # ~1.5 minutes
    .venv/bin/python bench/claim_bench.py --jobs 3000 --rounds 3 --workers 1,2,4,8
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # tests/pg.py

from ftserve.events import messages  # noqa: E402
from ftserve.ids import file_id, job_id  # noqa: E402
from ftserve.jobs.method import Hyperparameters, Method  # noqa: E402
from ftserve.store.postgres import PostgresStore, migrate  # noqa: E402
from ftserve.store.records import Claim, JobRecord  # noqa: E402
from ftserve.store.wakes import Wakes  # noqa: E402
from ftserve.worker.lease import RELEASED  # noqa: E402
from tests.pg import PgCluster, find_bindir  # noqa: E402

TEMPLATE = "claim_bench_template"
LEASE_SECONDS = 60.0


def queue_jobs(url: str, n: int) -> None:
    store = PostgresStore(url)
    try:
        for i in range(n):
            jid = job_id()
            training = file_id()
            record = JobRecord(
                id=jid,
                organization="personal",
                model="ftserve-tiny",
                model_source="ftserve-tiny",
                status="queued",
                created_at=1_700_000_000 + i,
                training_file=training,
                validation_file=None,
                hyperparameters=Hyperparameters(n_epochs=1),
                method=Method("supervised", Hyperparameters(n_epochs=1)),
                seed=i,
            )
            store.create_job(
                record,
                [
                    messages.created(jid),
                    messages.validating(training, None),
                    messages.files_validated(),
                ],
            )
    finally:
        store.close()


# -- one worker process ------------------------------------------------------------------------


def worker_main(url: str, name: str, go: Any, seconds: float, out: Connection) -> None:
    """Drain the queue until it is empty or ``seconds`` passed after ``go``; send back the ids
    of the jobs this process finished and how long it took."""
    # As `ftserve worker` opens its store: woken by claimable jobs and its own jobs only.
    store = PostgresStore(url, wakes=Wakes.worker(name))
    done: list[str] = []
    try:
        out.send("ready")
        go.wait()
        began = time.monotonic()
        stop_at = began + seconds
        while time.monotonic() < stop_at:
            job = store.claim_job(name, time.time(), LEASE_SECONDS, [messages.training_started()])
            if job is None:
                break
            assert job.claim_token is not None
            store.write_claimed(
                Claim(job.id, job.claim_token),
                changes={
                    "status": "succeeded",
                    "finished_at": int(time.time()),
                    "trained_tokens": 0,
                    **RELEASED,
                },
                events=[messages.succeeded()],
            )
            done.append(job.id)
        out.send((done, time.monotonic() - began))
    finally:
        store.close()
        out.close()


@dataclass(frozen=True, slots=True)
class Run:
    workers: int
    jobs: int
    seconds: float  # from the start signal until the last worker finished

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def run_once(cluster: PgCluster, workers: int, seconds: float, tag: str) -> Run:
    import psycopg

    name = f"claims_{tag}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    url = cluster.url(name)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [
        ctx.Process(target=worker_main, args=(url, f"bench-{i}", go, seconds, w), daemon=True)
        for i, (_r, w) in enumerate(pipes)
    ]
    for p in procs:
        p.start()
    for r, w in pipes:
        w.close()
        if r.recv() != "ready":
            raise RuntimeError("a worker did not start")
    t0 = time.monotonic()
    go.set()
    reports = [r.recv() for r, _w in pipes]
    wall = time.monotonic() - t0
    for p in procs:
        p.join(30)
    finished = [jid for ids, _took in reports for jid in ids]
    check_once(url, finished)
    return Run(workers, len(finished), wall)


def check_once(url: str, finished: Sequence[str]) -> None:
    """From the data: no job claimed twice, each finished job's log complete and in order."""
    import psycopg

    if len(set(finished)) != len(finished):
        raise AssertionError("a job was reported by two workers")
    with psycopg.connect(url) as conn:
        jobs = conn.execute(
            "SELECT id, attempts, claim_token FROM jobs WHERE status = 'succeeded'"
        ).fetchall()
        if sorted(j[0] for j in jobs) != sorted(finished):
            raise AssertionError("the succeeded jobs are not the ones the workers finished")
        bad = [j for j in jobs if j[1] != 1 or j[2] is not None]
        if bad:
            raise AssertionError(f"claimed more than once or not released: {bad[:5]}")
        running = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
        if running and running[0]:
            raise AssertionError(f"{running[0]} jobs left running")
        rows = conn.execute(
            "SELECT e.job_id, e.seq, e.key FROM events e JOIN jobs j ON j.id = e.job_id "
            "WHERE j.status = 'succeeded' ORDER BY e.job_id, e.seq"
        ).fetchall()
    logs: dict[str, list[tuple[int, str | None]]] = {}
    for jid, seq, key in rows:
        logs.setdefault(jid, []).append((int(seq), key))
    for jid, log in logs.items():
        seqs = [s for s, _k in log]
        keys = [k for _s, k in log]
        if seqs != list(range(1, len(seqs) + 1)):
            raise AssertionError(f"{jid}: sequence numbers {seqs}")
        if keys.count("started") != 1 or keys[-1] != "succeeded" or len(keys) != 5:
            raise AssertionError(f"{jid}: events {keys}")


# -- the run ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, cluster: PgCluster) -> list[str]:
    import psycopg

    t0 = time.monotonic()
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    migrate(cluster.url(TEMPLATE))
    queue_jobs(cluster.url(TEMPLATE), args.jobs)
    print(f"queued {args.jobs:,} jobs in {time.monotonic() - t0:.1f} s", flush=True)
    counts = [int(w) for w in args.workers.split(",")]
    if counts[0] != 1:
        counts = [1, *[c for c in counts if c != 1]]
    runs: dict[int, list[Run]] = {w: [] for w in counts}
    for rnd in range(args.rounds):
        base: Run | None = None
        for w in counts:
            run = run_once(cluster, w, args.seconds, f"r{rnd}w{w}")
            runs[w].append(run)
            base = base or run
            print(
                f"round {rnd + 1}, {w} worker(s): {run.jobs:5} jobs in {run.seconds:5.2f} s = "
                f"{run.rate:7.0f} jobs/s  ({run.rate / base.rate:.2f}x one worker), "
                "no double claims",
                flush=True,
            )
    one = statistics.median(r.rate for r in runs[1])
    lines = [
        f"job claims on PostgreSQL: {args.jobs:,} queued jobs drained per run (claim_job + "
        f"write_claimed to succeeded, no training process), {args.rounds} round(s), medians, "
        f"{os.cpu_count()} CPUs shared by the workers and PostgreSQL",
    ]
    for w in counts:
        rate = statistics.median(r.rate for r in runs[w])
        ratios = ", ".join(f"{r.rate / runs[1][i].rate:.2f}" for i, r in enumerate(runs[w]))
        lines.append(
            f"  {w} worker(s): {rate:7.0f} jobs/s   x{rate / one:.2f} one worker "
            f"(per round: {ratios})"
        )
    if 4 in runs:
        four = statistics.median(r.rate for r in runs[4]) / one
        verdict = "met" if four >= 2 else "NOT met"
        lines.append(f"  4 workers / 1: {four:.2f} (goal >= 2): {verdict}")
    lines.append("  double claims: none (every job attempts = 1, one start event, log complete)")
    lines.append(f"  total {time.monotonic() - t0:.0f} s")
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=2000, help="queued jobs per run (2,000)")
    p.add_argument("--workers", default="1,2,4,8", help="worker counts (1,2,4,8)")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the counts (2); medians")
    p.add_argument("--seconds", type=float, default=20, help="time limit of one run (20 s)")
    return p


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        print("claim_bench: no PostgreSQL server binaries", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    cluster = PgCluster(bindir)
    try:
        summary = bench(args, cluster)
    except KeyboardInterrupt:
        print("\nclaim_bench: interrupted", file=sys.stderr)
        return 130
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
