"""GGUF sources: a file that is not a model fails with a message naming it, and leaves nothing
half-written in the models dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftserve.modeling.errors import ModelFailed
from ftserve.modeling.sources import materialize


def test_a_broken_gguf_file_fails_clearly_and_leaves_no_cache(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    models = tmp_path / "models"
    with pytest.raises(ModelFailed, match="Could not convert the GGUF file") as info:
        materialize(f"gguf:{broken}", models)
    assert info.value.code == "model_load_failed"
    leftovers = [p.name for p in (models / "gguf").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_missing_gguf_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFailed, match="does not exist"):
        materialize(f"gguf:{tmp_path / 'nope.gguf'}", tmp_path / "models")
