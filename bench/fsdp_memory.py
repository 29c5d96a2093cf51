"""Peak memory of each process of a full fine-tune on two CPU processes: DDP against FSDP.

Each setting runs in a fresh process, which trains as rank 0 and forks rank 1 (as the worker's
training child does): a model with SmolLM2-135M's architecture (random weights, byte-level
tokenizer; bench/train_memory.py builds it), ``--rows`` chat rows of about ``--tokens`` tokens,
``--steps`` optimizer steps, fp32, one thread per process. Rank 0's peak resident set size is its
own; rank 1's is the largest of rank 0's children (it has no other). Prints one line per setting,
the ratio, and whether the losses agree. Usage:

    PYTHONPATH=src python bench/fsdp_memory.py [--rows 4] [--tokens 256] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_memory import build_model


class _Hooks:
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_start(self, hp: object, resumed: object) -> str:
        return "continue"

    def on_step(self, m: object) -> str:
        self.losses.append(m.train_loss)  # type: ignore[attr-defined]
        return "continue"

    def on_checkpoint(self, c: object) -> str:
        return "continue"

    def on_memory(self, plan: object, warning: object) -> None:
        pass


def one_run(work: Path, sharded: bool, rows: int, tokens: int, steps: int) -> dict[str, object]:
    from ftserve.training.distributed import train_on_devices
    from ftserve.training.spec import TrainingSpec

    data = work / "data.jsonl"
    words = max(1, (tokens - 60) // 6)
    data.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"{i} " + "words " * words},
                        {"role": "assistant", "content": f"answer {i}"},
                    ]
                }
            )
            + "\n"
            for i in range(rows * steps)
        )
    )
    hooks = _Hooks()
    spec = TrainingSpec(
        model=str(work.parent / "model"),
        training_file=data,
        validation_file=None,
        method="supervised",
        n_epochs=1,
        batch_size=rows,
        learning_rate_multiplier=1.0,
        beta=None,
        seed=0,
        work_dir=work / "job",
        models_cache_dir=work,
        lora=False,
        device="cpu",
        max_seq_len=8192,
        devices=2,
        fsdp=sharded,
    )
    start = time.perf_counter()
    train_on_devices(spec, hooks)  # type: ignore[arg-type]
    return {
        "seconds": time.perf_counter() - start,
        "rank0_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rank1_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "losses": hooks.losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", choices=("ddp", "fsdp"))
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child:
        result = one_run(Path(args.work), args.child == "fsdp", args.rows, args.tokens, args.steps)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(root / "model")
        results = {}
        for mode in ("ddp", "fsdp"):
            work = root / mode
            work.mkdir()
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", mode, "--work", str(work)),
                    *("--rows", str(args.rows), "--tokens", str(args.tokens)),
                    *("--steps", str(args.steps)),
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            )
            results[mode] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{mode:4s}: peak RSS rank 0 {r['rank0_mib']:.0f} MiB, rank 1 "
                f"{r['rank1_mib']:.0f} MiB, {r['seconds']:.1f} s, losses {r['losses']}"
            )
        ddp, fsdp = results["ddp"], results["fsdp"]
        same = all(
            abs(a - b) <= 1e-4 * abs(b) for a, b in zip(fsdp["losses"], ddp["losses"], strict=True)
        )
        print(
            f"full fine-tune, 2 processes, {args.steps} steps of {args.rows} rows x "
            f"~{args.tokens} tokens: FSDP's peak per process is "
            f"{fsdp['rank0_mib'] / ddp['rank0_mib']:.2f}x (rank 0) and "
            f"{fsdp['rank1_mib'] / ddp['rank1_mib']:.2f}x (rank 1) DDP's; same losses: {same}"
        )


if __name__ == "__main__":
    main()
