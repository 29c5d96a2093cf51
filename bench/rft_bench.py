"""Reinforcement fine-tuning, measured side by side in one run on the built-in real model
(SmolLM2-135M-Instruct with a fresh LoRA adapter, as an RFT job samples from it; fp32, CPU):

1. Rollouts: the same prompts, ``--per-prompt`` answers each, at temperature 1 and at most
   ``--tokens`` tokens, sampled by ftserve's sampler (``training/rollout.py``: each prompt's
   cache computed once and copied, finished answers dropped from the batch) and by
   ``model.generate`` on the same left-padded batch of repeated prompts (the baseline).
   Answer tokens per second of each, and the ratio sampler / generate (goal ≥ 1). Runs
   alternate; the best of ``--rounds`` is kept (absolute times here drift ±15 %).
2. The step-time split of a real RFT job's steps (sampling / grading / training / validation),
   from its own metrics events: the trainer run in this process on the task the README's
   example uses (one-word answers, ``fuzzy_match``), ``--steps`` steps.

Run: .venv/bin/python bench/rft_bench.py [--prompts 4] [--per-prompt 4] [--tokens 32]
     [--rounds 3] [--steps 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from ftserve.modeling.device import resolve_device
from ftserve.modeling.loading import load_model, load_tokenizer
from ftserve.modeling.sources import materialize, smollm2_path
from ftserve.training.lora import attach_lora
from ftserve.training.rft import _stop_ids, draw_seed
from ftserve.training.rollout import _left_padded, sample
from ftserve.training.spec import RewardMetrics, TrainingStopped
from tests.e2e.test_rft_real_model import GRADER, SYSTEM, TRAIN, VALID, rows
from tests.training.training_helpers import Recorder, make_spec, write_jsonl


def rollout_tokens(
    model: Any, prompts: list[list[int]], args: Any, stops: frozenset[int], pad: int, seed: int
) -> tuple[int, float]:
    start = time.perf_counter()
    drawn = sample(
        model,
        prompts,
        per_prompt=args.per_prompt,
        max_new_tokens=args.tokens,
        stop_ids=stops,
        pad_id=pad,
        generator=torch.Generator().manual_seed(seed),
        device=torch.device("cpu"),
    )
    return sum(len(r.tokens) for r in drawn), time.perf_counter() - start


def generate_tokens(
    model: Any, prompts: list[list[int]], args: Any, stops: frozenset[int], pad: int, seed: int
) -> tuple[int, float]:
    torch.manual_seed(seed)
    repeated = [p for p in prompts for _ in range(args.per_prompt)]
    ids, mask = _left_padded(repeated, pad, torch.device("cpu"))
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=args.tokens,
            eos_token_id=sorted(stops),
            pad_token_id=pad,
        )
    elapsed = time.perf_counter() - start
    answers = out[:, ids.shape[1] :]
    # An answer's tokens: up to (not including) its first stop token.
    count = 0
    for row in answers.tolist():
        for token in row:
            if token in stops:
                break
            count += 1
    return count, elapsed


def bench_rollouts(args: Any, model_dir: Path) -> None:
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, resolve_device("cpu"), frozen_base=True)
    spec = make_spec(Path(tempfile.mkdtemp()), model_dir.parent, Path("unused"))
    model = attach_lora(model, spec).eval()
    stops = _stop_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    questions = [q for q, _ in TRAIN][: args.prompts]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in questions
    ]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rollout_tokens(model, ids, args, stops, pad, 0)  # warm-up: first calls build kernels
    generate_tokens(model, ids, args, stops, pad, 0)
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(args.rounds):
        n, t = rollout_tokens(model, ids, args, stops, pad, r + 1)
        ours.append(n / t)
        n, t = generate_tokens(model, ids, args, stops, pad, r + 1)
        theirs.append(n / t)
    best_ours, best_theirs = max(ours), max(theirs)
    print(
        f"rollouts: {args.prompts} prompts x {args.per_prompt} answers, <= {args.tokens} tokens, "
        f"{args.threads} thread(s)"
    )
    print(
        f"  ftserve sampler : {best_ours:7.1f} answer tokens/s (rounds: "
        f"{', '.join(f'{x:.1f}' for x in ours)})"
    )
    print(
        f"  model.generate  : {best_theirs:7.1f} answer tokens/s (rounds: "
        f"{', '.join(f'{x:.1f}' for x in theirs)})"
    )
    print(f"  ratio sampler / generate: {best_ours / best_theirs:.2f}x")


def bench_steps(args: Any) -> None:
    from ftserve.training.trainer import train

    work = Path(tempfile.mkdtemp(prefix="rft-bench-"))
    spec = make_spec(
        work,
        work / "models",
        write_jsonl(work / "train.jsonl", rows(TRAIN)),
        validation_file=write_jsonl(work / "valid.jsonl", rows(VALID)),
        method="reinforcement",
        model="gguf:" + str(smollm2_path()),
        grader=GRADER,
        max_completion_tokens=16,
        n_epochs=1,
        eval_interval=2,
        torch_threads=args.threads,
        seed=draw_seed(0, 0, "bench") % 1000,
    )
    hooks = Recorder(decide=lambda step: "cancel" if step >= args.steps else "continue")
    with contextlib.suppress(TrainingStopped):  # the cancel after --steps steps
        train(spec, hooks)
    timings = [m.data["timing"] for m in hooks.steps if isinstance(m, RewardMetrics)]
    print(f"RFT steps (batch 4 prompts x 4 answers, <= 16 tokens, {args.threads} thread(s)):")
    for key in ("sampling", "training", "eval", "full_iteration"):
        values = [t["step"][key] for t in timings]
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {key:15s}: median {statistics.median(values):6.2f} s  ({each})")
    grading = [t["graders"][0]["train_execution_latency_mean"] for t in timings]
    print(f"  grading        : median {statistics.median(grading) * 1000:6.2f} ms per answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = Path(tempfile.gettempdir()) / "ftserve-bench-models"
    model_dir = materialize("gguf:" + str(smollm2_path()), models)
    bench_rollouts(args, model_dir)
    if args.steps > 0:
        bench_steps(args)


if __name__ == "__main__":
    main()
