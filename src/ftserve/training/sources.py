"""Turning a model source string into a Hugging Face directory on disk.

A source is what the registry resolved a ``model`` to: ``ftserve-tiny`` (built from its config
into the models dir), an absolute Hugging Face directory, or ``gguf:/abs/file.gguf`` (a GGUF file,
converted once into the models dir and cached there). Training children and the inference
process both load through here, so both see the same weights, tokenizer and chat template.
"""

from __future__ import annotations

from pathlib import Path

from ftserve.training.spec import TINY_MODEL_NAME, TrainingFailed

GGUF_PREFIX = "gguf:"


def materialize(source: str, models_dir: Path) -> Path:
    if source == TINY_MODEL_NAME:
        from ftserve.training.tiny_model import ensure_tiny_model

        try:
            return ensure_tiny_model(models_dir)
        except OSError as exc:
            raise TrainingFailed(
                "model_load_failed", f"Could not build {TINY_MODEL_NAME} in {models_dir}: {exc}"
            ) from exc
    if source.startswith(GGUF_PREFIX):
        from ftserve.training.gguf import converted

        return converted(Path(source[len(GGUF_PREFIX) :]), models_dir)
    path = Path(source)
    if not path.is_absolute():
        raise TrainingFailed(
            "model_load_failed",
            f"Model {source!r} is neither {TINY_MODEL_NAME!r}, a GGUF file nor an absolute path "
            "to a Hugging Face model directory.",
        )
    if not (path / "config.json").is_file():
        raise TrainingFailed(
            "model_load_failed", f"Model directory {path} does not exist or has no config.json."
        )
    return path
