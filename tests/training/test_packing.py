"""Padding-free packing: a packed job reports the unpacked job's losses step for step.

Jobs run on ftserve-tiny (and a grouped-query Llama) in fp32 on CPU with rows of 5 to 1,000
tokens, once with packing (the default) and once with ``packing=False``; each step's loss must
agree to a relative 1e-4. A spy on :func:`~ftserve.training.batching.pack` proves the packed run
really packed, so the comparison cannot pass by running the padded path twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.training import batching, dpo, sft
from ftserve.training.spec import TrainingSpec, TrainingStopped
from ftserve.training.trainer import train
from tests.training.training_helpers import Recorder, make_spec, respec, write_jsonl

RELATIVE = 1e-4
PEFT_DEPRECATION = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghij klmnop") for _ in range(n))


def varied_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Prompt/completion rows whose byte-level lengths run from 5 to about 1,000 tokens
    (log-uniform, the shortest and the longest always present)."""
    rng = random.Random(seed)
    sizes = [3, 990] + [round(3 * (330 ** rng.random())) for _ in range(n - 2)]
    rng.shuffle(sizes)
    rows = []
    for size in sizes:
        prompt = max(1, size // 3)
        rows.append({"prompt": _text(rng, prompt), "completion": _text(rng, size - prompt + 1)})
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = _text(rng, round(2 * (150 ** rng.random())))
        rows.append(
            {
                "input": {"messages": [{"role": "user", "content": prompt}]},
                "preferred_output": [
                    {"role": "assistant", "content": _text(rng, rng.randint(1, 300))}
                ],
                "non_preferred_output": [
                    {"role": "assistant", "content": _text(rng, rng.randint(1, 60))}
                ],
            }
        )
    return rows


@pytest.fixture(scope="module")
def varied_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "varied.jsonl", varied_rows(20))


@pytest.fixture
def packs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many packed micro-batches the objectives built (their row counts)."""
    built: list[int] = []
    real = batching.pack

    def spy(examples: Any) -> batching.Batch:
        batch = real(examples)
        built.append(batch.n_rows)
        return batch

    monkeypatch.setattr(sft, "pack", spy)
    monkeypatch.setattr(dpo, "pack", spy)
    yield built


def run(spec: TrainingSpec) -> Recorder:
    hooks = Recorder()
    train(spec, hooks)
    return hooks


def assert_same_losses(packed: list[float], padded: list[float]) -> None:
    assert len(packed) == len(padded)
    for step, (a, b) in enumerate(zip(packed, padded, strict=True), start=1):
        assert abs(a - b) <= RELATIVE * abs(b), f"step {step}: packed {a} vs padded {b}"


def spec_for(tmp_path: Path, models_cache: Path, data: Path, **overrides: Any) -> TrainingSpec:
    fields: dict[str, Any] = {
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate_multiplier": 10.0,
        **overrides,
    }
    return make_spec(tmp_path, models_cache, data, **fields)


def test_token_lengths_span_5_to_1000(varied_file: Path, models_cache: Path) -> None:
    from ftserve.modeling.loading import load_tokenizer
    from ftserve.modeling.tiny_model import ensure_tiny_model
    from ftserve.training.data import load_supervised

    tokenizer = load_tokenizer(ensure_tiny_model(models_cache))
    lengths = [len(e.input_ids) for e in load_supervised(varied_file, tokenizer, 2048)]
    assert min(lengths) <= 8 and 950 <= max(lengths) <= 1100, lengths


@PEFT_DEPRECATION
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_packed_supervised_job_has_the_padded_losses(
    tmp_path: Path, models_cache: Path, varied_file: Path, packs: list[int], lora: bool
) -> None:
    base = spec_for(tmp_path, models_cache, varied_file, lora=lora)
    packed = run(respec(base, work_dir=tmp_path / "packed"))
    assert packs and max(packs) > 1, "the packed run never packed"
    packs.clear()
    padded = run(respec(base, work_dir=tmp_path / "padded", packing=False))
    assert not packs
    assert len(packed.losses) == 10
    assert_same_losses(packed.losses, padded.losses)
    assert packed.losses[-1] < packed.losses[0]


def test_small_token_budget_splits_a_step_without_changing_its_loss(
    tmp_path: Path, models_cache: Path, varied_file: Path, packs: list[int]
) -> None:
    """A budget under one long row: micro-batches of one row each and of several short ones."""
    base = spec_for(tmp_path, models_cache, varied_file, n_epochs=1, lora=False)
    whole = run(respec(base, work_dir=tmp_path / "whole"))
    assert max(packs) == 4  # every step in one micro-batch
    packs.clear()
    split = run(respec(base, work_dir=tmp_path / "split", max_tokens_per_micro_batch=300))
    assert 1 in packs and max(packs) > 1
    assert_same_losses(split.losses, whole.losses)


def test_packed_job_on_a_grouped_query_llama(
    tmp_path: Path, llama_dir: Path, models_cache: Path, varied_file: Path, packs: list[int]
) -> None:
    base = spec_for(tmp_path, models_cache, varied_file, model=str(llama_dir), lora=False)
    packed = run(respec(base, work_dir=tmp_path / "packed"))
    assert packs
    padded = run(respec(base, work_dir=tmp_path / "padded", packing=False))
    assert_same_losses(packed.losses, padded.losses)


@PEFT_DEPRECATION
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_packed_dpo_job_has_the_padded_losses(
    tmp_path: Path, models_cache: Path, packs: list[int], lora: bool
) -> None:
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(12))
    base = spec_for(tmp_path, models_cache, data, method="dpo", lora=lora, batch_size=3, beta=0.5)
    packed = run(respec(base, work_dir=tmp_path / "packed"))
    assert packs and max(packs) == 6  # three pairs: their chosen and rejected rows
    packs.clear()
    padded = run(respec(base, work_dir=tmp_path / "padded", packing=False))
    assert not packs
    assert_same_losses(packed.losses, padded.losses)
    assert len(set(packed.losses)) == len(packed.losses)  # the policy moved every step


@PEFT_DEPRECATION
def test_packed_job_paused_and_resumed_has_the_padded_losses(
    tmp_path: Path, models_cache: Path, varied_file: Path, packs: list[int]
) -> None:
    base = spec_for(tmp_path, models_cache, varied_file)
    padded = run(respec(base, work_dir=tmp_path / "padded", packing=False))
    first = Recorder(lambda step: "pause" if step == 3 else "continue")
    with pytest.raises(TrainingStopped) as stopped:
        train(base, first)
    assert stopped.value.checkpoint is not None
    rest = run(respec(base, resume_from=stopped.value.checkpoint.path))
    assert packs
    assert_same_losses(first.losses + rest.losses, padded.losses)


def test_pack_lays_rows_end_to_end() -> None:
    from ftserve.training.data import Example

    rows = [Example([5, 6, 7], [False, True, True]), Example([8, 9], [False, True])]
    batch = batching.pack(rows)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert batch.position_ids is not None and batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert batch.cu_seq_lens is not None and batch.cu_seq_lens.tolist() == [0, 3, 5]
    # The last token of a row predicts nothing: never the next row's first token.
    assert batch.targets.tolist() == [[6, 7, -100, 9, -100]]
    assert batch.rows.tolist() == [[0, 0, 0, 1, 1]]
    assert (batch.n_rows, batch.n_tokens, batch.n_targets, batch.max_length) == (2, 5, 3, 3)


def test_packed_budget_counts_real_tokens() -> None:
    lengths = [100, 10, 10, 80]
    assert batching.split_micro_batches(lengths, 200) == [[0, 1], [2, 3]]
    assert batching.split_micro_batches(lengths, 200, packed=True) == [[0, 1, 2, 3]]
    assert batching.split_micro_batches(lengths, 199, packed=True) == [[0, 1, 2], [3]]
    assert batching.split_micro_batches([500, 5], 200, packed=True) == [[0], [1]]


def test_packed_attention_never_crosses_a_row(llama_dir: Path) -> None:
    """Changing one row changes no other row's logits, and each row's logits are those of the
    row alone."""
    from transformers import AutoModelForCausalLM

    from ftserve.training.data import Example
    from ftserve.training.forward import target_logits
    from ftserve.training.packing import supports_packing, use_packed_attention

    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()
    assert supports_packing(model)
    generator = torch.Generator().manual_seed(0)

    def row(n: int) -> Example:
        ids = torch.randint(3, 200, (n,), generator=generator).tolist()
        return Example(ids, [True] * n)

    rows = [row(7), row(30), row(1), row(12)]
    with torch.no_grad():
        alone = [target_logits(model, batching.collate([r], 0), True) for r in rows]
        use_packed_attention(model)
        packed = target_logits(model, batching.pack(rows), True)
        rows[0] = row(7)
        changed = target_logits(model, batching.pack(rows), True)
    expected = torch.cat(alone)
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-5)
    first = rows[0].n_targets
    torch.testing.assert_close(changed[first:], packed[first:], rtol=0, atol=0)
    assert not torch.allclose(changed[:first], packed[:first])


def test_sliding_window_models_are_not_packed() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ftserve.training.packing import supports_packing

    def qwen(**kw: Any) -> Any:
        config = Qwen2Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            **kw,
        )
        return Qwen2ForCausalLM(config)

    assert supports_packing(qwen())
    assert not supports_packing(
        qwen(use_sliding_window=True, sliding_window=16, max_window_layers=0)
    )
