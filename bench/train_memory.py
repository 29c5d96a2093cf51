"""Peak memory of one training step with and without gradient checkpointing (CPU, fp32).

Each setting runs in a fresh process (so its peak resident set size is its own): a model with
SmolLM2-135M's architecture (random weights, byte-level tokenizer), ``--rows`` chat rows of about
``--tokens`` tokens each in one step (one micro-batch), LoRA or full. Prints one line per setting
and the ratio. Usage:

    PYTHONPATH=src python bench/train_memory.py [--rows 4] [--tokens 512] [--adapter lora]
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


def build_model(target: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(  # SmolLM2-135M's shape, with a byte vocabulary
        vocab_size=len(tokenizer),
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)


def one_run(
    work: Path, checkpointing: bool, rows: int, tokens: int, adapter: str
) -> dict[str, float]:
    from ftserve.training.spec import TrainingSpec
    from ftserve.training.trainer import train

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
            for i in range(rows)
        )
    )

    class Hooks:
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

    hooks = Hooks()
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
        work_dir=work / ("gc" if checkpointing else "plain"),
        models_cache_dir=work,
        lora=adapter == "lora",
        device="cpu",
        max_seq_len=8192,
        gradient_checkpointing=checkpointing,
    )
    start = time.perf_counter()
    train(spec, hooks)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": hooks.losses[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--adapter", choices=("lora", "full"), default="lora")
    parser.add_argument("--child", choices=("plain", "gc"))
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child:
        work = Path(args.work)
        result = one_run(work, args.child == "gc", args.rows, args.tokens, args.adapter)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(root / "model")
        results = {}
        for mode in ("plain", "gc"):
            work = root / mode
            work.mkdir()
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", mode, "--work", str(work)),
                    *("--rows", str(args.rows), "--tokens", str(args.tokens)),
                    *("--adapter", args.adapter),
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(
                f"{mode:5s} gradient_checkpointing={mode == 'gc'}: peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB, {r['seconds']:.1f} s, loss {r['loss']:.6f}"
            )
        plain, gc = results["plain"], results["gc"]
        print(
            f"{args.rows} rows x ~{args.tokens} tokens, {args.adapter}: checkpointing uses "
            f"{gc['peak_rss_mib'] / plain['peak_rss_mib']:.2f}x the peak memory and "
            f"{gc['seconds'] / plain['seconds']:.2f}x the time; same first loss: "
            f"{abs(gc['loss'] - plain['loss']) <= 1e-4 * abs(plain['loss'])}"
        )


if __name__ == "__main__":
    main()
