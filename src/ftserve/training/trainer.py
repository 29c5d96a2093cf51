"""The training loop: ``train(spec, hooks)`` runs (or resumes) one fine-tuning job.

Why a loop of our own rather than Hugging Face's ``Trainer``: the worker needs a callback and a
cancel/pause decision after every optimizer step, a checkpoint that captures the exact position
inside an epoch (so a resumed run reproduces an uninterrupted one step for step), checkpoints
written atomically in a layout we control, and failures reported as typed errors rather than
logged. ``Trainer`` can be bent towards each of these, but its resume skips data through its own
sampler state, its checkpoints are not atomic, and its per-step machinery (callbacks, logging,
accelerate wrapping) costs time on small models; a plain loop over AdamW is shorter than the
adaptations would be, and ``bench/train_throughput.py`` measures it against ``Trainer``.

One step: the step's examples (``batch_size`` of them, the last batch of an epoch may be smaller)
are taken from a permutation of the training set drawn from ``(seed, epoch)``, so a resumed run
can recompute the order without saved sampler state; forward and backward run in micro-batches;
gradients are clipped to norm 1.0; AdamW steps; the learning rate follows a linear warm-up and
decay (see ``ftserve.training.hyperparameters``).

After every step: validation metrics when due (every ``eval_interval`` steps on a fixed batch:
the first ``max(batch_size, 8)`` validation examples; at the last step also on the whole file),
``hooks.on_step`` (whose answer says whether to go on), and an epoch checkpoint at the end of
each epoch. The trainer resumes from the checkpoint the spec names and never deletes one:
which checkpoints a job keeps is decided where they are recorded (the worker's hooks).

Determinism: the seed fixes the LoRA initialisation, the data order and dropout; the same spec on
the same machine gives bit-identical losses on CPU. Resuming restores weights, optimizer,
scheduler and RNG states, so a paused-and-resumed run reports the same losses as one that never
stopped. On CUDA, kernels may be non-deterministic; the run is then reproducible only up to
floating-point noise.

``trained_tokens`` counts every token (prompt and trained) of every sequence fed to a training
step over all epochs, padding excluded; for DPO both answers of a pair count.
"""

from __future__ import annotations

import os

# The worker's child process imports this module first; make sure nothing reaches for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import contextlib
import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ftserve.modeling.device import resolve_device
from ftserve.modeling.errors import ModelFailed
from ftserve.modeling.loading import freeze, frozen_copy, load_model, load_tokenizer
from ftserve.modeling.sources import materialize
from ftserve.training import checkpointing, distributed, fsdp, hyperparameters, memory
from ftserve.training.checkpointing import StoredCheckpoint
from ftserve.training.data import Example, PreferencePair, load_preference, load_supervised
from ftserve.training.dpo import DpoObjective
from ftserve.training.forward import supports_logits_mask
from ftserve.training.grpo import GrpoObjective, Scored
from ftserve.training.lora import attach_lora
from ftserve.training.objective import Objective, Outcome
from ftserve.training.packing import supports_packing
from ftserve.training.rft import Prompt, load_prompts
from ftserve.training.sft import SupervisedObjective
from ftserve.training.spec import (
    CheckpointInfo,
    CheckpointKind,
    MemoryPlan,
    Metrics,
    ResolvedHyperparameters,
    StepMetrics,
    TrainingFailed,
    TrainingHooks,
    TrainingResult,
    TrainingSpec,
    TrainingStopped,
)

MIN_VALIDATION_BATCH = 8


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The data order of 0-based ``epoch``: a permutation that depends on nothing else."""
    digest = hashlib.sha256(f"ftserve-data-order:{seed}:{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def auto_eval_interval(total_steps: int) -> int:
    return max(1, round(total_steps / 10))


def _fingerprint(spec: TrainingSpec, hp: ResolvedHyperparameters) -> dict[str, Any]:
    fingerprint = {
        "model": spec.model,
        "method": spec.method,
        "lora": spec.lora,
        "lora_rank": spec.lora_rank if spec.lora else None,
        "lora_alpha": spec.lora_alpha if spec.lora else None,
        "seed": spec.seed,
        "max_seq_len": spec.max_seq_len,
        "hyperparameters": asdict(hp),
    }
    if spec.quantization is not None:
        # Only when set, so checkpoints written before the option existed still match.
        fingerprint["quantization"] = spec.quantization
    return fingerprint


def _unit_tokens(item: Any) -> int:
    """Padded tokens of the smallest micro-batch holding ``item`` (a DPO pair is two rows)."""
    if isinstance(item, Scored):
        return len(item.example.input_ids)
    if isinstance(item, PreferencePair):
        return 2 * max(len(item.chosen.input_ids), len(item.rejected.input_ids))
    return len(item.input_ids)


_FIT_ADVICE = (
    "lower ftserve.max_seq_len, set ftserve.gradient_checkpointing to true, use "
    "ftserve.quantization 'nf4' with adapter 'lora', or choose a smaller model"
)


class _Job:
    """Everything one ``train`` call sets up, and the step loop."""

    def __init__(self, spec: TrainingSpec, hooks: TrainingHooks) -> None:
        self.spec = spec
        self.hooks = hooks
        self.choice = resolve_device(spec.device)
        self.model_dir = materialize(spec.model, spec.models_cache_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.train_items, self.valid_items = self._load_data()
        self.hp = hyperparameters.resolve(spec, len(self.train_items))
        self.fingerprint = _fingerprint(spec, self.hp)
        self.eval_interval = spec.eval_interval or auto_eval_interval(self.hp.total_steps)
        self.steps_per_epoch = math.ceil(self.hp.n_examples / self.hp.batch_size)

        checkpointing.remove_stale_temporaries(spec.work_dir)
        self.resume_from = self._resume_point()
        if self.resume_from is not None and self.resume_from.fingerprint != self.fingerprint:
            raise TrainingFailed(
                "checkpoint_mismatch",
                f"The checkpoint {self.resume_from.info.path} was written by a job with different "
                "settings or data; remove it to start over.",
            )
        self.model, reference = self._build_model()
        rank = distributed.current()
        autocast = self.choice.autocast_dtype is not None
        self.fsdp = fsdp.choose(spec, rank, self.model, autocast)
        if self.fsdp:
            fsdp.shard(self.model)  # each layer's shards are moved to this rank's device
        elif fsdp.loads_on_cpu(spec, self.choice.device):
            self.model.to(self.choice.device)
        if reference is not None and fsdp.loads_on_cpu(spec, self.choice.device):
            reference.to(self.choice.device)
        self.plan = self._plan_memory()
        if self.plan.gradient_checkpointing:
            memory.enable_gradient_checkpointing(self.model)
        self.optimizer, self.scheduler = self._build_optimizer()
        # On several devices each rank takes its share of every step (distributed.py, fsdp.py).
        inner = self._build_objective(reference)
        pad_id = self.tokenizer.pad_token_id
        self.objective: Objective
        if self.fsdp and rank is not None:
            # A reinforcement job runs on one device (job creation refuses more).
            assert not isinstance(inner, GrpoObjective)
            self.objective = fsdp.ShardedModelObjective(
                inner, self.model, rank, probe_id=pad_id, autocast=self._autocast
            )
        else:
            self.objective = distributed.sharded(inner, self.model, pad_id, self._autocast)
        self.backed_off = False
        self.trained_tokens = 0
        self.current_step = 0
        self.last_metrics: Metrics | None = None
        if self.resume_from is not None:
            self._restore(self.resume_from)

    def _resume_point(self) -> StoredCheckpoint | None:
        if self.spec.resume_from is None:
            return None
        try:
            return checkpointing.read_checkpoint(self.spec.resume_from)
        except FileNotFoundError as exc:
            raise TrainingFailed(
                "checkpoint_missing",
                f"The job's last checkpoint cannot be read ({exc}); it cannot resume.",
            ) from exc

    def _load_data(self) -> tuple[list[Any], list[Any]]:
        spec = self.spec
        load: Callable[..., Sequence[Example] | Sequence[PreferencePair] | Sequence[Prompt]]
        if spec.method == "reinforcement":
            load = load_prompts
        else:
            load = load_preference if spec.method == "dpo" else load_supervised
        train_items = list(load(spec.training_file, self.tokenizer, spec.max_seq_len))
        valid_items: list[Any] = []
        if spec.validation_file is not None:
            valid_items = list(
                load(
                    spec.validation_file,
                    self.tokenizer,
                    spec.max_seq_len,
                    what="validation file",
                )
            )
        return train_items, valid_items

    def _build_model(self) -> tuple[Any, Any | None]:
        spec = self.spec
        if spec.quantization is not None and not spec.lora:
            raise TrainingFailed(
                "unsupported_model",
                "A quantized base model can only be trained with a LoRA adapter; set "
                "ftserve.adapter to 'lora' or ftserve.quantization to null.",
            )
        # Seeding before loading fixes the LoRA initialisation (and anything else drawn at load).
        random.seed(spec.seed)
        torch.manual_seed(spec.seed)
        checkpoint = self.resume_from
        resume_full = checkpoint is not None and not spec.lora
        source = checkpoint.info.path if checkpoint is not None and resume_full else self.model_dir
        # A model that may be sharded is loaded into CPU memory: it need not fit one device.
        choice = self.choice
        if fsdp.loads_on_cpu(spec, choice.device):
            choice = dataclasses.replace(choice, device=torch.device("cpu"))
        model = load_model(source, choice, frozen_base=spec.lora, quantization=spec.quantization)
        reference: Any | None = None
        if spec.method in ("dpo", "reinforcement") and not spec.lora:
            # Loaded like the trained model (fp32), so a resumed run scores exactly as before.
            reference = (
                freeze(load_model(self.model_dir, choice, frozen_base=False))
                if resume_full
                else frozen_copy(model)
            )
        if spec.lora:
            model = attach_lora(model, spec)
            if self.resume_from is not None:
                self._load_adapter(model, self.resume_from.info.path)
        model.train()
        return model, reference

    @staticmethod
    def _load_adapter(model: Any, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(path / "adapter_model.safetensors")
        result: Any = set_peft_model_state_dict(model, weights)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise TrainingFailed(
                "checkpoint_mismatch",
                f"The adapter in {path} does not match the model (missing {missing[:3]}, "
                f"unexpected {list(result.unexpected_keys)[:3]}).",
            )

    def _largest_step_tokens(self) -> int:
        """The most tokens one step may feed the model (what the memory plan must fit)."""
        return max(_unit_tokens(item) for item in self.train_items) * self.hp.batch_size

    def _plan_memory(self) -> MemoryPlan:
        free = memory.free_bytes(self.choice.device)
        autocast = self.choice.autocast_dtype is not None
        if free is not None:
            rank = distributed.current()
            shards = rank.world if self.fsdp and rank is not None else 1
            free -= memory.optimizer_bytes(self.model, autocast) // shards
        compute_bytes = 2 if autocast else 4
        plan = memory.plan(
            gradient_checkpointing=self.spec.gradient_checkpointing,
            max_tokens=self.spec.max_tokens_per_micro_batch,
            free_bytes=None if free is None else max(0, free),
            cost=memory.activation_cost(self.model.config, compute_bytes),
            largest_step_tokens=self._largest_step_tokens(),
        )
        return dataclasses.replace(plan, fsdp=self.fsdp)

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=hyperparameters.learning_rate(self.spec, self.hp),
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            fused=True,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, hyperparameters.LinearWarmupDecay(self.hp.total_steps)
        )
        return optimizer, scheduler

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.choice.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.choice.autocast_dtype)

    def _build_objective(
        self, reference: Any | None
    ) -> SupervisedObjective | DpoObjective | GrpoObjective:
        common: dict[str, Any] = {
            "pad_id": self.tokenizer.pad_token_id,
            "device": self.choice.device,
            "autocast": self._autocast,
            "max_tokens": self.plan.max_tokens_per_micro_batch,
            "use_logits_mask": supports_logits_mask(self.model),
            "packing": self.spec.packing and supports_packing(self.model),
        }
        if self.spec.method == "dpo":
            assert self.hp.beta is not None
            return DpoObjective(self.model, reference=reference, beta=self.hp.beta, **common)
        if self.spec.method == "reinforcement":
            del common["packing"]  # sampled answers are short rows: padded, not packed
            return GrpoObjective(self.model, reference=reference, **common)
        return SupervisedObjective(self.model, **common)

    def _restore(self, checkpoint: StoredCheckpoint) -> None:
        state = checkpointing.load_training_state(checkpoint)
        if self.fsdp:
            fsdp.load_optimizer(self.model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        checkpointing.restore_rng_state(state["rng"])
        self.trained_tokens = checkpoint.trained_tokens
        self.last_metrics = checkpoint.info.metrics

    def _backing_off(self, step: int, items: Sequence[Any], run: Callable[[], Outcome]) -> Outcome:
        """``run()``, retried with a halved micro-batch budget after an out-of-memory error
        (see ``ftserve.training.memory``); the random state is rewound for each retry."""
        rng = checkpointing.rng_state(self.choice.device)
        while True:
            try:
                return run()
            except Exception as exc:
                # A rank that retried alone would leave the others waiting in their collective:
                # on several devices an out-of-memory error ends the run (the job fails, naming
                # the options that fit it).
                if not memory.is_out_of_memory(exc) or distributed.current() is not None:
                    raise
                error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            # Outside the except block: the failed attempt's tensors, which its traceback
            # holds, are gone before the retry allocates again.
            self.optimizer.zero_grad(set_to_none=True)
            memory.release_cached(self.choice.device)
            old = self.objective.max_tokens
            new = memory.smaller_budget(self.objective, items)
            if new is None:
                longest = max(_unit_tokens(item) for item in items)
                raise TrainingFailed(
                    "out_of_memory",
                    f"Out of memory at step {step} even with one example per micro-batch (the "
                    f"longest has {longest} tokens): {error}. To fit, {_FIT_ADVICE}.",
                )
            self.plan = dataclasses.replace(self.plan, max_tokens_per_micro_batch=new)
            warning = None
            if not self.backed_off:
                self.backed_off = True
                warning = (
                    f"Out of memory at step {step} with micro-batches of up to {old} tokens; "
                    f"the step is retried, and the job goes on, with up to {new} "
                    "(ftserve.max_tokens_per_micro_batch)."
                )
            self.hooks.on_memory(self.plan, warning)
            checkpointing.restore_rng_state(rng)

    def _step(self, step: int, items: Sequence[Any]) -> Outcome:
        outcome = self._backing_off(step, items, lambda: self.objective.train_step(items))
        if not math.isfinite(outcome.loss):
            raise TrainingFailed(
                "nan_loss",
                f"Training loss became {outcome.loss} at step {step}; the learning rate "
                "(learning_rate_multiplier) is probably too high for this model and data.",
            )
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # A sharded model's gradients are DTensors: the norm is the whole gradient's.
        norm = fsdp.whole(torch.nn.utils.clip_grad_norm_(params, hyperparameters.MAX_GRAD_NORM))
        if not math.isfinite(norm):
            raise TrainingFailed(
                "nan_loss",
                f"Training loss became NaN at step {step}: the gradient norm is {float(norm)}; "
                "the learning rate (learning_rate_multiplier) is probably too high.",
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return outcome

    def _evaluate(self, items: Sequence[Any]) -> Outcome:
        self.model.eval()
        try:
            return self._backing_off(
                self.current_step, items, lambda: self.objective.evaluate(items)
            )
        finally:
            self.model.train()

    def _metrics(self, step: int, outcome: Outcome) -> Metrics:
        last = step == self.hp.total_steps
        valid = full = None
        # Only the rank that reports evaluates (every rank of a sharded model takes part).
        due = step % self.eval_interval == 0 or last
        if self.valid_items and due and (distributed.is_main() or self.fsdp):
            fixed = self.valid_items[: max(self.hp.batch_size, MIN_VALIDATION_BATCH)]
            valid = self._evaluate(fixed)
            if last:
                covers_all = len(fixed) == len(self.valid_items)
                full = valid if covers_all else self._evaluate(self.valid_items)
        return StepMetrics(
            step=step,
            total_steps=self.hp.total_steps,
            train_loss=outcome.loss,
            train_mean_token_accuracy=outcome.accuracy,
            valid_loss=valid.loss if valid else None,
            valid_mean_token_accuracy=valid.accuracy if valid else None,
            full_valid_loss=full.loss if full else None,
            full_valid_mean_token_accuracy=full.accuracy if full else None,
        )

    def _checkpoint(self, kind: CheckpointKind, step: int) -> CheckpointInfo:
        assert self.last_metrics is not None
        epoch, batch_index = divmod(step - 1, self.steps_per_epoch)
        # A sharded model's state is gathered by every rank, to rank 0.
        full = fsdp.gather(self.model, self.optimizer) if self.fsdp else None
        if not distributed.is_main():  # rank 0 writes the job's files; the others only ask
            path = checkpointing.checkpoints_root(self.spec.work_dir) / f"step-{step:06d}"
            return CheckpointInfo(step, path, self.last_metrics, epoch + 1, kind)
        stored = checkpointing.save_checkpoint(
            self.spec.work_dir,
            kind=kind,
            epoch=epoch + 1,
            batches_done_in_epoch=batch_index + 1,
            trained_tokens=self.trained_tokens,
            metrics=self.last_metrics,
            fingerprint=self.fingerprint,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            device=self.choice.device,
            model_state=full.model if full else None,
            optimizer_state=full.optimizer if full else None,
        )
        return stored.info

    def _checkpoint_due(self, step: int, batch_index: int) -> CheckpointKind | None:
        """Whether ``step`` ends with a checkpoint of its own, and its kind: epoch ends."""
        return "epoch" if batch_index == self.steps_per_epoch - 1 else None

    def run(self) -> TrainingResult:
        resumed = self.resume_from.info if self.resume_from is not None else None
        start = resumed.step if resumed is not None else 0
        control = self.hooks.on_start(self.hp, resumed)
        if control != "continue":
            # Stopped before any step: nothing new to keep (a pause resumes from `resumed`).
            raise TrainingStopped(control, start, resumed if control == "pause" else None)
        self.hooks.on_memory(self.plan, None)
        order: list[int] = []
        order_epoch = -1
        for step in range(start + 1, self.hp.total_steps + 1):
            epoch, batch_index = divmod(step - 1, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.spec.seed, epoch, self.hp.n_examples), epoch
            chosen = order[
                batch_index * self.hp.batch_size : (batch_index + 1) * self.hp.batch_size
            ]
            self.current_step = step
            outcome = self._step(step, [self.train_items[i] for i in chosen])
            self.trained_tokens += outcome.n_tokens
            self.last_metrics = self._metrics(step, outcome)
            # The step's metrics are recorded (or refused) before the next step starts, so a
            # stop request lands at most one step late and nothing is logged after it.
            control = self.hooks.on_step(self.last_metrics)
            due = self._checkpoint_due(step, batch_index)
            if control == "cancel":
                raise TrainingStopped("cancel", step)
            checkpoint: CheckpointInfo | None = None
            if due is not None or control == "pause":
                # A pause keeps the step it refused: its checkpoint holds the step's work and
                # metrics, which are recorded when the job resumes.
                checkpoint = self._checkpoint(due or "pause", step)
                answer = self.hooks.on_checkpoint(checkpoint)
                if control == "continue" or answer == "cancel":
                    control = answer
            if control == "cancel":
                raise TrainingStopped("cancel", step)
            if control == "pause":
                raise TrainingStopped("pause", step, checkpoint)
            if control != "continue":
                raise ValueError(f"the hooks answered {control!r}")
        return self._finish()

    def _finish(self) -> TrainingResult:
        spec = self.spec
        final = spec.work_dir / checkpointing.FINAL_DIR
        description = {
            "base_model": spec.model,
            "base_model_path": str(self.model_dir),
            "lora": spec.lora,
            "lora_rank": spec.lora_rank if spec.lora else None,
            "lora_alpha": spec.lora_alpha if spec.lora else None,
            # The adapter was trained over this quantization of the base.
            "quantization": spec.quantization,
            "method": spec.method,
            "hyperparameters": asdict(self.hp),
            "trained_tokens": self.trained_tokens,
            "steps": self.hp.total_steps,
        }

        full = fsdp.gather(self.model, None) if self.fsdp else None

        def fill(directory: Path) -> None:
            self.model.save_pretrained(directory, state_dict=full.model if full else None)
            self.tokenizer.save_pretrained(directory)
            (directory / checkpointing.FINAL_META_FILE).write_text(
                json.dumps(description, indent=2), encoding="utf-8"
            )

        if distributed.is_main():
            checkpointing.write_atomically(final, fill)
        return TrainingResult(
            final_path=final,
            trained_tokens=self.trained_tokens,
            steps=self.hp.total_steps,
            hyperparameters=self.hp,
        )


def train(spec: TrainingSpec, hooks: TrainingHooks) -> TrainingResult:
    """Run the job described by ``spec``, resuming from its newest checkpoint if there is one.

    Raises :class:`TrainingStopped` on cancel/pause and :class:`TrainingFailed` when the job
    cannot succeed; anything else is a bug and propagates unchanged.
    """
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(max(1, spec.torch_threads))
    # Progress bars from model loading/saving would only clutter the worker's log.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    job: _Job | None = None
    try:
        if spec.method == "reinforcement":
            from ftserve.training.rft_job import RftJob

            job = RftJob(spec, hooks)
        else:
            job = _Job(spec, hooks)
        return job.run()
    except ModelFailed as exc:
        # The model layer's failure is the job's: the worker records its code and message.
        raise TrainingFailed(exc.code, exc.message) from exc
    except Exception as exc:
        if not memory.is_out_of_memory(exc):
            raise
        where = f"at step {job.current_step}" if job and job.current_step else "while loading"
        advice = (
            _FIT_ADVICE if spec.lora else f"use adapter 'lora' instead of 'full', {_FIT_ADVICE}"
        )
        raise TrainingFailed(
            "out_of_memory",
            f"Out of memory {where} ({str(exc)[:300]}). To fit, {advice}.",
        ) from exc
