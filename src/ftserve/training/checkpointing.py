"""Checkpoints under ``<work_dir>/checkpoints`` and the final model under ``<work_dir>/final``.

A checkpoint directory ``step-000123`` holds:

* the weights: the LoRA adapter in PEFT format (``adapter_config.json`` +
  ``adapter_model.safetensors``, loadable with ``PeftModel.from_pretrained``) or, for full
  fine-tuning, the whole model as a Hugging Face directory;
* the tokenizer (including the chat template the job used);
* ``training_state.pt``: optimizer and scheduler state and the RNG states (torch CPU, CUDA when in
  use, Python ``random``), loadable with ``torch.load(weights_only=True)``;
* ``ftserve_checkpoint.json``: the training position (step, epoch, batches done in that epoch,
  trained tokens so far), the step's metrics, the kind (``epoch`` or ``pause``) and a fingerprint
  of the job, so a resume with a different spec or data is refused instead of silently mixing.

Every directory is written under a ``.tmp-…`` name, flushed to disk and renamed into place, so a
directory with a final name is always complete and a crash leaves at most a ``.tmp-…`` directory,
which the next run deletes. A directory is only a candidate: it becomes the job's checkpoint
when the store commits a row naming it under the job's current claim (the worker's hooks do
that), and the same hooks decide retention and delete what falls out of it — this module never
deletes a checkpoint, and never looks at the disk to decide where to resume.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ftserve.training.spec import (
    CheckpointInfo,
    CheckpointKind,
    Metrics,
    RewardMetrics,
    StepMetrics,
)

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
STATE_FILE = "training_state.pt"
META_FILE = "ftserve_checkpoint.json"
FINAL_META_FILE = "ftserve.json"
_PREFIX = "step-"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredCheckpoint:
    info: CheckpointInfo
    kind: CheckpointKind
    batches_done_in_epoch: int
    trained_tokens: int
    fingerprint: dict[str, Any]


def checkpoints_root(work_dir: Path) -> Path:
    return work_dir / CHECKPOINTS_DIR


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, fill: Any) -> None:
    """Create directory ``target`` by calling ``fill(tmp_dir)`` and renaming the result into
    place. An existing ``target`` is replaced (moved aside first, then deleted)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        fill(staging)
        _fsync_tree(staging)
        old: Path | None = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}old-", dir=target.parent))
            os.rename(target, old / target.name)
        os.rename(staging, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_stale_temporaries(work_dir: Path) -> None:
    """Delete half-written directories a crashed run left behind."""
    for parent in (work_dir, checkpoints_root(work_dir)):
        if parent.is_dir():
            for child in parent.iterdir():
                if child.name.startswith(_TMP_PREFIX):
                    shutil.rmtree(child, ignore_errors=True)


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    work_dir: Path,
    *,
    kind: CheckpointKind,
    epoch: int,
    batches_done_in_epoch: int,
    trained_tokens: int,
    metrics: Metrics,
    fingerprint: dict[str, Any],
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> StoredCheckpoint:
    """``model_state`` and ``optimizer_state``: the full states gathered from a sharded model
    (``fsdp.gather``), written as ``model`` and ``optimizer`` would write their own."""
    target = checkpoints_root(work_dir) / f"{_PREFIX}{metrics.step:06d}"
    meta = {
        "step": metrics.step,
        "epoch": epoch,
        "batches_done_in_epoch": batches_done_in_epoch,
        "trained_tokens": trained_tokens,
        "kind": kind,
        "metrics": asdict(metrics),
        "fingerprint": fingerprint,
    }

    def fill(directory: Path) -> None:
        model.save_pretrained(directory, state_dict=model_state)
        tokenizer.save_pretrained(directory)
        torch.save(
            {
                "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(device),
            },
            directory / STATE_FILE,
        )
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    write_atomically(target, fill)
    return _parse(target, meta)


def _metrics(raw: dict[str, Any]) -> Metrics:
    # A reinforcement step's figures are one ``data`` object (events/rewards.py).
    return RewardMetrics(**raw) if "data" in raw else StepMetrics(**raw)


def _parse(path: Path, meta: dict[str, Any]) -> StoredCheckpoint:
    return StoredCheckpoint(
        info=CheckpointInfo(
            step=int(meta["step"]),
            path=path,
            metrics=_metrics(meta["metrics"]),
            epoch=int(meta["epoch"]),
            kind=meta["kind"],
        ),
        kind=meta["kind"],
        batches_done_in_epoch=int(meta["batches_done_in_epoch"]),
        trained_tokens=int(meta["trained_tokens"]),
        fingerprint=dict(meta["fingerprint"]),
    )


def read_checkpoint(path: Path) -> StoredCheckpoint:
    """The checkpoint in directory ``path`` (one the store lists for the job)."""
    meta_file = path / META_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"{path} is not a complete checkpoint: {exc}") from exc
    return _parse(path, meta)


def load_training_state(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(
        checkpoint.info.path / STATE_FILE, map_location="cpu", weights_only=True
    )
    return state
