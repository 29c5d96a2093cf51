#!/usr/bin/env python
"""The events endpoint on PostgreSQL (the inline sync read and the async pool) and on SQLite,
side by side in one run.

One run:

1. starts a private PostgreSQL cluster (tests/pg.py: own data dir, port and socket, stopped by
   PID), migrates a database, and fills it and a SQLite store with the same N events over J
   finished jobs (the same ids and bodies, through ``PostgresStore`` and ``SqliteStore``;
   bodies as in bench/events_bench.py);
2. starts three real ``ftserve serve`` processes (no workers, no inference): on PostgreSQL with
   ``FTSERVE_PG_ASYNC_EVENTS=0`` (the page read inline on the event loop, blocking it for the
   round trips), on PostgreSQL with the default async read (``AsyncEventReads``), and on the
   SQLite file (the embedded default, read inline: microseconds);
3. checks that all three answer a sample of pages with the same bytes, then loads each with a
   loopback HTTP/1.1 keep-alive client (asyncio, C connections, a random real cursor per
   request: wrk is not needed), taking turns for R rounds, and reports the medians of req/s,
   p50 and p99, the ratio async / sync, and PostgreSQL (async, its default) / SQLite — goal
   >= 0.5 in req/s, p99 <= 15 ms at 32 connections.

The load client is Python and shares the cores with the server under test and the database;
it is the same client for all three, so the ratios are the figures to read, not the absolute
req/s.

    .venv/bin/python bench/events_pg_bench.py            # ~2 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import orjson

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # tests/pg.py

from events_data import PAGE, _job_events, _job_record, _job_sizes  # noqa: E402
from loadrun import API_KEY, Server, http_get  # noqa: E402

from ftserve.config import Settings  # noqa: E402
from ftserve.ids import job_id  # noqa: E402
from ftserve.store.postgres import PostgresStore, migrate  # noqa: E402
from ftserve.store.protocol import Store  # noqa: E402
from ftserve.store.sqlite import SqliteStore  # noqa: E402
from tests.pg import PgCluster, find_bindir  # noqa: E402


def fill(
    url: str, sqlite_dir: Path, events: int, jobs: int, seed: int
) -> list[tuple[str, list[str]]]:
    """(job id, its event ids newest first) for every job, after filling the PostgreSQL
    database and the SQLite store of ``sqlite_dir`` with the same jobs and events."""
    rng = random.Random(seed)
    stores: list[Store] = [
        PostgresStore(url),
        SqliteStore(Settings(data_dir=sqlite_dir).sqlite_path),
    ]
    out: list[tuple[str, list[str]]] = []
    try:
        for i, size in enumerate(_job_sizes(rng, events, jobs)):
            jid = job_id()
            record = _job_record(rng, jid, 1_700_000_000 + i * 1000, size)
            made = list(_job_events(rng, record, size))
            for store in stores:
                store.create_job(record, made)
            ids = [str(orjson.loads(b)["id"]) for b in stores[0].event_bodies(jid)]
            out.append((jid, ids[::-1]))
    finally:
        for store in stores:
            store.close()
    return out


def request_paths(filled: list[tuple[str, list[str]]], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for _ in range(n):
        jid, ids = rng.choice(filled)
        if rng.random() < 0.2:
            paths.append(f"/v1/fine_tuning/jobs/{jid}/events?limit={PAGE}")
        else:
            after = ids[rng.randrange(len(ids) - PAGE)]
            paths.append(f"/v1/fine_tuning/jobs/{jid}/events?after={after}&limit={PAGE}")
    return paths


# -- the load client --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_us: float = 0.0  # the server process's CPU per request, from /proc


async def _client(
    port: int,
    requests: Sequence[bytes],
    rng: random.Random,
    stop_at: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            writer.write(requests[rng.randrange(len(requests))])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(1)
    finally:
        writer.close()
        await writer.wait_closed()


def run_load(port: int, paths: Sequence[str], seconds: float, connections: int, seed: int) -> Load:
    requests = [
        (
            f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
        ).encode()
        for p in paths
    ]
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        t0 = time.monotonic()
        stop_at = t0 + seconds
        await asyncio.gather(
            *(
                _client(port, requests, random.Random(seed + i), stop_at, latencies, errors)
                for i in range(connections)
            )
        )
        return time.monotonic() - t0

    wall = asyncio.run(main())
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
    return Load(len(lat) / wall, statistics.median(lat) * 1e3, p99, len(lat), len(errors))


# -- the run ----------------------------------------------------------------------------------


def bench(
    args: argparse.Namespace, workdir: Path, servers: list[Server], cluster: PgCluster
) -> list[str]:
    t0 = time.monotonic()
    cluster.start()
    url = cluster.url("ftserve_bench")
    import psycopg

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ftserve_bench")
    migrate(url)
    filled = fill(url, workdir / "sqlite", args.events, args.jobs, args.seed)
    print(
        f"filled {args.events:,} events over {args.jobs:,} jobs in {time.monotonic() - t0:.1f} s",
        flush=True,
    )
    paths = request_paths(filled, args.cursors, args.seed)
    base_env = {
        **os.environ,
        "FTSERVE_DATABASE_URL": url,
        "FTSERVE_API_KEYS": API_KEY,
        "FTSERVE_LOG_LEVEL": "warning",
        "FTSERVE_WORKERS": "0",
        "FTSERVE_INFERENCE": "0",
    }
    sqlite_env = {k: v for k, v in base_env.items() if k != "FTSERVE_DATABASE_URL"}
    for name, env in (
        ("sync", {**base_env, "FTSERVE_PG_ASYNC_EVENTS": "0"}),
        ("async", {**base_env, "FTSERVE_PG_ASYNC_EVENTS": "1"}),
        ("sqlite", sqlite_env),
    ):
        data = workdir / name
        srv = Server(
            name,
            [sys.executable, "-m", "ftserve", "serve", "--data-dir", str(data)],
            env,
            workdir / f"{name}.log",
        )
        servers.append(srv)
        srv.start()
    first = servers[0]
    for path in paths[: args.verify]:
        a = http_get(first.port, path)
        assert a[0] == 200 and len(orjson.loads(a[1])["data"]) == PAGE, (path, a[1][:200])
        for other in servers[1:]:
            b = http_get(other.port, path)
            if a != b:
                raise RuntimeError(
                    f"{path}: {first.name} {a[0]} {a[1][:200]!r} != {other.name} {b[0]} "
                    f"{b[1][:200]!r}"
                )
    print(f"verified {args.verify} pages: all servers answer the same bytes", flush=True)
    for srv in servers:
        run_load(srv.port, paths, args.warmup, args.connections, args.seed)
    results: dict[str, list[Load]] = {srv.name: [] for srv in servers}
    for rnd in range(args.rounds):
        for srv in servers:
            cpu0 = srv.cpu_seconds()
            r = run_load(srv.port, paths, args.duration, args.connections, args.seed + rnd)
            cpu = (srv.cpu_seconds() - cpu0) / max(1, r.requests) * 1e6
            r = Load(r.rps, r.p50_ms, r.p99_ms, r.requests, r.errors, cpu)
            results[srv.name].append(r)
            print(
                f"round {rnd + 1} {srv.name:6}: {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                f"p99 {r.p99_ms:6.2f} ms  server CPU {r.server_cpu_us:4.0f} us/req  "
                f"{r.requests} requests, {r.errors} errors",
                flush=True,
            )

    def med(name: str, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in results[name]))

    lines = [
        f"events endpoint, {args.events:,} events / {args.jobs:,} jobs, "
        f"{args.connections} connections, {args.rounds} x {args.duration:g} s per server, "
        f"{os.cpu_count()} CPUs (load client, server and PostgreSQL share them)",
    ]
    labels = {
        "sync": "PostgreSQL, inline read",
        "async": "PostgreSQL, async, batched (default)",
        "sqlite": "SQLite, inline read",
    }
    for name, label in labels.items():
        errors = sum(r.errors for r in results[name])
        lines.append(
            f"  {label:42}: {med(name, 'rps'):8.0f} req/s  p50 {med(name, 'p50_ms'):6.2f} ms  "
            f"p99 {med(name, 'p99_ms'):6.2f} ms  server CPU {med(name, 'server_cpu_us'):4.0f} "
            f"us/req  errors {errors}"
        )
    lines.append(
        f"  ratio PostgreSQL async / inline: req/s {med('async', 'rps') / med('sync', 'rps'):.2f}, "
        f"p99 {med('async', 'p99_ms') / med('sync', 'p99_ms'):.2f}"
    )
    ratio = med("async", "rps") / med("sqlite", "rps")
    p99 = med("async", "p99_ms")
    verdict = "met" if ratio >= 0.5 and p99 <= 15 else "NOT met"
    lines.append(
        f"  ratio PostgreSQL (async) / SQLite: req/s {ratio:.3f} (goal >= 0.5), "
        f"p99 {p99 / med('sqlite', 'p99_ms'):.2f}; PostgreSQL p99 {p99:.2f} ms "
        f"(goal <= 15 ms at 32 connections); both goals: {verdict}"
    )
    lines.append(f"  total {time.monotonic() - t0:.0f} s")
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=40_000, help="events in the store (40,000)")
    p.add_argument("--jobs", type=int, default=200, help="jobs they belong to (200)")
    p.add_argument("--duration", type=float, default=8, help="seconds per load run (8)")
    p.add_argument("--connections", type=int, default=32, help="client connections (32)")
    p.add_argument("--rounds", type=int, default=2, help="sync/async rounds (2); medians")
    p.add_argument("--warmup", type=float, default=2, help="seconds of unreported load each")
    p.add_argument("--cursors", type=int, default=4_000, help="random request paths")
    p.add_argument("--verify", type=int, default=200, help="pages compared before the load")
    p.add_argument("--seed", type=int, default=1)
    return p


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        print("events_pg_bench: no PostgreSQL server binaries", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="ftserve-events-pg-bench-"))
    cluster = PgCluster(bindir)
    servers: list[Server] = []
    try:
        summary = bench(args, workdir, servers, cluster)
    except KeyboardInterrupt:
        print("\nevents_pg_bench: interrupted", file=sys.stderr)
        return 130
    except Exception:
        for srv in servers:
            print(f"--- {srv.name} server log (tail) ---\n{srv.log_tail()}", file=sys.stderr)
        raise
    finally:
        for srv in servers:
            srv.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
