"""The engine harness the engine tests share: tiny config-built models (base, LoRA adapters, a
full fine-tune), a Harness that runs requests through an Engine in this process, and
``model.generate`` references."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.inference.engine import Engine
from ftserve.inference.protocol import (
    ChatPrompt,
    EngineSettings,
    Finished,
    FromInference,
    Generate,
    Piece,
    Sampling,
    ServedModel,
)
from ftserve.modeling.loading import load_tokenizer
from ftserve.modeling.sources import materialize

TINY = ServedModel("ftserve-tiny", "base", "ftserve-tiny")
CHAT = ChatPrompt(({"role": "user", "content": "Say something nice."},))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inference-models")
    materialize("ftserve-tiny", path)
    return path


@pytest.fixture(scope="session")
def tiny_dir(models_dir: Path) -> Path:
    return materialize("ftserve-tiny", models_dir)


def make_adapter(base_dir: Path, target: Path, seed: int) -> Path:
    """A LoRA adapter with seeded random weights (B is not zero, so it changes the output)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=8,
        lora_alpha=32,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft probes a transformers attribute that transformers 5 deprecates.
        warnings.simplefilter("ignore", FutureWarning)
        peft = get_peft_model(model, config)
    peft.save_pretrained(target)
    load_tokenizer(base_dir).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def adapters(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(tiny_dir, root / f"lora{i}", seed=100 + i) for i in range(3)]


@pytest.fixture(scope="session")
def full_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    torch.manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    target = tmp_path_factory.mktemp("full")
    model.save_pretrained(target)
    load_tokenizer(tiny_dir).save_pretrained(target)
    return target


def lora(path: Path, name: str = "ft:lora") -> ServedModel:
    return ServedModel(name, "lora", "ftserve-tiny", str(path))


class Harness:
    def __init__(self, models_dir: Path, **settings: Any):
        self.out: list[FromInference] = []
        self.engine = Engine(
            EngineSettings(models_dir=str(models_dir), **settings), self.out.append
        )

    def submit(self, rid: str, model: ServedModel, prompt: Any, **sampling: Any) -> None:
        with torch.inference_mode():
            self.engine.submit(Generate(rid, model, prompt, Sampling(**sampling)))

    def step(self, times: int = 1) -> None:
        with torch.inference_mode():
            for _ in range(times):
                self.engine.run_once()

    def drain(self) -> None:
        with torch.inference_mode():
            while self.engine.busy:
                self.engine.run_once()

    def of(self, rid: str) -> list[FromInference]:
        return [m for m in self.out if m.request_id == rid]

    def pieces(self, rid: str, index: int = 0) -> list[Piece]:
        return [m for m in self.of(rid) if isinstance(m, Piece) and m.index == index]

    def text(self, rid: str, index: int = 0) -> str:
        return "".join(p.text for p in self.pieces(rid, index))

    def finished(self, rid: str) -> list[Finished]:
        return [m for m in self.of(rid) if isinstance(m, Finished)]

    def one(self, rid: str, model: ServedModel, prompt: Any, **sampling: Any) -> str:
        self.submit(rid, model, prompt, **sampling)
        self.drain()
        return self.text(rid)


@pytest.fixture
def harness(models_dir: Path) -> Harness:
    return Harness(models_dir)


def reference(
    model_dir: Path, prompt_ids: Sequence[int], max_new: int, adapter: Path | None = None
) -> list[int]:
    """What ``model.generate`` produces greedily (stopping where the engine stops)."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter is not None:
        from peft import PeftModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ids = torch.tensor([list(prompt_ids)])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
    return [int(t) for t in out[0, ids.shape[1] :]]


def chat_ids(tokenizer: Any, prompt: ChatPrompt) -> list[int]:
    text = tokenizer.apply_chat_template(
        list(prompt.messages), add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def generated_tokens(h: Harness, rid: str, index: int = 0) -> list[str]:
    return [p.logprob.token for p in h.pieces(rid, index) if p.logprob is not None]


def generated_bytes(h: Harness, rid: str, index: int = 0) -> list[tuple[int, ...] | None]:
    return [p.logprob.bytes for p in h.pieces(rid, index) if p.logprob is not None]


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


PROMPTS = ["Hello", "The quick brown fox jumps", "a", "Once upon a time, in a land far away,"]
