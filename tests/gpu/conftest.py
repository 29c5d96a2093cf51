"""The CUDA checks: tests marked ``gpu``, skipped where no CUDA device is.

They run on a lent GPU machine, whose Python has the training engine but not the server's
dependencies (no httpx2, openai, orjson: see bench/gpu_check.sh), so this folder is run on its
own, without tests/conftest.py: ``PYTHONPATH=src pytest --confcutdir=tests/gpu tests/gpu``.
Nothing here or in these tests may import that conftest or the server's modules; the models are
built from configs (no hub there either) and trained through the trainer directly.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch


def cuda_available() -> bool:
    """Without initialising CUDA in a process that has not (is_available does not)."""
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test marked ``gpu`` (here or elsewhere) is skipped without a CUDA device."""
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir for the built-in ftserve-tiny (built on first use)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Qwen2 (the architecture of the 0.5B benchmark: biased q/k/v projections,
    grouped-query attention, tied embeddings), random weights, ftserve-tiny's byte tokenizer and
    chat template (its generation markers give assistant-only labels)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("qwen2")
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
