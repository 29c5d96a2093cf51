"""Worker overheads, measured side by side in one run.

1. Recording cost: the same training job run twice in this process — once with the worker's real
   hooks (each step's metrics event written, fenced by the claim, to a real SQLite store before
   the next step starts; checkpoint rows; progress) and once with hooks that do nothing —
   printing the share of training time spent inside the real hooks and the wall-time ratio of
   the two runs. Goal: ≤ 2 %.
2. Stop latency: a real `ftserve serve`, first with its embedded worker, then API-only beside a
   separate `ftserve worker`; N tries each, cancel and pause alternating, each at a random
   moment of a running job. For each try: the steps the training process computed after the API
   committed the request — the commit timestamped by a watcher reading the job's status every
   0.5 ms, the steps from the step log the training process keeps (FTSERVE_STEP_LOG_DIR).
   Goal: at most one step in >= 95 % of tries.
3. Pickup latency: the embedded worker; for each of N jobs, an upper bound of the time from the
   job becoming `queued` to its becoming `running`, seen by polling every 2 ms. Goal: ≤ 1 s.

Run: .venv/bin/python bench/worker_bench.py [--quick] [--tries 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftserve.events import messages
from ftserve.ids import job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.store.records import Claim, JobRecord
from ftserve.store.sqlite import SqliteStore
from ftserve.training.spec import TrainingSpec
from ftserve.worker.hooks import StoreHooks


def rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}? Answer in words, please."},
                {
                    "role": "assistant",
                    "content": f"{i} plus {i} is {2 * i}, which is an even number.",
                },
            ]
        }
        for i in range(n)
    ]


class NullHooks:
    def on_start(self, hp: object, resumed_from: object) -> str:
        return "continue"

    def on_step(self, m: object) -> str:
        return "continue"

    def on_checkpoint(self, c: object) -> str:
        return "continue"

    def on_memory(self, plan: object, warning: object) -> None:
        pass


def recording_cost(work: Path, examples: int, epochs: int) -> dict[str, float]:
    from ftserve.training.trainer import train

    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(examples)))
    blob_dir = work / "blobs"
    store = SqliteStore(work / "bench.db", background_checkpoints=True)  # as a training process

    def spec(name: str) -> TrainingSpec:
        return TrainingSpec(
            model="ftserve-tiny",
            training_file=data,
            validation_file=None,
            method="supervised",
            n_epochs=epochs,
            batch_size=1,
            learning_rate_multiplier=None,
            beta=None,
            seed=0,
            work_dir=blob_dir / "jobs" / name,
            models_cache_dir=work / "models",
        )

    # Warm-up: builds ftserve-tiny and pays the import and first-step costs once for both runs.
    train(spec("warmup"), NullHooks())  # type: ignore[arg-type]

    results: dict[str, list[float]] = {"null": [], "real": [], "share": []}
    for round_ in range(3):
        t0 = time.perf_counter()
        train(spec(f"null{round_}"), NullHooks())  # type: ignore[arg-type]
        results["null"].append(time.perf_counter() - t0)

        job = JobRecord(
            id=job_id(),
            organization="personal",
            model="ftserve-tiny",
            model_source="ftserve-tiny",
            status="queued",
            created_at=int(time.time()),
            training_file="file-x",
            validation_file=None,
            hyperparameters=Hyperparameters(),
            method=Method("supervised", Hyperparameters()),
            seed=0,
        )
        store.create_job(job, [messages.created(job.id)])
        claimed = store.claim_job("bench", time.time(), 3600, [messages.training_started()])
        assert claimed is not None and claimed.claim_token is not None
        claim = Claim(claimed.id, claimed.claim_token)
        hooks = StoreHooks(store, claimed, claim, lambda: True, blob_dir)
        t0 = time.perf_counter()
        train(spec(job.id), hooks)
        elapsed = time.perf_counter() - t0
        results["real"].append(elapsed)
        results["share"].append(hooks.hook_seconds / elapsed)
    store.close()
    return {
        "steps": examples * epochs,
        "null_s": statistics.median(results["null"]),
        "real_s": statistics.median(results["real"]),
        "hook_share": statistics.median(results["share"]),
    }


def pickup_latency(work: Path, jobs: int) -> list[float]:
    import openai
    from conftest import Server, jsonl

    srv = Server(work / "srv", env={"FTSERVE_WORKERS": "1", "FTSERVE_LOG_LEVEL": "warning"})
    srv.start()
    try:
        client = srv.client(strict=False)
        fid = client.files.create(file=("t.jsonl", jsonl(rows(10))), purpose="fine-tune").id
        latencies = []
        for _ in range(jobs):
            job = client.fine_tuning.jobs.create(
                model="ftserve-tiny", training_file=fid, hyperparameters={"n_epochs": 1}
            )
            # Upper bound of the queued -> running time: from the last poll that still saw the
            # job before `queued` (or the first that saw it queued) to the first that saw it
            # running. When validation and pickup fall between two polls, the bound also holds
            # the validation time.
            before_queued = time.perf_counter()
            seen_queued = None
            while True:
                status = client.fine_tuning.jobs.retrieve(job.id).status
                now = time.perf_counter()
                if status == "validating_files":
                    before_queued = now
                elif status == "queued" and seen_queued is None:
                    seen_queued = now
                elif status in ("running", "succeeded", "failed"):
                    latencies.append(now - (seen_queued or before_queued))
                    break
                time.sleep(0.002)
            while client.fine_tuning.jobs.retrieve(job.id).status not in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                time.sleep(0.05)
        _ = openai
        return latencies
    finally:
        srv.stop()


def stop_latency(work: Path, tries: int, separate: bool) -> list[int]:
    from conftest import Server
    from e2e.conftest import WorkerProc
    from e2e.test_event_log_ends import _latency_tries

    steps = work / ("steps-separate" if separate else "steps-embedded")
    env = {"FTSERVE_LOG_LEVEL": "warning", "FTSERVE_LEASE_SECONDS": "30"}
    name = "lat-separate" if separate else "lat-embedded"
    if separate:
        srv = Server(work / name, env={**env, "FTSERVE_WORKERS": "0"})
        worker: WorkerProc | None = WorkerProc(
            srv.data_dir, env={"FTSERVE_STEP_LOG_DIR": str(steps)}
        )
    else:
        srv = Server(
            work / name, env={**env, "FTSERVE_WORKERS": "1", "FTSERVE_STEP_LOG_DIR": str(steps)}
        )
        worker = None
    srv.start()
    if worker is not None:
        worker.start()
    try:
        client = srv.client(strict=False)
        found = _latency_tries(client, srv.data_dir, steps, tries, seed=1 if separate else 0)
        client.close()
        return found
    finally:
        if worker is not None:
            worker.kill()
        srv.stop()


def distribution(found: list[int]) -> str:
    counts = Counter(found)
    parts = ", ".join(f"{n} step{'s' if n != 1 else ''}: {counts[n]}" for n in sorted(counts))
    share = sum(c for n, c in counts.items() if n <= 1) / len(found)
    return f"{parts}   -> at most one step in {100 * share:.0f} % of {len(found)} tries"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--tries", type=int, help="stop-latency tries per worker mode")
    args = parser.parse_args()
    examples, epochs, jobs = (30, 2, 3) if args.quick else (100, 3, 8)
    tries = args.tries or (6 if args.quick else 50)
    with tempfile.TemporaryDirectory(prefix="ftserve-worker-bench-") as tmp:
        work = Path(tmp)
        cost = recording_cost(work, examples, epochs)
        print(f"recording cost measured; stop latency, {tries} tries per mode ...", flush=True)
        embedded = stop_latency(work, tries, separate=False)
        separate = stop_latency(work, tries, separate=True)
        lat = pickup_latency(work, jobs)
    print("\n== worker overheads (ftserve-tiny, 1 torch thread, median of 3 rounds)")
    print(f"steps per run                     {cost['steps']:.0f}")
    print(f"train with no-op hooks            {cost['null_s']:.2f} s")
    print(f"train with the worker's hooks     {cost['real_s']:.2f} s")
    print(f"ratio real / no-op                {cost['real_s'] / cost['null_s']:.3f}")
    print(f"share of time inside the hooks    {100 * cost['hook_share']:.2f} %   (goal <= 2 %)")
    print("\n== steps computed after a cancel/pause was committed (the training process's log)")
    print(f"embedded worker                   {distribution(embedded)}")
    print(f"separate ftserve worker           {distribution(separate)}   (goal >= 95 %)")
    print(f"\n== queued -> running pickup, {len(lat)} jobs (polled every 2 ms)")
    print(
        f"upper bound: median {1000 * statistics.median(lat):.1f} ms, "
        f"max {1000 * max(lat):.1f} ms   (goal <= 1000 ms)"
    )


if __name__ == "__main__":
    main()
