"""The Batch API, measured side by side in one run on the built-in real model
(SmolLM2-135M-Instruct, greedy, 1 torch thread):

1. Throughput: the same N chat requests (default 200) sent live, 8 at a time (the SDK, one
   thread each), against one batch of them (upload, create, poll until ``completed``, output
   downloaded). Requests/s and completion tokens/s of each, and the ratio batch / live (goal ≥ 1).
2. Live latency while a batch runs: one live chat request after another (same request each
   time), idle against while a second batch of the same requests runs; median and p90 of each
   (the batch runs at the lower inference priority, so live requests are placed first).
3. The events endpoint while a batch runs: one ``GET /fine_tuning/jobs/{id}/events`` page (20
   events) after another, idle against during the same second batch; median and p90.

Runs alternate and the best of ``--rounds`` is kept (absolute times on these shared machines
drift ±15 %).

Run: .venv/bin/python bench/batch_bench.py [--requests 200] [--tokens 32] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from tests.conftest import Server

REAL = "smollm2-135m-instruct"
PROMPTS = [
    "Tell me about the ocean.",
    "Describe a walk in the forest.",
    "What makes a good breakfast?",
    "Explain how a bicycle works.",
    "Write a few lines about the moon.",
    "Why do people keep gardens?",
    "Describe your favourite city.",
    "What is interesting about trains?",
]
PROBE_TOKENS = 8


def ask(client: openai.OpenAI, prompt: str, tokens: int) -> int:
    """One live greedy chat request; its completion tokens."""
    answer = client.chat.completions.create(
        model=REAL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=tokens,
        temperature=0,
    )
    return answer.usage.completion_tokens if answer.usage is not None else 0


def prompt_of(i: int) -> str:
    return f"{PROMPTS[i % len(PROMPTS)]} (request {i})"


def body(i: int, tokens: int) -> dict[str, object]:
    return {
        "model": REAL,
        "messages": [{"role": "user", "content": prompt_of(i)}],
        "max_tokens": tokens,
        "temperature": 0,
    }


def live(client: openai.OpenAI, n: int, tokens: int) -> tuple[float, int]:
    """Seconds for all n requests, 8 in flight; completion tokens."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        used = sum(pool.map(lambda i: ask(client, prompt_of(i), tokens), range(n)))
    return time.perf_counter() - t0, used


def batch(client: openai.OpenAI, n: int, tokens: int) -> tuple[float, int]:
    """Seconds from create to the downloaded output; completion tokens."""
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body(i, tokens),
        }
        for i in range(n)
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    file = client.files.create(file=("bench.jsonl", data), purpose="batch")
    t0 = time.perf_counter()
    created = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while True:
        b = client.batches.retrieve(created.id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(0.1)
    assert b.status == "completed" and b.output_file_id, b
    output = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
    seconds = time.perf_counter() - t0
    assert len(output) == n and {x["custom_id"] for x in output} == {f"r{i}" for i in range(n)}
    used = sum(x["response"]["body"]["usage"]["completion_tokens"] for x in output)
    assert b.in_progress_at and b.finalizing_at and b.completed_at
    print(
        f"   (batch: validating {b.in_progress_at - b.created_at} s, lines "
        f"{b.finalizing_at - b.in_progress_at} s, finalizing {b.completed_at - b.finalizing_at} s)",
        flush=True,
    )
    return seconds, used


def probe(client: openai.OpenAI, until: threading.Event, at_least: int) -> list[float]:
    out: list[float] = []
    while not until.is_set() or len(out) < at_least:
        t0 = time.perf_counter()
        ask(client, "Say hello.", PROBE_TOKENS)
        out.append(time.perf_counter() - t0)
        if until.is_set() and len(out) >= at_least:
            break
    return out


def events_probe(
    client: openai.OpenAI, job_id: str, until: threading.Event, at_least: int
) -> list[float]:
    out: list[float] = []
    while not until.is_set() or len(out) < at_least:
        t0 = time.perf_counter()
        client.fine_tuning.jobs.list_events(job_id, limit=20)
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)  # a reader polling, not a load test
    return out


def a_job(client: openai.OpenAI) -> str:
    """A job whose events page the probe reads (no worker: it stays queued)."""
    rows = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "Sure."}]}
        for p in PROMPTS + PROMPTS[:2]
    ]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    f = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=f.id).id


def p90(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.9) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 requests of 16 tokens, 1 round")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ftserve-batch-bench"))
    args = parser.parse_args()
    n, tokens = (40, 16) if args.quick else (args.requests, args.tokens)
    rounds = 1 if args.quick else args.rounds

    server = Server(
        args.data_dir,
        env={"FTSERVE_WORKERS": "0", "FTSERVE_TORCH_THREADS": "1", "FTSERVE_LOG_LEVEL": "warning"},
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        client = server.client(strict=False)
        client = client.with_options(timeout=600)
        print("warming up (the first run converts the GGUF once, ~30 s) ...", flush=True)
        ask(client, "Say hello.", PROBE_TOKENS)

        stop = threading.Event()
        stop.set()
        idle = probe(client, stop, 10)
        job_id = a_job(client)
        events_idle = events_probe(client, job_id, stop, 50)

        lives, batches = [], []
        for _ in range(rounds):  # alternating; the best of each is kept
            lives.append(live(client, n, tokens))
            batches.append(batch(client, n, tokens))
        live_s, live_tokens = min(lives)
        batch_s, batch_tokens = min(batches)

        # Latency: a second batch of the same requests, probed while it runs.
        done = threading.Event()
        during: list[float] = []
        events_during: list[float] = []

        def probing() -> None:
            during.extend(probe(client, done, 5))

        def events_probing() -> None:
            events_during.extend(events_probe(client, job_id, done, 50))

        prober = threading.Thread(target=probing)
        events_prober = threading.Thread(target=events_probing)
        runner = threading.Thread(target=lambda: batch(client, n, tokens))
        runner.start()
        time.sleep(2)  # the batch validated and its lines running
        prober.start()
        events_prober.start()
        runner.join()
        done.set()
        prober.join()
        events_prober.join()
    finally:
        server.stop()

    print(f"\n1. {n} chat requests x {tokens} tokens max (greedy), best of {rounds}")
    for label, seconds, used in (
        ("live, 8 at a time:", live_s, live_tokens),
        ("one batch:", batch_s, batch_tokens),
    ):
        rates = f"{n / seconds:5.2f} req/s  {used / seconds:6.1f} tokens/s"
        print(f"   {label:19} {seconds:7.1f} s  {rates}")
    print(f"   ratio batch / live (req/s): {live_s / batch_s:.2f}  (goal >= 1)")
    print(f"\n2. live chat latency ({PROBE_TOKENS} tokens), one request after another")
    for label, xs in (("idle:", idle), ("while batch runs:", during)):
        ms = f"median {statistics.median(xs) * 1e3:6.0f} ms  p90 {p90(xs) * 1e3:6.0f} ms"
        print(f"   {label:19} {ms}  ({len(xs)} requests)")
    print(
        f"   ratio median during / idle: {statistics.median(during) / statistics.median(idle):.2f}"
    )
    print("\n3. the events endpoint (a page of 20), one request after another")
    for label, xs in (("idle:", events_idle), ("while batch runs:", events_during)):
        ms = f"median {statistics.median(xs) * 1e3:6.1f} ms  p90 {p90(xs) * 1e3:6.1f} ms"
        print(f"   {label:19} {ms}  ({len(xs)} requests)")
    ratio = statistics.median(events_during) / statistics.median(events_idle)
    print(f"   ratio median during / idle: {ratio:.2f}")


if __name__ == "__main__":
    main()
