#!/usr/bin/env python
"""Benchmark of ``GET /v1/fine_tuning/jobs/{job_id}/events`` (the seed endpoint).

One run:

1. fills a fresh data dir with N events over >= 1,000 jobs straight through ``SqliteStore``
   (``create_job`` with each job's first events, then ``append_events`` in ~1,000-event
   transactions), with bodies built by ``ftserve.events.messages.make_event``;
2. starts the real server (``python -m ftserve serve``, one uvicorn process) and a baseline: the
   same uvicorn options serving one fixed, pre-serialised 20-event page (bytes of a real page)
   from a minimal Starlette app;
3. checks a sample of real pages (JSON, 20 events, the right ids and ``has_more``), then drives
   both with ``wrk -t1 -c32 --latency`` and a random real cursor per request, alternating
   fixed/real, and reports medians and the ratio real / fixed;
4. times ``EventService.page_json`` in-process (first page, deep cursor, random cursors), and with
   ``--deep-10m`` the same on a second store of 10M events.

Goals (from the issue): ratio >= 0.5 with one worker, p99 <= 8 ms, zero errors, <= 30 us per page
in-process.

    .venv/bin/python bench/events_bench.py                # ~2 minutes
    .venv/bin/python bench/events_bench.py --deep-10m     # + ~3 minutes to fill 10M events

Needs ``wrk`` on PATH (``apt-get install -y wrk``). Everything listens on 127.0.0.1 only; servers
are stopped and the temp dir removed on exit, Ctrl-C and errors (``--keep`` keeps the dir).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from events_data import (
    MIN_EVENTS_PER_JOB,
    ORG,
    PAGE,
    Cursor,
    Filled,
    expected_ids,
    fill_store,
    sample_cursors,
)
from loadrun import (
    API_KEY,
    Server,
    WrkResult,
    http_get,
    machine_line,
    run_wrk,
    serve_fixed,
    versions_line,
)

from ftserve.config import Settings
from ftserve.events.service import EventService
from ftserve.store.sqlite import SqliteStore

HERE = Path(__file__).resolve()

# Other processes' CPU (in cores) above which a load run is flagged: with wrk and the server on
# 2 cores, anything else running skews req/s (server CPU per request much less so).
BUSY_WARN = 0.15

GOAL_RATIO = 0.5
GOAL_P99_MS = 8.0
GOAL_PAGE_US = 30.0


# -- in-process timing --------------------------------------------------------------------------


def median_ns_per_call(run_batch: Callable[[], int], batches: int) -> float:
    """Median over batches of (batch time / calls in batch); ``run_batch`` returns its calls."""
    per_call = []
    for _ in range(batches):
        t = time.perf_counter_ns()
        calls = run_batch()
        per_call.append((time.perf_counter_ns() - t) / calls)
    return statistics.median(per_call)


@dataclass(frozen=True, slots=True)
class InProcess:
    events: int
    first_us: float
    deep_us: float
    random_us: float


def time_in_process(filled: Filled, cursors: Sequence[Cursor], iterations: int) -> InProcess:
    """µs per ``EventService.page_json`` call on a store opened as the server opens it.

    First page and deep cursor repeat one call (the pages stay hot, like a client polling one
    job); the random case cycles through the sampled cursors, as the load test does.
    """
    store = SqliteStore(Settings(data_dir=filled.data_dir).sqlite_path)
    service = EventService(store)
    # A job of median size: its deep cursor is ~(size - 25) events below the newest one.
    i = sorted(range(len(filled.jobs)), key=lambda k: filled.counts[k])[len(filled.jobs) // 2]
    job = filled.jobs[i]
    db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    (deep_event,) = db.execute(
        "SELECT id FROM events WHERE job_id = ? AND seq = ?", (job, PAGE + 5)
    ).fetchone()
    db.close()
    page_json = service.page_json
    pairs = [(c.job, c.event) for c in cursors]

    def check(body: bytes, has_more: bool) -> None:
        page = json.loads(body)
        if len(page["data"]) != PAGE or page["has_more"] is not has_more:
            raise RuntimeError("in-process page has the wrong shape")

    check(page_json(ORG, job, None, PAGE), True)
    check(page_json(ORG, job, deep_event, PAGE), True)

    def first() -> int:
        for _ in range(iterations):
            page_json(ORG, job, None, PAGE)
        return iterations

    def deep() -> int:
        for _ in range(iterations):
            page_json(ORG, job, deep_event, PAGE)
        return iterations

    passes = max(1, iterations // len(pairs))  # batches as long as the repeated cases'

    def rand() -> int:
        for _ in range(passes):
            for jid, after in pairs:
                page_json(ORG, jid, after, PAGE)
        return passes * len(pairs)

    try:
        for fn in (first, deep, rand):  # warm caches and the page cache mappings
            fn()
        gc.collect()
        return InProcess(
            filled.events,
            median_ns_per_call(first, 7) / 1e3,
            median_ns_per_call(deep, 7) / 1e3,
            median_ns_per_call(rand, 7) / 1e3,
        )
    finally:
        store.close()


# -- the run ------------------------------------------------------------------------------------


def start_before(rev: str, filled: Filled, env: dict[str, str], workdir: Path) -> Server:
    """The real server as of git revision ``rev`` (its ``src/`` exported from this repository),
    serving a copy of the same store: the same endpoint before and after a change, side by
    side in one run."""
    tree = workdir / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent.parent), "archive", rev, "src"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    data = workdir / "data-before"
    shutil.copytree(filled.data_dir, data)
    srv = Server(
        "before",
        [sys.executable, "-m", "ftserve", "serve", "--data-dir", str(data)],
        {**env, "PYTHONPATH": str(tree / "src")},
        workdir / "before.log",
    )
    srv.start()
    return srv


def verify_real(port: int, filled: Filled, cursors: Sequence[Cursor]) -> int:
    """Real pages parse, hold 20 events with the expected ids, and say has_more correctly."""
    db = sqlite3.connect(f"file:{Settings(data_dir=filled.data_dir).sqlite_path}?mode=ro", uri=True)
    checked = 0
    try:
        cases: list[tuple[str, str, int | None, bool]] = [
            (c.path, c.job, c.seq, c.has_more) for c in cursors
        ]
        for jid, count in list(zip(filled.jobs, filled.counts, strict=True))[:5]:
            first = f"/v1/fine_tuning/jobs/{jid}/events?limit={PAGE}"
            cases.append((first, jid, None, count > PAGE))
        for path, jid, seq, has_more in cases:
            status, body = http_get(port, path)
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
            page = json.loads(body)
            ids = [e["id"] for e in page["data"]]
            if page.get("object") != "list" or len(ids) != PAGE:
                raise RuntimeError(f"GET {path}: expected a list of {PAGE} events: {body[:300]!r}")
            if page["has_more"] is not has_more:
                raise RuntimeError(f"GET {path}: has_more={page['has_more']}, expected {has_more}")
            if ids != expected_ids(db, jid, seq):
                raise RuntimeError(f"GET {path}: wrong events or order")
            if any(e.get("object") != "fine_tuning.job.event" for e in page["data"]):
                raise RuntimeError(f"GET {path}: an item is not a fine_tuning.job.event")
            checked += 1
        # The endpoint must also refuse: a wrong key and an unknown cursor.
        if http_get(port, cursors[0].path, auth=False)[0] != 401:
            raise RuntimeError("a request without a key was not refused with 401")
        bad = f"/v1/fine_tuning/jobs/{cursors[0].job}/events?after=ftevent-nope&limit={PAGE}"
        if http_get(port, bad)[0] != 400:
            raise RuntimeError("an unknown cursor was not refused with 400")
    finally:
        db.close()
    return checked


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> list[str]:
    """The whole run; returns the summary block's lines."""
    summary: list[str] = []
    t_run = time.perf_counter()

    print(f"== fill: {args.events:,} events over {args.jobs:,} jobs", flush=True)
    filled = fill_store(workdir / "data", args.events, args.jobs, args.seed, "fill")
    fill_rate = filled.events / filled.seconds
    insert_rate = filled.events / max(filled.seconds - filled.build_seconds, 1e-9)
    print(
        f"  {filled.events:,} events in {filled.seconds:.1f} s: {fmt_rate(fill_rate)} events/s "
        f"(store alone {fmt_rate(insert_rate)}/s; building events {filled.build_seconds:.1f} s), "
        f"db {filled.db_bytes / 2**20:,.0f} MiB",
        flush=True,
    )

    cursors = sample_cursors(filled, args.cursors, args.seed + 1)
    paths_file = workdir / "paths.txt"
    paths_file.write_text("".join(c.path + "\n" for c in cursors))

    env = {**os.environ, "FTSERVE_API_KEYS": API_KEY, "FTSERVE_LOG_LEVEL": "warning"}
    real = Server(
        "real",
        [sys.executable, "-m", "ftserve", "serve", "--data-dir", str(filled.data_dir)],
        env,
        workdir / "real.log",
    )
    servers.append(real)
    real.start()
    print(f"== real server on 127.0.0.1:{real.port} (pid {real.proc.pid if real.proc else '?'})")

    checked = verify_real(real.port, filled, cursors[: args.verify])
    print(f"  verified {checked} real pages (JSON, {PAGE} events, ids, has_more), 401 and 400")

    # The baseline serves the bytes of a real page, so both send the same payload size.
    status, page_bytes = http_get(real.port, cursors[0].path)
    assert status == 200
    body_file = workdir / "fixed_page.json"
    body_file.write_bytes(page_bytes)
    fixed = Server(
        "fixed",
        [sys.executable, str(HERE), "--serve-fixed", str(body_file)],
        env,
        workdir / "fixed.log",
    )
    servers.append(fixed)
    fixed.start()
    if http_get(fixed.port, cursors[1].path)[1] != page_bytes:
        raise RuntimeError("the fixed server does not serve the real page's bytes")
    print(
        f"== fixed-page baseline on 127.0.0.1:{fixed.port}, page {len(page_bytes):,} bytes",
        flush=True,
    )

    loaded = [fixed, real]
    if args.before:
        before = start_before(args.before, filled, env, workdir)
        servers.append(before)
        checked = verify_real(before.port, filled, cursors[: args.verify])
        print(f"== the endpoint as of {args.before} on 127.0.0.1:{before.port}: {checked} pages")
        loaded.append(before)
    names = "/".join(srv.name for srv in loaded)
    print(
        f"== load: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency, random real "
        f"cursors ({len(cursors):,}), {args.rounds} rounds {names} alternating",
        flush=True,
    )
    for srv in loaded:  # unreported warm-up: connections, SQLite caches, allocator arenas
        run_wrk(srv, paths_file, args.warmup, args.connections, args.seed)
    results: dict[str, list[WrkResult]] = {srv.name: [] for srv in loaded}
    print(
        f"  {'run':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'srv cpu µs/req':>16}"
        f"{'errors':>8}{'other cpu':>11}"
    )
    for rnd in range(1, args.rounds + 1):
        for srv in loaded:
            r = run_wrk(srv, paths_file, args.duration, args.connections, args.seed + rnd)
            results[srv.name].append(r)
            print(
                f"  {srv.name + ' ' + str(rnd):<10}{r.rps:>9,.0f}{r.p50_ms:>9.2f}"
                f"{r.p99_ms:>9.2f}{r.server_cpu_us:>16.1f}{r.errors:>8}{r.other_cpu:>10.0%}"
                + ("  <- machine busy" if r.other_cpu > BUSY_WARN else ""),
                flush=True,
            )

    def med(name: str, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in results[name]))

    errors = {name: sum(r.errors for r in rs) for name, rs in results.items()}
    busiest = max(r.other_cpu for rs in results.values() for r in rs)
    ratio = med("real", "rps") / med("fixed", "rps")
    cpu_ratio = med("fixed", "server_cpu_us") / med("real", "server_cpu_us")
    for srv in loaded:
        srv.stop()
        if "Traceback" in srv.log_tail(400):
            print(f"  !! the {srv.name} server logged a traceback; see {workdir}/{srv.name}.log")

    print("== in-process EventService.page_json, limit 20", flush=True)
    inproc = [time_in_process(filled, cursors, args.iterations)]
    _print_inproc(inproc[-1])
    db_size = {filled.events: filled.db_bytes}
    fills = [(filled.events, len(filled.jobs), filled.seconds, fill_rate)]

    if args.deep_10m:
        if not args.keep:
            shutil.rmtree(filled.data_dir)  # keeps disk use and page cache to one store
        print(f"== fill: {args.deep_events:,} events over {args.jobs:,} jobs", flush=True)
        big = fill_store(workdir / "data10m", args.deep_events, args.jobs, args.seed + 7, "10M")
        big_rate = big.events / big.seconds
        print(
            f"  {big.events:,} events in {big.seconds:.1f} s: {fmt_rate(big_rate)} events/s, "
            f"db {big.db_bytes / 2**20:,.0f} MiB",
            flush=True,
        )
        fills.append((big.events, len(big.jobs), big.seconds, big_rate))
        db_size[big.events] = big.db_bytes
        print(f"== in-process EventService.page_json at {big.events:,} events", flush=True)
        big_cursors = sample_cursors(big, args.cursors, args.seed + 8)
        inproc.append(time_in_process(big, big_cursors, args.iterations))
        _print_inproc(inproc[-1])

    total = time.perf_counter() - t_run
    real_p99 = med("real", "p99_ms")
    worst_us = max(max(x.first_us, x.deep_us, x.random_us) for x in inproc)
    cmd = "python bench/events_bench.py " + " ".join(args.argv) if args.argv else ""
    summary += [
        "### Events endpoint benchmark",
        "",
        "```",
        f"$ {cmd or 'python bench/events_bench.py'}",
        f"machine: {machine_line()}",
        f"stack:   {versions_line()}",
        f"load:    wrk -t1 -c{args.connections} -d{args.duration:g}s --latency on 127.0.0.1, "
        f"random real cursors ({len(cursors):,} sampled), limit {PAGE}, "
        f"page {len(page_bytes):,} bytes, medians of {args.rounds} alternating rounds",
        "```",
        "",
        "| fill | jobs | time | events/s | db size |",
        "|---|---|---|---|---|",
    ]
    for n, j, secs, rate in fills:
        summary.append(
            f"| {n:,} events | {j:,} | {secs:.0f} s | {fmt_rate(rate)} | "
            f"{db_size[n] / 2**20:,.0f} MiB |"
        )
    summary += [
        "",
        "| server (1 uvicorn worker) | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---|---|---|---|---|",
    ]
    labels = [("fixed", "fixed pre-serialised page"), ("real", "real endpoint")]
    if args.before:
        labels.append(("before", f"real endpoint as of {args.before}"))
    for name, label in labels:
        summary.append(
            f"| {label} | {fmt_rate(med(name, 'rps'))} | {med(name, 'p50_ms'):.2f} | "
            f"{med(name, 'p99_ms'):.2f} | {med(name, 'server_cpu_us'):.1f} | {errors[name]} |"
        )
    summary += [
        "",
        f"ratio real / fixed (req/s): **{ratio:.2f}** (by server CPU per request: {cpu_ratio:.2f})",
        *(
            [
                "",
                f"ratio real / as of {args.before} (req/s): "
                f"**{med('real', 'rps') / med('before', 'rps'):.2f}** (by server CPU per "
                f"request: {med('before', 'server_cpu_us') / med('real', 'server_cpu_us'):.2f})",
            ]
            if args.before
            else []
        ),
        *(
            [
                "",
                f"Warning: other processes used up to {busiest:.0%} of a core during the load "
                "runs; req/s and latencies are skewed, server CPU per request less so.",
            ]
            if busiest > BUSY_WARN
            else []
        ),
        "",
        "| in-process `page_json` | first page µs | deep cursor µs | random cursors µs |",
        "|---|---|---|---|",
    ]
    for x in inproc:
        summary.append(
            f"| {x.events:,} events | {x.first_us:.1f} | {x.deep_us:.1f} | {x.random_us:.1f} |"
        )
    summary += [
        "",
        "| goal | measured | |",
        "|---|---|---|",
        f"| ratio ≥ {GOAL_RATIO} (1 worker) | {ratio:.2f} | {verdict(ratio >= GOAL_RATIO)} |",
        f"| p99 ≤ {GOAL_P99_MS:g} ms | {real_p99:.2f} ms | {verdict(real_p99 <= GOAL_P99_MS)} |",
        f"| zero errors | real {errors['real']}, fixed {errors['fixed']} | "
        f"{verdict(errors['real'] == 0 and errors['fixed'] == 0)} |",
        f"| ≤ {GOAL_PAGE_US:g} µs per page in-process | worst {worst_us:.1f} µs | "
        f"{verdict(worst_us <= GOAL_PAGE_US)} |",
        "",
        f"Total run time {total:.0f} s.",
    ]
    return summary


def _print_inproc(x: InProcess) -> None:
    print(
        f"  {x.events:,} events: first page {x.first_us:.1f} µs, deep cursor {x.deep_us:.1f} µs, "
        f"random cursors {x.random_us:.1f} µs (median of 7 batches)",
        flush=True,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the store (1,000,000)")
    p.add_argument("--jobs", type=int, default=1_000, help="jobs they belong to (1,000)")
    p.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    p.add_argument("--rounds", type=int, default=2, help="fixed/real rounds (2); medians reported")
    p.add_argument("--warmup", type=float, default=2, help="seconds of unreported load per server")
    p.add_argument("--cursors", type=int, default=4_000, help="random cursors sampled for wrk")
    p.add_argument("--verify", type=int, default=200, help="real pages checked before the load")
    p.add_argument("--iterations", type=int, default=20_000, help="calls per in-process batch")
    p.add_argument("--deep-10m", action="store_true", help="also time page_json at 10M events")
    p.add_argument("--deep-events", type=int, default=10_000_000, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help="seed for sizes, values and cursors")
    p.add_argument("--workdir", type=Path, help="parent of the temp dir (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (stores, logs)")
    p.add_argument(
        "--before",
        metavar="REV",
        help="also load the endpoint as of this git revision, side by side (e.g. HEAD~5)",
    )
    # Internal: the baseline server process (started by this script with this flag).
    p.add_argument("--serve-fixed", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.serve_fixed is not None:
        serve_fixed(args.port, args.serve_fixed)
        return 0
    args.argv = argv
    if shutil.which("wrk") is None:
        print("events_bench: wrk is not on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.events < args.jobs * MIN_EVENTS_PER_JOB:
        print(f"events_bench: need >= {MIN_EVENTS_PER_JOB} events per job", file=sys.stderr)
        return 2
    if args.deep_10m and args.deep_events < args.jobs * MIN_EVENTS_PER_JOB:
        print(f"events_bench: need >= {MIN_EVENTS_PER_JOB} events per job", file=sys.stderr)
        return 2
    # SIGTERM and SIGHUP take the Ctrl-C path, so the finally below always stops the servers;
    # SIGINT is set too because a shell starting this with `&` leaves it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="ftserve-events-bench-", dir=args.workdir))
    servers: list[Server] = []
    try:
        summary = bench(args, workdir, servers)
    except KeyboardInterrupt:
        print("\nevents_bench: interrupted", file=sys.stderr)
        return 130
    except Exception:
        # The server logs explain most failures; print them before the temp dir goes.
        for srv in servers:
            print(f"--- {srv.name} server log (tail) ---\n{srv.log_tail()}", file=sys.stderr)
        raise
    finally:
        for srv in servers:
            srv.stop()
        if args.keep:
            print(f"events_bench: files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
