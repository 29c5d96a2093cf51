"""Training throughput on variable-length chat data: ftserve against Hugging Face's ``Trainer``
(its usual padding collator) and TRL's ``SFTTrainer`` with ``padding_free=True``.

Model: SmolLM2-135M's architecture (Llama, hidden 576, 30 layers, 9 heads, 3 key/value heads,
MLP 1536, vocabulary 49,152, tied embeddings), random initial weights, fp32, built from its
config; ``--layers`` trims the depth (``--quick`` uses 4 layers), and the table says which.
Tokenizer: ftserve's byte-level one, so a character is a token.

Data: chat rows (system, user, assistant) whose token lengths are drawn from a log-normal
distribution with median 200 and 95th percentile 1,500 tokens (sigma = ln(7.5) / 1.645), capped
at 2,048, seed 0; about a third of each row is the assistant's answer, the trained tokens.
Every engine gets the same tokenized rows (ftserve's data code), the same global batch
(``--batch`` rows per optimizer step, no gradient accumulation; every engine's step k holds the
same rows, in ftserve's data order), one epoch, seed, ftserve's AdamW and learning-rate
schedule (handed to the HF trainers), gradient clipping, and 1 torch thread, each in a fresh
process.

Timed span: ftserve from its ``on_start`` hook to the last step's ``on_step`` (the step loop;
its checkpoint writes after the last step are excluded, as ``Trainer`` saves nothing here); the
others ``train()`` with saving, evaluation and reporting off. Throughput is trained tokens
(every non-padding token fed to a step) per second.

FLOP/s: the work a step needs, whoever does it: per row of ``n`` tokens with ``k`` trained,
``c·N·n`` for the transformer body (``N`` its weights; ``c`` = 6 for full fine-tuning, 4 for
LoRA, whose frozen weights get no gradient), ``c·d·V·k`` for the output head (only trained
positions need logits) and ``c·L·d·n²/2·2`` for causal attention. Padding, logits nobody
scores and recomputation are not useful work, so an engine that does them shows a lower
fraction. The peak is the best fp32 ``torch.mm`` of 2048x2048 matrices on 1 thread, measured
in the same run.

Memory: each engine's peak resident set (``ru_maxrss``) with and without gradient
checkpointing (on ftserve, through its option when the trainer has one, else enabled on the
model directly).

Usage:
    .venv/bin/python bench/train_throughput.py             # full depth, a few minutes
    .venv/bin/python bench/train_throughput.py --quick     # 4 layers, a smoke run
TRL is optional (``pip install trl==1.16.0 torch==2.13.0``); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEED = 0
MAX_SEQ_LEN = 2048
MEDIAN, P95 = 200, 1500
SIGMA = math.log(P95 / MEDIAN) / 1.645
ARCH = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
# 30 layers take about 4x as long; on 1 shared CPU thread 8 keep the default run to minutes.
DEFAULT_LAYERS = 8
ENGINES = ("ftserve", "ftserve-padded", "hf-trainer", "trl-padding-free")
_LETTERS = "abcdefghijklmnopqrstuvwxyz      "


# -- shared inputs ---------------------------------------------------------------------------------


def lengths(n: int) -> list[int]:
    rng = random.Random(SEED)
    return [
        min(MAX_SEQ_LEN, max(24, round(rng.lognormvariate(math.log(MEDIAN), SIGMA))))
        for _ in range(n)
    ]


def chat_rows(n: int) -> list[dict[str, Any]]:
    """Rows whose rendered length is close to the drawn one (the byte tokenizer's chat template
    adds a few dozen tokens)."""
    rng = random.Random(SEED + 1)
    rows = []
    for total in lengths(n):
        body = max(8, total - 40)
        answer = max(4, body // 3)

        def text(k: int) -> str:
            return "".join(rng.choice(_LETTERS) for _ in range(k))

        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": text(body - answer)},
                    {"role": "assistant", "content": text(answer)},
                ]
            }
        )
    return rows


def build_model(directory: Path, layers: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        **{**ARCH, "num_hidden_layers": layers},
        max_position_embeddings=MAX_SEQ_LEN,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def matmul_peak(seconds: float = 3.0) -> float:
    """Best fp32 FLOP/s of a 2048^3 matmul on the current thread count."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
    return best


@dataclasses.dataclass(frozen=True)
class Job:
    model_dir: str
    data: str
    work: str
    batch: int
    epochs: int
    lora: bool
    checkpointing: bool


def spec_for(job: Job, **changes: Any) -> Any:
    """The one job every engine runs: the HF side resolves its hyperparameters from this same
    spec, so batch size, epochs and learning rate cannot drift apart."""
    from ftserve.training.spec import TrainingSpec

    return TrainingSpec(
        model=job.model_dir,
        training_file=Path(job.data),
        validation_file=None,
        method="supervised",
        n_epochs=job.epochs,
        batch_size=job.batch,
        learning_rate_multiplier=None,
        beta=None,
        seed=SEED,
        work_dir=Path(job.work),
        models_cache_dir=Path(job.work) / "models",
        lora=job.lora,
        torch_threads=1,
        max_seq_len=MAX_SEQ_LEN,
        **changes,
    )


def examples(job: Job) -> list[Any]:
    from transformers import AutoTokenizer

    from ftserve.training.data import load_supervised
    from ftserve.training.trainer import epoch_order

    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    rows = list(load_supervised(Path(job.data), tokenizer, MAX_SEQ_LEN))
    # In ftserve's order for the (single) epoch, which the other engines then read in sequence:
    # every engine's step k trains the same rows, so their first losses agree.
    return [rows[i] for i in epoch_order(SEED, 0, len(rows))]


def useful_flops(job: Job, config: Any, rows: list[Any]) -> float:
    c = 4 if job.lora else 6
    d, layers = config.hidden_size, config.num_hidden_layers
    kv = d * config.num_key_value_heads // config.num_attention_heads
    body = layers * (2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size)
    total = 0.0
    for e in rows:
        n, k = len(e.input_ids), sum(e.target_mask)
        total += c * body * n + c * d * config.vocab_size * k + c * layers * d * n * n
    return total * job.epochs


# -- the engines (each runs in a process of its own) -----------------------------------------------


class _Hooks:
    def __init__(self) -> None:
        self.started = self.last_step = 0.0
        self.losses: list[float] = []

    def on_start(self, hp: Any, resumed_from: Any) -> str:
        self.started = time.perf_counter()
        return "continue"

    def on_step(self, m: Any) -> str:
        self.last_step = time.perf_counter()
        self.losses.append(m.train_loss)
        return "continue"

    def on_checkpoint(self, c: Any) -> str:
        return "continue"

    def on_memory(self, plan: Any, warning: Any) -> None:
        pass


def run_ftserve(job: Job, packing: bool) -> tuple[int, float, list[float]]:
    from ftserve.training import trainer

    changes: dict[str, Any] = {"packing": packing}
    if job.checkpointing:
        changes["gradient_checkpointing"] = True
    hooks = _Hooks()
    result = trainer.train(spec_for(job, **changes), hooks)  # type: ignore[arg-type]
    return result.trained_tokens, hooks.last_step - hooks.started, hooks.losses


def _hf_args(job: Job, hp: Any, **extra: Any) -> dict[str, Any]:
    from ftserve.training import hyperparameters

    spec = spec_for(job)
    return {
        "output_dir": str(Path(job.work) / "hf"),
        "per_device_train_batch_size": job.batch,
        "num_train_epochs": job.epochs,
        "learning_rate": hyperparameters.learning_rate(spec, hp),
        "lr_scheduler_type": "linear",
        "warmup_steps": hyperparameters.warmup_steps(hp.total_steps),
        "weight_decay": 0.0,
        "max_grad_norm": hyperparameters.MAX_GRAD_NORM,
        "seed": SEED,
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": job.checkpointing,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "train_sampling_strategy": "sequential",
        **extra,
    }


def _optimizers(job: Job, model: Any, hp: Any) -> tuple[Any, Any]:
    """ftserve's optimizer and schedule, handed to the HF trainers: their own linear warm-up
    starts at a learning rate of 0, ftserve's at the first warm-up step's, so with their
    defaults step 2 on would differ."""
    import torch

    from ftserve.training import hyperparameters

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=hyperparameters.learning_rate(spec_for(job), hp),
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        fused=True,
    )
    schedule = hyperparameters.LinearWarmupDecay(hp.total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _hf_model(job: Job) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from ftserve.training.lora import attach_lora

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(job.model_dir, dtype=torch.float32)
    return attach_lora(model, spec_for(job)) if job.lora else model


def _train_hf(trainer: Any) -> tuple[float, list[float]]:
    from transformers import PrinterCallback, TrainerCallback

    losses: list[float] = []

    class LossLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer.add_callback(LossLog())
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, losses


def run_hf_trainer(job: Job) -> tuple[int, float, list[float]]:
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftserve.training import hyperparameters

    rows = examples(job)
    features = [
        {
            "input_ids": e.input_ids,
            "attention_mask": [1] * len(e.input_ids),
            "labels": [t if m else -100 for t, m in zip(e.input_ids, e.target_mask, strict=True)],
        }
        for e in rows
    ]
    hp = hyperparameters.resolve(spec_for(job), len(features))
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    args = TrainingArguments(**_hf_args(job, hp, remove_unused_columns=False))
    model = _hf_model(job)
    trainer = Trainer(
        model=model,
        args=args,
        optimizers=_optimizers(job, model, hp),
        train_dataset=features,
        # Trainer's usual collator for causal-LM features with labels: pads to the longest row.
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
    )
    seconds, losses = _train_hf(trainer)
    return sum(len(e.input_ids) for e in rows) * job.epochs, seconds, losses


def run_trl(job: Job) -> tuple[int, float, list[float]]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ftserve.training import hyperparameters

    rows = examples(job)
    # Already tokenized: TRL skips its own tokenization; completion_mask marks trained tokens.
    dataset = Dataset.from_list(
        [
            {"input_ids": e.input_ids, "completion_mask": [int(m) for m in e.target_mask]}
            for e in rows
        ]
    )
    hp = hyperparameters.resolve(spec_for(job), len(rows))
    args = SFTConfig(
        **_hf_args(job, hp),
        padding_free=True,
        completion_only_loss=True,
        max_length=None,  # the rows are cut at MAX_SEQ_LEN already; TRL refuses it padding-free
        shuffle_dataset=False,
    )
    model = _hf_model(job)
    trainer = SFTTrainer(
        model=model,
        args=args,
        optimizers=_optimizers(job, model, hp),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(job.model_dir),
    )
    seconds, losses = _train_hf(trainer)
    return sum(len(e.input_ids) for e in rows) * job.epochs, seconds, losses


def child(engine: str, job: Job) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # The machine is shared: the peak is measured in the same process right before and after
    # the run, so each engine is compared with what the core gave at the time.
    peak_before = matmul_peak()
    if engine == "ftserve":
        tokens, seconds, losses = run_ftserve(job, packing=True)
    elif engine == "ftserve-padded":
        tokens, seconds, losses = run_ftserve(job, packing=False)
    elif engine == "hf-trainer":
        tokens, seconds, losses = run_hf_trainer(job)
    else:
        tokens, seconds, losses = run_trl(job)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = (peak_before + matmul_peak()) / 2
    print(
        json.dumps(
            {
                "tokens": tokens,
                "seconds": seconds,
                "losses": losses,
                "rss_mib": peak_kib / 1024,
                "peak": peak,
            }
        )
    )


# -- the driver ------------------------------------------------------------------------------------


def trl_installed() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("trl") is not None
        and importlib.util.find_spec("datasets") is not None
    )


def spawn(engine: str, job: Job) -> dict[str, Any] | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--job",
        json.dumps(dataclasses.asdict(job)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        print(f"  {engine}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, 8 rows: a smoke run")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="transformer layers")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="rows per optimizer step")
    parser.add_argument("--lora", action="store_true", help="LoRA instead of full fine-tuning")
    parser.add_argument("--no-memory", action="store_true", help="skip the checkpointing runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, Job(**json.loads(options.job)))
        return
    layers = 2 if options.quick else options.layers
    n_rows = 8 if options.quick else options.rows
    batch = 4 if options.quick else options.batch

    import torch
    from transformers import AutoConfig

    torch.set_num_threads(1)
    engines = [e for e in ENGINES if e != "trl-padding-free" or trl_installed()]
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        root = Path(tmp)
        build_model(root / "model", layers)
        data = root / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(n_rows)))

        def job(name: str, checkpointing: bool) -> Job:
            return Job(
                str(root / "model"),
                str(data),
                str(root / name),
                batch,
                1,
                options.lora,
                checkpointing,
            )

        rows = examples(job("probe", False))
        flops = useful_flops(job("probe", False), AutoConfig.from_pretrained(root / "model"), rows)
        results: dict[str, dict[str, Any]] = {}
        for engine in engines:
            outcome = spawn(engine, job(engine, False))
            if outcome is not None:
                results[engine] = outcome
        memory: dict[str, float] = {}
        if not (options.no_memory or options.quick):
            outcome = spawn("ftserve", job("ftserve-gc", True))
            if outcome is not None:
                memory["ftserve"] = outcome["rss_mib"]

    real = [len(e.input_ids) for e in rows]
    real.sort()
    padded = sum(
        max(real_len for real_len in (len(e.input_ids) for e in rows[i : i + batch]))
        * len(rows[i : i + batch])
        for i in range(0, len(rows), batch)
    )
    print(
        f"SmolLM2-135M architecture, {layers} of 30 layers, "
        f"{'LoRA' if options.lora else 'full fine-tune'}, "
        f"fp32, CPU, 1 torch thread; {len(rows)} chat rows, log-normal lengths (median {MEDIAN}, "
        f"p95 {P95}, cap {MAX_SEQ_LEN}): median {real[len(real) // 2]}, max {real[-1]}, "
        f"{sum(real)} tokens ({sum(real) / padded:.0%} of the {padded} a padded batch of "
        f"{batch} computes); batch {batch}, 1 epoch = {math.ceil(len(rows) / batch)} steps"
    )
    print(
        "peak: best fp32 2048^3 matmul on 1 thread, measured in each engine's process before and "
        "after its run (the machine is shared)"
    )
    base = results.get("hf-trainer")
    header = (
        f"{'engine':<17} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs Trainer':>10} "
        f"{'GFLOP/s':>8} {'peak':>6} {'of peak':>8} {'RSS MiB':>8} {'RSS+GC':>7}  loss first->last"
    )
    print(header)
    for engine, r in results.items():
        rate = r["tokens"] / r["seconds"]
        ratio = f"{rate / (base['tokens'] / base['seconds']):.2f}x" if base else "-"
        achieved, peak = flops / r["seconds"], r["peak"]
        gc = f"{memory[engine]:.0f}" if engine in memory else "-"
        losses = r["losses"]
        loss = f"{losses[0]:.4f}->{losses[-1]:.4f}" if losses else "-"
        print(
            f"{engine:<17} {r['tokens']:>7} {r['seconds']:>8.1f} {rate:>9.1f} {ratio:>10} "
            f"{achieved / 1e9:>8.1f} {peak / 1e9:>6.1f} {achieved / peak:>8.1%} "
            f"{r['rss_mib']:>8.0f} {gc:>7}  {loss}"
        )


if __name__ == "__main__":
    main()
