"""Training throughput: ftserve's trainer against a plain Hugging Face ``Trainer``.

Both train the same randomly initialised Llama (4 layers, hidden 256, byte-level vocabulary, a
bit bigger than ftserve-tiny so a step is not dominated by fixed overhead) on the same synthetic
chat rows, tokenized and masked by ftserve's data code, with the same batch size, epochs, seed,
learning-rate schedule, optimizer (fused AdamW), gradient clipping and 1 torch thread, once with
LoRA and once with full fine-tuning.

Timed spans: for ftserve, from ``hooks.on_start`` to the return of ``train`` (the step loop
plus its epoch checkpoints and the final save); for Hugging Face, ``Trainer.train()`` with saving
and logging off. Model loading and tokenization are outside both. Throughput is trained tokens
(every non-padding token fed to a training step, all epochs) per second.

"hooks share" is the fraction of ftserve's timed span spent inside the hook calls when the hooks
do nothing; it shows what the per-step callback and control poll cost the loop.

Usage: ``.venv/bin/python bench/train_throughput.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEED = 0
BATCH_SIZE = 4
_WORDS = [
    *("river", "stone", "light", "garden", "paper", "window", "music", "engine", "forest"),
    *("orange", "winter", "market", "silver", "bridge", "candle", "harbor", "pocket"),
    *("letter", "shadow", "planet"),
]


@dataclass(frozen=True)
class Run:
    engine: str
    mode: str
    tokens: int
    seconds: float
    first_loss: float | None
    last_loss: float | None
    hooks_share: float | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def synthetic_rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1234)
    rows = []
    for _ in range(n):
        question = " ".join(rng.choices(_WORDS, k=rng.randint(6, 14)))
        answer = " ".join(rng.choices(_WORDS, k=rng.randint(20, 40)))
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "You are a concise assistant."},
                    {"role": "user", "content": f"Please explain: {question}?"},
                    {"role": "assistant", "content": f"Sure. {answer}."},
                ]
            }
        )
    return rows


def build_model(directory: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


class TimedHooks:
    """No-op hooks that measure the time spent inside them."""

    def __init__(self) -> None:
        self.inside = 0.0
        self.started_at = 0.0
        self.losses: list[float] = []

    def on_start(self, hp: Any, resumed_from_step: int) -> None:
        self.started_at = time.perf_counter()

    def on_step(self, m: Any) -> None:
        t = time.perf_counter()
        self.losses.append(m.train_loss)
        self.inside += time.perf_counter() - t

    def on_checkpoint(self, c: Any) -> None:
        t = time.perf_counter()
        self.inside += time.perf_counter() - t

    def on_memory(self, plan: Any, warning: Any) -> None:
        pass

    def control(self) -> str:
        t = time.perf_counter()
        answer = "continue"
        self.inside += time.perf_counter() - t
        return answer


def bench_spec(model_dir: Path, data: Path, work: Path, epochs: int, lora: bool) -> Any:
    """The one job both engines run: the HF side resolves its hyperparameters from this same spec,
    so batch size, epochs and learning rate cannot drift apart."""
    from ftserve.training.spec import TrainingSpec

    return TrainingSpec(
        model=str(model_dir),
        training_file=data,
        validation_file=None,
        method="supervised",
        n_epochs=epochs,
        batch_size=BATCH_SIZE,
        learning_rate_multiplier=None,
        beta=None,
        seed=SEED,
        work_dir=work,
        models_cache_dir=work / "models",
        lora=lora,
        torch_threads=1,
    )


def run_ftserve(model_dir: Path, data: Path, work: Path, epochs: int, lora: bool) -> Run:
    from ftserve.training.trainer import train

    spec = bench_spec(model_dir, data, work, epochs, lora)
    hooks = TimedHooks()
    result = train(spec, hooks)  # type: ignore[arg-type]
    seconds = time.perf_counter() - hooks.started_at
    return Run(
        engine="ftserve",
        mode="lora" if lora else "full",
        tokens=result.trained_tokens,
        seconds=seconds,
        first_loss=hooks.losses[0],
        last_loss=hooks.losses[-1],
        hooks_share=hooks.inside / seconds,
    )


def run_hf_trainer(model_dir: Path, data: Path, work: Path, epochs: int, lora: bool) -> Run:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from ftserve.training import hyperparameters
    from ftserve.training.data import load_supervised
    from ftserve.training.lora import attach_lora

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = load_supervised(data, tokenizer, 2048)
    features = [
        {
            "input_ids": e.input_ids,
            "labels": [t if m else -100 for t, m in zip(e.input_ids, e.target_mask, strict=True)],
        }
        for e in examples
    ]
    pad = tokenizer.pad_token_id

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, f in enumerate(batch):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}

    spec = bench_spec(model_dir, data, work, epochs, lora)
    hp = hyperparameters.resolve(spec, len(features))
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if lora:
        model = attach_lora(model, spec)

    losses: list[float] = []

    class LossLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=epochs,
        learning_rate=hyperparameters.learning_rate(spec, hp),
        lr_scheduler_type="linear",
        warmup_steps=hyperparameters.warmup_steps(hp.total_steps),
        weight_decay=0.0,
        max_grad_norm=hyperparameters.MAX_GRAD_NORM,
        seed=SEED,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=hp.total_steps - 1 if hp.total_steps > 1 else 1,
        logging_first_step=True,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=collate,
        callbacks=[LossLog()],
    )
    # With tqdm off, Trainer prints every log dict to stdout; the table below says enough.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = sum(len(f["input_ids"]) for f in features) * epochs
    return Run(
        engine="hf-trainer",
        mode="lora" if lora else "full",
        tokens=tokens,
        seconds=seconds,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if len(losses) > 1 else None,
    )


def best(runs: list[Run]) -> Run:
    """The fastest repetition: other load on the machine only ever slows a run down."""
    return min(runs, key=lambda r: r.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description="ftserve trainer vs Hugging Face Trainer")
    parser.add_argument("--quick", action="store_true", help="fewer rows, one repetition")
    options = parser.parse_args()
    n_rows, epochs, repetitions = (32, 1, 1) if options.quick else (64, 1, 2)

    import json

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    results: dict[tuple[str, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        root = Path(tmp)
        model_dir = build_model(root / "model")
        data = root / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(n_rows)))
        for lora in (True, False):
            mode = "lora" if lora else "full"
            for rep in range(repetitions):
                # Alternate the order so neither engine always runs right after the other.
                engines = [run_hf_trainer, run_ftserve]
                if rep % 2 == int(lora):
                    engines.reverse()
                for engine in engines:
                    work = root / f"{engine.__name__}-{mode}-{rep}"
                    run = engine(model_dir, data, work, epochs, lora)
                    results.setdefault((mode, run.engine), []).append(run)

    steps = epochs * -(-n_rows // BATCH_SIZE)
    print(
        f"{n_rows} chat rows x {epochs} epoch(s), batch {BATCH_SIZE} = {steps} steps, "
        f"1 torch thread, CPU; best of {repetitions}"
    )
    header = (
        f"{'mode':<5} {'engine':<11} {'tokens':>7} {'seconds':>8} {'s/step':>7} "
        f"{'tokens/s':>9} {'loss first->last':>17} {'hooks share':>11}"
    )
    print(header)
    for (mode, _engine), runs in results.items():
        run = best(runs)
        losses = (
            f"{run.first_loss:.3f}->{run.last_loss:.3f}"
            if run.first_loss is not None and run.last_loss is not None
            else "-"
        )
        share = f"{run.hooks_share:.4%}" if run.hooks_share is not None else "-"
        print(
            f"{mode:<5} {run.engine:<11} {run.tokens:>7} {run.seconds:>8.2f} "
            f"{run.seconds / steps:>7.3f} {run.tokens_per_second:>9.0f} {losses:>17} {share:>11}"
        )
    for mode in ("lora", "full"):
        ours = best(results[(mode, "ftserve")])
        theirs = best(results[(mode, "hf-trainer")])
        ratio = ours.tokens_per_second / theirs.tokens_per_second
        print(f"{mode}: ftserve / hf-trainer tokens/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
