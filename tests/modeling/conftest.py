"""Fixtures of the model layer's tests, shared with the training tests."""

from __future__ import annotations

import os

# No hub on these machines; fail fast instead of trying one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding ftserve-tiny, built once per session."""
    from ftserve.modeling.tiny_model import ensure_tiny_model

    cache = tmp_path_factory.mktemp("models")
    ensure_tiny_model(cache)
    return cache
