"""The trainer on a GPU: ftserve against Hugging Face's ``Trainer`` on a 0.5B model, with MFU.

Model: Qwen2.5-0.5B's architecture (24 layers, hidden 896, MLP 4864, 14 heads / 2 KV heads,
vocabulary 151,936, tied embeddings), random initial weights, built from its config (no hub);
ftserve-tiny's byte tokenizer (one token per byte), so row lengths are exact. Data: synthetic
chat rows whose token lengths are log-normal, median 200 and p95 1,500 (sigma 1.22), cut at
2,048. Both engines get the same rows, tokenized and masked by ftserve's data code, the same
global batch, epochs, seed, learning-rate schedule, fused AdamW and clipping; bf16 autocast
with fp32 weights (ftserve's default on CUDA; ``Trainer`` with ``bf16=True``). ftserve runs with
its defaults; ``Trainer`` with micro-batches of 8 rows padded to the longest (a padding
collator) and gradient accumulation up to the same global batch.

Timed: the step loop, from the start of step 1 to the end of the last step (ftserve: hooks;
Trainer: callbacks); model loading and checkpoint saving are outside. A short job runs first to
warm CUDA up for both. Throughput is real (non-padding) tokens per second. MFU: model FLOPs
(6 x matmul parameters per token for a full fine-tune, 4 x for LoRA, whose frozen weights get
no gradient; plus causal attention) per second, over the bf16 matmul peak measured in the same
run (8192^3 matmuls) and over the datasheet's dense bf16 peak.

Run: ``PYTHONPATH=src python bench/gpu_train_bench.py`` (a CUDA device; bench/gpu_check.sh);
``--tiny --device cpu`` runs the same code on a small model, to check the script itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

SEED = 0
HF_MICRO_BATCH = 8
DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM
_WORDS = [
    "river",
    "stone",
    "light",
    "garden",
    "paper",
    "window",
    "music",
    "engine",
    "forest",
    "orange",
    "winter",
    "market",
]


@dataclass(frozen=True)
class Run:
    engine: str
    mode: str
    tokens: int
    seconds: float
    first_loss: float
    last_loss: float


def qwen2_config(tiny: bool, vocab: int, tokenizer: Any) -> Any:
    from transformers import Qwen2Config

    shape = (
        {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2}
        if tiny
        else {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24}
    )
    return Qwen2Config(
        vocab_size=vocab,
        num_attention_heads=14 if not tiny else 4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )


def build_model(directory: Path, tiny: bool, device: str) -> Any:
    from transformers import Qwen2ForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = qwen2_config(tiny, 151_936 if not tiny else 512, tokenizer)
    torch.manual_seed(SEED)
    with torch.device(device):  # random init on the GPU: seconds instead of a minute on CPU
        model = Qwen2ForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    return config


def chat_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Rows whose byte (= token) lengths are log-normal: median 200, p95 1,500."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = min(2000, max(24, int(rng.lognormvariate(math.log(200), 1.22))))
        words = " ".join(rng.choices(_WORDS, k=length // 6 + 1))
        cut = max(8, length // 5)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": words[:cut]},
                    {"role": "assistant", "content": words[cut:length]},
                ]
            }
        )
    return rows


def spec_for(model_dir: Path, data: Path, work: Path, lora: bool, batch: int, device: str) -> Any:
    from ftserve.training.spec import TrainingSpec

    return TrainingSpec(
        model=str(model_dir),
        training_file=data,
        validation_file=None,
        method="supervised",
        n_epochs=1,
        batch_size=batch,
        learning_rate_multiplier=None,
        beta=None,
        seed=SEED,
        work_dir=work,
        models_cache_dir=work / "models",
        lora=lora,
        device=device,  # type: ignore[arg-type]
        torch_threads=1 if device == "cpu" else 8,
    )


class StepTimes:
    """ftserve's hooks: the step loop's span and the losses."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.started = self.ended = 0.0
        self.losses: list[float] = []

    def on_start(self, hp: Any, resumed_from: Any) -> str:
        self.sync()
        self.started = time.perf_counter()
        return "continue"

    def on_step(self, m: Any) -> str:
        self.losses.append(m.train_loss)  # a float: the step's work is done on the device
        self.ended = time.perf_counter()
        return "continue"

    def on_checkpoint(self, c: Any) -> str:
        return "continue"


def run_ftserve(model_dir: Path, data: Path, work: Path, lora: bool, batch: int, dev: str) -> Run:
    from ftserve.training.trainer import train

    hooks = StepTimes(_sync(dev))
    result = train(spec_for(model_dir, data, work, lora, batch, dev), hooks)  # type: ignore[arg-type]
    return Run(
        "ftserve",
        "lora" if lora else "full",
        result.trained_tokens,
        hooks.ended - hooks.started,
        hooks.losses[0],
        hooks.losses[-1],
    )


def run_hf(model_dir: Path, data: Path, work: Path, lora: bool, batch: int, dev: str) -> Run:
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

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in rows)
        ids = torch.full((len(rows), width), pad)
        labels = torch.full((len(rows), width), -100)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, f in enumerate(rows):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            attention[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}

    spec = spec_for(model_dir, data, work, lora, batch, dev)
    hp = hyperparameters.resolve(spec, len(features))
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if lora:
        model = attach_lora(model, spec)
    sync = _sync(dev)
    span: dict[str, float] = {}
    losses: list[float] = []

    class Span(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if "start" not in span:
                sync()
                span["start"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync()
            span["end"] = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    micro = min(HF_MICRO_BATCH, batch)
    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, batch // micro),
        num_train_epochs=1,
        learning_rate=hyperparameters.learning_rate(spec, hp),
        lr_scheduler_type="linear",
        warmup_steps=hyperparameters.warmup_steps(hp.total_steps),
        weight_decay=0.0,
        max_grad_norm=hyperparameters.MAX_GRAD_NORM,
        optim="adamw_torch_fused",
        bf16=dev == "cuda",
        use_cpu=dev == "cpu",
        seed=SEED,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=max(1, hp.total_steps - 1),
        logging_first_step=True,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=features, data_collator=collate, callbacks=[Span()]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    tokens = sum(len(f["input_ids"]) for f in features)
    del trainer, model
    return Run(
        "hf-trainer",
        "lora" if lora else "full",
        tokens,
        span["end"] - span["start"],
        losses[0],
        losses[-1],
    )


def _sync(device: str) -> Any:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def matmul_peak(device: str) -> float:
    """FLOP/s of large matmuls in this run: bf16 8192^3 on CUDA, fp32 1024^3 on CPU."""
    n, dtype, reps = (8192, torch.bfloat16, 30) if device == "cuda" else (1024, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = _sync(device)
    sync()
    began = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - began)


def model_flops(config: Any, lengths: list[int], lora: bool) -> float:
    """FLOPs of one pass over rows of these lengths: matmuls (6 or 4 per parameter and token)
    and causal attention (scores and values: 2 * 2 * hidden * n^2 / 2 forward per layer, x3)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h // config.num_attention_heads * config.num_key_value_heads
    matmul_params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter) + h * config.vocab_size
    per_param = 4 if lora else 6
    tokens = sum(lengths)
    attention = sum(6 * layers * h * n * n for n in lengths)
    return per_param * matmul_params * tokens + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="a small model: checks the script")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args()
    dev = opts.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_train_bench: no CUDA device (use --device cpu --tiny to try it)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(1 if dev == "cpu" else 8)

    from ftserve.modeling.loading import load_tokenizer
    from ftserve.training.data import load_supervised

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ftserve-gpu-bench-") as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        config = build_model(root / "model", opts.tiny, dev)
        built = time.perf_counter() - began
        data = root / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(opts.rows, SEED)))
        warm = root / "warm.jsonl"
        warm.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(16, SEED + 1)))
        tokenizer = load_tokenizer(root / "model")
        lengths = [len(e.input_ids) for e in load_supervised(data, tokenizer, 2048)]
        run_ftserve(root / "model", warm, root / "warm", True, 8, dev)  # CUDA warm-up for both
        for lora in (True, False):
            for engine in (run_hf, run_ftserve):
                work = root / f"{engine.__name__}-{lora}"
                runs.append(engine(root / "model", data, work, lora, opts.batch, dev))
                gc.collect()
                if dev == "cuda":
                    torch.cuda.empty_cache()
        peak = matmul_peak(dev)

    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (1 thread)"
    datasheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    lens = sorted(lengths)
    print(
        f"\n== trainer on {name}: Qwen2.5-0.5B architecture{' (tiny)' if opts.tiny else ''}, "
        f"{len(lens)} rows (tokens: median {lens[len(lens) // 2]}, "
        f"p95 {lens[int(0.95 * (len(lens) - 1))]}, max {lens[-1]}), batch {opts.batch}, "
        f"1 epoch; model built in {built:.0f} s"
    )
    sheet_text = f" (datasheet {datasheet:.0f})" if datasheet else ""
    print(f"measured matmul peak: {peak / 1e12:.1f} TFLOP/s{sheet_text}")
    print(
        f"{'mode':<5} {'engine':<11} {'tokens':>8} {'s':>7} {'tokens/s':>9} "
        f"{'loss first->last':>17} {'MFU':>6} {'MFU (sheet)':>11}"
    )
    summary: dict[str, Any] = {"device": name, "peak_tflops": peak / 1e12, "runs": []}
    for run in runs:
        flops = model_flops(config, lengths, run.mode == "lora") / run.seconds
        mfu = flops / peak
        sheet = f"{flops / (datasheet * 1e12):.1%}" if datasheet else "-"
        print(
            f"{run.mode:<5} {run.engine:<11} {run.tokens:>8} {run.seconds:>7.2f} "
            f"{run.tokens / run.seconds:>9.0f} {run.first_loss:>8.3f}->{run.last_loss:<7.3f} "
            f"{mfu:>6.1%} {sheet:>11}"
        )
        rate = run.tokens / run.seconds
        summary["runs"].append({**run.__dict__, "tokens_per_s": rate, "mfu": mfu})
    for mode in ("lora", "full"):
        ours = next(r for r in runs if r.mode == mode and r.engine == "ftserve")
        theirs = next(r for r in runs if r.mode == mode and r.engine == "hf-trainer")
        ratio = (ours.tokens / ours.seconds) / (theirs.tokens / theirs.seconds)
        summary[f"{mode}_ratio"] = ratio
        print(f"{mode}: ftserve / Trainer tokens/s = {ratio:.2f}   (goal on a GPU >= 1.5)")
    if opts.json:
        opts.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
