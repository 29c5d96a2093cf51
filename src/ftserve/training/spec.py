"""The seam between the worker and the training engine.

Everything here is plain data so the API process can import it without paying for torch:
the worker builds a :class:`TrainingSpec`, hands it to ``ftserve.training.trainer.train`` in a
child process together with a :class:`TrainingHooks` implementation, and learns about progress
through the hooks, the returned :class:`TrainingResult`, or one of the two exceptions below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ..jobs.method import MethodType as Method
from ..jobs.method import ReasoningEffort

Device = Literal["auto", "cpu", "cuda"]
Control = Literal["continue", "cancel", "pause"]
StopKind = Literal["cancel", "pause"]
CheckpointKind = Literal["epoch", "pause", "eval"]
Quantization = Literal["nf4"]


@dataclass(frozen=True)
class TrainingSpec:
    """One fine-tuning job, as the engine sees it.

    ``None`` in a hyperparameter field means "auto"; the rules live in
    ``ftserve.training.hyperparameters``.

    Sequences longer than ``max_seq_len`` tokens are cut at the end (the start of a conversation
    is kept); an example whose trained tokens were all cut away is dropped, and a job left with no
    usable example fails with ``invalid_training_data``.

    LoRA (``lora=True``) adapts every linear layer of the transformer body (PEFT's
    ``"all-linear"``, which leaves the output head alone) with rank ``lora_rank``, scale
    ``lora_alpha / lora_rank`` and dropout ``lora_dropout``.

    One optimizer step sees ``batch_size`` examples; they are fed to the model in micro-batches
    of at most ``max_tokens_per_micro_batch`` tokens (at least one example each) and the
    gradients are accumulated, so a large batch does not need a large memory.

    Memory (``ftserve.training.memory``): ``None`` in ``gradient_checkpointing`` or
    ``max_tokens_per_micro_batch`` means "auto", planned from the device's free memory;
    ``quantization="nf4"`` loads the frozen base in 4 bits (LoRA only).

    ``packing`` (where the model allows it exactly, see ``ftserve.training.packing``) feeds each
    micro-batch as one row of concatenated examples with attention kept inside each example, so
    no padding is computed and the budget counts real tokens; otherwise rows are padded to the
    longest and the budget counts padded tokens. Either way a step holds the same examples and
    its loss is the same (up to floating-point rounding).
    """

    model: str
    training_file: Path
    validation_file: Path | None
    method: Method
    n_epochs: int | None
    batch_size: int | None
    learning_rate_multiplier: float | None
    beta: float | None
    seed: int
    work_dir: Path
    models_cache_dir: Path
    lora: bool = True
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    device: Device = "auto"
    torch_threads: int = 1
    eval_interval: int | None = None
    max_seq_len: int = 2048
    max_tokens_per_micro_batch: int | None = None
    gradient_checkpointing: bool | None = None
    quantization: Quantization | None = None
    packing: bool = True
    devices: int = 1
    """Processes the job runs as (``ftserve.training.distributed``): each takes its share of
    every step's examples, so the losses are those of one process with the same batch."""
    fsdp: bool | None = None
    """Shard a full fine-tune over its devices (``ftserve.training.fsdp``); ``None``: "auto"."""
    # -- reinforcement jobs (training/rft.py) --
    grader: dict[str, Any] | None = None
    """The job's grader, as checked at creation (``ftserve.graders.schemas``)."""
    response_format: dict[str, Any] | None = None
    """A ``json_schema`` response format every sampled answer follows."""
    compute_multiplier: float | None = None
    eval_samples: int | None = None
    reasoning_effort: ReasoningEffort = "default"
    max_completion_tokens: int | None = None
    """Longest sampled answer, in tokens (``None``: :data:`~.hyperparameters.AUTO_MAX_ANSWER`)."""
    judge_url: str | None = None
    """Where model graders' judges are called: an OpenAI-compatible base URL."""
    judge_api_key: str | None = None
    resume_from: Path | None = None
    """The checkpoint directory to resume from — the one the store lists for the job, never
    one found by looking at the disk. None starts from the base model."""


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None
    total_steps: int
    n_examples: int
    # Reinforcement jobs only (None otherwise): see training/hyperparameters.py.
    compute_multiplier: float | None = None
    eval_interval: int | None = None
    eval_samples: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    samples_per_prompt: int | None = None


@dataclass(frozen=True)
class MemoryPlan:
    """How a job's steps use memory: the resolved ``gradient_checkpointing``,
    ``max_tokens_per_micro_batch`` (which an out-of-memory back-off lowers) and ``fsdp``."""

    gradient_checkpointing: bool
    max_tokens_per_micro_batch: int
    fsdp: bool = False
    """Whether the job's full fine-tune is sharded over its devices (``training/fsdp.py``)."""


@dataclass(frozen=True)
class StepMetrics:
    """Metrics of one optimizer step: the fields ``ftserve.events.metrics.FIELDS`` declares
    (what each means, DPO's included; a test keeps the two equal)."""

    step: int
    total_steps: int
    train_loss: float
    train_mean_token_accuracy: float
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


@dataclass(frozen=True)
class RewardMetrics:
    """Figures of one reinforcement step: ``data`` is its metrics event's ``data``, in OpenAI's
    layout (``ftserve.events.rewards``)."""

    step: int
    total_steps: int
    data: dict[str, Any]


Metrics = StepMetrics | RewardMetrics


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint directory. ``epoch`` is 1-based: the epoch the step belongs to."""

    step: int
    path: Path
    metrics: Metrics
    epoch: int
    kind: CheckpointKind = "epoch"


@dataclass(frozen=True)
class TrainingResult:
    final_path: Path
    trained_tokens: int
    steps: int
    hyperparameters: ResolvedHyperparameters


class TrainingHooks(Protocol):
    """What the trainer tells the outside world, and the outside world's answer.

    Each call records something (the worker's hooks write it to the store, fenced by the
    job's claim) and answers whether to go on: ``"cancel"`` stops at once and drops the step
    just computed; ``"pause"`` saves a checkpoint at that step and stops, so the step's work
    is kept and its metrics are recorded when the job resumes (``on_start`` gets the
    checkpoint back). The trainer asks after every step, before the next one starts.
    """

    def on_start(
        self, hp: ResolvedHyperparameters, resumed_from: CheckpointInfo | None
    ) -> Control: ...

    def on_step(self, m: Metrics) -> Control: ...

    def on_checkpoint(self, c: CheckpointInfo) -> Control: ...

    def on_memory(self, plan: MemoryPlan, warning: str | None) -> None:
        """The memory plan, once before the first step and again whenever an out-of-memory
        back-off changes it; ``warning`` (the first back-off only) is for the job's log. The
        step loop carries on whatever happens here: ``on_step`` gives the next answer."""
        ...


class TrainingStopped(Exception):
    """The job was cancelled or paused through :meth:`TrainingHooks.control`.

    A pause first saves a checkpoint at the current step (``checkpoint``); calling ``train`` again
    with the same spec resumes from it. A cancel saves nothing (``checkpoint`` is ``None``).
    """

    def __init__(self, kind: StopKind, step: int, checkpoint: CheckpointInfo | None = None) -> None:
        super().__init__(f"training {'cancelled' if kind == 'cancel' else 'paused'} at step {step}")
        self.kind: StopKind = kind
        self.step = step
        self.checkpoint = checkpoint


class TrainingFailed(Exception):
    """The job cannot go on; ``code`` is machine-readable, ``message`` is meant for the user.

    Codes: ``model_load_failed``, ``unsupported_model``, ``invalid_training_data``,
    ``nan_loss``, ``out_of_memory``, ``device_unavailable``, ``quantization_unavailable``,
    ``checkpoint_mismatch``. The
    model layer's failures (``ftserve.modeling.errors.ModelFailed``) become this one, code and
    message kept.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
