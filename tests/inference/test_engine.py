"""The engine in this process, on real (tiny, config-built) models: decoding matches
``model.generate``, batching changes nothing, sampling parameters do what OpenAI says."""

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
    Accepted,
    ChatPrompt,
    EngineSettings,
    Failed,
    Finished,
    FromInference,
    Generate,
    Piece,
    Rejected,
    Sampling,
    ServedModel,
    TextPrompt,
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


def test_greedy_text_prompt_equals_generate(harness: Harness, tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    harness.submit("r", TINY, TextPrompt(PROMPTS[1]), max_tokens=24, temperature=0, logprobs=True)
    harness.drain()
    ids = tokenizer(PROMPTS[1], add_special_tokens=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # rendered like a prompt/completion row
    expected = reference(tiny_dir, ids, 24)
    assert generated_tokens(harness, "r") == token_strings(tokenizer, expected)
    assert harness.text("r") == tokenizer.decode(expected, skip_special_tokens=True)
    accepted = harness.of("r")[0]
    assert isinstance(accepted, Accepted) and accepted.prompt_tokens == len(ids)
    assert accepted.context_length == 2048
    (finished,) = harness.finished("r")
    assert finished.completion_tokens == len(expected) == len(harness.pieces("r"))


def test_greedy_chat_prompt_equals_generate(harness: Harness, tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    harness.submit("c", TINY, CHAT, max_tokens=20, temperature=0, logprobs=True)
    harness.drain()
    ids = chat_ids(tokenizer, CHAT)
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's BOS, not a second one
    accepted = harness.of("c")[0]
    assert isinstance(accepted, Accepted) and accepted.prompt_tokens == len(ids)
    assert generated_tokens(harness, "c") == token_strings(tokenizer, reference(tiny_dir, ids, 20))


def test_batched_greedy_equals_unbatched(harness: Harness, tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    for i, prompt in enumerate(PROMPTS):
        harness.submit(
            f"b{i}", TINY, TextPrompt(prompt), max_tokens=16, temperature=0, logprobs=True
        )
    harness.step(3)
    # Two more join the running batch between steps (with longer prompts: the cache is re-padded).
    harness.submit(
        "late0", TINY, TextPrompt(PROMPTS[3] * 2), max_tokens=16, temperature=0, logprobs=True
    )
    harness.submit("late1", TINY, TextPrompt("x"), max_tokens=16, temperature=0, logprobs=True)
    assert len(harness.engine.batches) == 1
    harness.step()
    (batch,) = harness.engine.batches
    assert {"late0", "late1"} <= {row.request_id for row in batch.rows}
    assert len(batch.rows) > 2
    harness.drain()
    cases = {f"b{i}": p for i, p in enumerate(PROMPTS)} | {"late0": PROMPTS[3] * 2, "late1": "x"}
    for rid, prompt in cases.items():
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        expected = token_strings(tokenizer, reference(tiny_dir, ids, 16))
        assert generated_tokens(harness, rid) == expected, rid


def test_max_batch_splits_batches(models_dir: Path) -> None:
    h = Harness(models_dir, max_batch=2)
    for i in range(3):
        h.submit(f"r{i}", TINY, TextPrompt(PROMPTS[i]), max_tokens=4, temperature=0)
    h.step()
    assert sorted(len(b.rows) for b in h.engine.batches) == [1, 2]
    h.drain()
    assert all(len(h.finished(f"r{i}")) == 1 for i in range(3))


def letters_only() -> tuple[tuple[int, float], ...]:
    """A logit bias that makes ftserve-tiny (a byte vocabulary) write lowercase ASCII."""
    return tuple((b, 30.0) for b in range(ord("a"), ord("z") + 1))


def test_stop_sequence_trimmed(harness: Harness) -> None:
    bias = letters_only()
    full = harness.one(
        "full", TINY, TextPrompt("Hi"), max_tokens=30, temperature=0, logit_bias=bias
    )
    assert len(full) == 30 and full.isalpha()
    stop = full[10:13]
    cut = full[: full.index(stop)]
    harness.submit(
        "s",
        TINY,
        TextPrompt("Hi"),
        max_tokens=30,
        temperature=0,
        logit_bias=bias,
        stop=("zzzz", stop),
    )
    harness.drain()
    assert harness.text("s") == cut
    (finished,) = harness.finished("s")
    assert finished.finish_reason == "stop"
    assert finished.completion_tokens == full.index(stop) + len(stop)
    # Text that might begin the stop sequence waited in later pieces, but nothing was lost.
    assert len(harness.pieces("s")) == finished.completion_tokens
    assert harness.finished("full")[0].finish_reason == "length"


def test_held_back_text_released_when_no_match(harness: Harness) -> None:
    bias = letters_only()
    full = harness.one(
        "full", TINY, TextPrompt("Hi"), max_tokens=12, temperature=0, logit_bias=bias
    )
    # A stop that starts like the end of the text but is never completed.
    stop = full[-2:] + "!"
    text = harness.one(
        "s", TINY, TextPrompt("Hi"), max_tokens=12, temperature=0, logit_bias=bias, stop=(stop,)
    )
    assert text == full
    assert harness.finished("s")[0].finish_reason == "length"


def test_seed_determinism_alone_and_beside_others(harness: Harness) -> None:
    params: dict[str, Any] = {"max_tokens": 20, "temperature": 1.0, "seed": 1234}
    alone = harness.one("a", TINY, CHAT, **params)
    again = harness.one("b", TINY, CHAT, **params)
    assert alone == again and alone
    for i in range(3):
        harness.submit(f"noise{i}", TINY, TextPrompt(PROMPTS[i]), max_tokens=30, temperature=1.0)
    harness.step(2)
    harness.submit("c", TINY, CHAT, **params)
    harness.submit("noise3", TINY, TextPrompt(PROMPTS[3]), max_tokens=30, temperature=1.0)
    harness.drain()
    assert harness.text("c") == alone
    other = harness.one("d", TINY, CHAT, max_tokens=20, temperature=1.0, seed=99)
    assert other != alone


def test_n_choices(harness: Harness) -> None:
    harness.submit("n", TINY, CHAT, max_tokens=12, temperature=1.0, n=3, seed=5)
    harness.drain()
    finished = harness.finished("n")
    assert sorted(f.index for f in finished) == [0, 1, 2]
    texts = [harness.text("n", i) for i in range(3)]
    counts = [len(harness.pieces("n", i)) for i in range(3)]
    assert counts == [f.completion_tokens for f in sorted(finished, key=lambda f: f.index)]
    assert len(set(texts)) > 1  # each choice has its own generator
    harness.submit("g", TINY, CHAT, max_tokens=12, temperature=0, n=2)
    harness.drain()
    assert harness.text("g", 0) == harness.text("g", 1)


def test_logprobs_shape_and_greedy_top(harness: Harness) -> None:
    harness.submit("l", TINY, CHAT, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3)
    harness.drain()
    pieces = harness.pieces("l")
    assert pieces
    for piece in pieces:
        entry = piece.logprob
        assert entry is not None and len(entry.top) == 3
        assert entry.top[0].token == entry.token and entry.top[0].logprob == entry.logprob
        assert entry.bytes == entry.top[0].bytes
        assert [t.logprob for t in entry.top] == sorted(
            (t.logprob for t in entry.top), reverse=True
        )
        assert -9999.0 <= entry.logprob <= 0.0
    harness.submit("s", TINY, CHAT, max_tokens=10, temperature=1.0, logprobs=True, top_logprobs=0)
    harness.submit("x", TINY, CHAT, max_tokens=3, temperature=1.0)
    harness.drain()
    assert all(p.logprob is not None and p.logprob.top == () for p in harness.pieces("s"))
    assert all(p.logprob is None for p in harness.pieces("x"))


def test_logprob_bytes_rebuild_the_text(harness: Harness) -> None:
    harness.submit(
        "u", TINY, TextPrompt("héllo"), max_tokens=40, temperature=1.0, seed=3, logprobs=True
    )
    harness.drain()
    pieces = harness.pieces("u")
    raw = b"".join(bytes(p.logprob.bytes or ()) for p in pieces if p.logprob)
    finished = harness.finished("u")[0]
    if finished.finish_reason == "length":
        assert raw.decode("utf-8", errors="replace") == harness.text("u")


def test_penalties_and_bias(harness: Harness, tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    plain = generated_bytes_of(harness, "p", max_tokens=20)
    assert len(set(plain)) < len(plain)  # the random tiny model repeats itself
    for rid, penalty in (("q", "presence_penalty"), ("f", "frequency_penalty")):
        distinct = generated_bytes_of(harness, rid, max_tokens=20, **{penalty: 2.0})
        assert len(set(distinct)) == len(distinct) > 1
    forced = ord("Q")
    text = harness.one(
        "b", TINY, CHAT, max_tokens=5, temperature=0.7, logit_bias=((forced, 100.0),)
    )
    assert text == "QQQQQ"
    assert tokenizer.decode([forced]) == "Q"


def generated_bytes_of(h: Harness, rid: str, **sampling: Any) -> list[tuple[int, ...] | None]:
    h.submit(rid, TINY, CHAT, temperature=0, logprobs=True, **sampling)
    h.drain()
    return generated_bytes(h, rid)


def test_top_p_tiny_is_greedy(harness: Harness) -> None:
    greedy = harness.one("g", TINY, CHAT, max_tokens=15, temperature=0)
    nucleus = harness.one("t", TINY, CHAT, max_tokens=15, temperature=1.0, top_p=1e-6)
    assert nucleus == greedy


def test_vanishing_temperatures_decode_greedily_instead_of_failing(harness: Harness) -> None:
    # The fuzz test found it: 1e-300 rounds to 0 in float32, and 0 / 0 made the top token NaN.
    greedy = harness.one("g0", TINY, CHAT, max_tokens=8, temperature=0)
    for i, tiny in enumerate((1e-300, 5e-324, 1e-7)):
        assert harness.one(f"t{i}", TINY, CHAT, max_tokens=8, temperature=tiny) == greedy


def test_cancel_stops_the_request(harness: Harness) -> None:
    # Letters only: a sampled end-of-turn token must not finish it before the cancel.
    harness.submit("long", TINY, CHAT, max_tokens=500, temperature=1.0, logit_bias=letters_only())
    harness.submit("other", TINY, CHAT, max_tokens=20, temperature=0)
    harness.step(3)
    before = len(harness.of("long"))
    harness.engine.cancel("long")
    harness.drain()
    assert len(harness.of("long")) == before
    assert not harness.finished("long")
    assert len(harness.finished("other")) == 1
    # Cancelled while still waiting for a batch.
    harness.submit("queued", TINY, CHAT, max_tokens=5)
    harness.engine.cancel("queued")
    harness.drain()
    assert [type(m) for m in harness.of("queued")] == [Accepted]


def test_context_length_exceeded(harness: Harness) -> None:
    long_chat = ChatPrompt(({"role": "user", "content": "x" * 2100},))
    harness.submit("c1", TINY, long_chat)
    harness.submit(
        "c2", TINY, ChatPrompt(({"role": "user", "content": "x" * 2000},)), max_tokens=100
    )
    harness.submit("t1", TINY, TextPrompt("y" * 2000), max_tokens=100)
    harness.submit("ok", TINY, TextPrompt("y" * 2000), max_tokens=47)
    r1, r2, r3 = (harness.of(r)[0] for r in ("c1", "c2", "t1"))
    assert isinstance(r1, Rejected) and isinstance(r2, Rejected) and isinstance(r3, Rejected)
    tokenizer = harness.engine.store.info(TINY).tokenizer
    p1 = len(chat_ids(tokenizer, long_chat))
    assert r1.message == (
        f"This model's maximum context length is 2048 tokens. However, your messages resulted in {p1} tokens. Please reduce the length of the messages."
    )
    assert (r1.status, r1.param, r1.code) == (400, "messages", "context_length_exceeded")
    p2 = p1 - 100
    assert p2 == len(chat_ids(tokenizer, ChatPrompt(({"role": "user", "content": "x" * 2000},))))
    assert r2.message == (
        f"This model's maximum context length is 2048 tokens. However, you requested {p2 + 100} tokens ({p2} in the messages, 100 in the completion). Please reduce the length of the messages or completion."
    )
    assert r3.message == (
        "This model's maximum context length is 2048 tokens, however you requested 2101 tokens (2001 in your prompt; 100 for the completion). Please reduce your prompt; or completion length."
    )
    assert (r3.param, r3.code) == (None, "context_length_exceeded")
    assert isinstance(harness.of("ok")[0], Accepted)
    harness.drain()
    # Without max_tokens the completion gets the room left in the context.
    harness.submit("room", TINY, TextPrompt("y" * 2040), temperature=0, logit_bias=letters_only())
    harness.drain()
    assert harness.finished("room")[0].completion_tokens == 2048 - 2041


def test_generation_limit(models_dir: Path) -> None:
    h = Harness(models_dir, max_generation_tokens=10)
    h.submit("big", TINY, CHAT, max_tokens=6, n=2)
    rejected = h.of("big")[0]
    assert isinstance(rejected, Rejected) and rejected.param == "max_tokens"
    assert "10" in rejected.message
    h.submit("auto", TINY, CHAT, n=2, temperature=0, logit_bias=letters_only())
    h.drain()
    assert [f.completion_tokens for f in h.finished("auto")] == [5, 5]


def test_bad_requests_rejected(harness: Harness) -> None:
    harness.submit("ids", TINY, TextPrompt((1, 2, 99999)), max_tokens=3)
    harness.submit("bias", TINY, CHAT, logit_bias=((99999, 1.0),))
    harness.submit("msg", TINY, ChatPrompt(({"content": "no role"},)))
    for rid, param in (("ids", "prompt"), ("bias", "logit_bias"), ("msg", "messages")):
        message = harness.of(rid)[0]
        assert isinstance(message, Rejected) and (message.status, message.param) == (400, param)


def test_token_id_prompt_and_echo(harness: Harness, tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    ids = tuple(tokenizer("Echo me", add_special_tokens=True)["input_ids"])
    harness.submit(
        "e",
        TINY,
        TextPrompt(ids, echo=True),
        max_tokens=3,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    harness.drain()
    accepted = harness.of("e")[0]
    assert isinstance(accepted, Accepted) and len(accepted.echo) == len(ids)
    assert "".join(p.text for p in accepted.echo) == "Echo me"
    assert accepted.echo[0].logprob is None
    assert all(p.logprob is not None and len(p.logprob.top) == 2 for p in accepted.echo[1:])
    assert [p.logprob.token for p in accepted.echo[1:] if p.logprob] == list("Echo me")
    plain = harness.one("p", TINY, TextPrompt("Echo me"), max_tokens=3, temperature=0)
    assert harness.text("e") == plain
    harness.submit("z", TINY, TextPrompt("Echo", echo=True), max_tokens=0)
    kinds = [type(m) for m in harness.of("z")]
    assert kinds == [Accepted, Finished] and harness.finished("z")[0].completion_tokens == 0


def test_lora_changes_output_and_matches_peft_generate(
    harness: Harness, tiny_dir: Path, adapters: list[Path]
) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    ids = chat_ids(tokenizer, CHAT)
    # Base and two adapters decoded in one mixed batch.
    harness.submit("base", TINY, CHAT, max_tokens=16, temperature=0, logprobs=True)
    harness.submit(
        "l0", lora(adapters[0], "ft:a"), CHAT, max_tokens=16, temperature=0, logprobs=True
    )
    harness.submit(
        "l1", lora(adapters[1], "ft:b"), CHAT, max_tokens=16, temperature=0, logprobs=True
    )
    with torch.inference_mode():
        harness.engine._admit()
    assert len(harness.engine.batches) == 1 and len(harness.engine.batches[0].rows) == 3
    harness.drain()
    base = generated_tokens(harness, "base")
    assert base == token_strings(tokenizer, reference(tiny_dir, ids, 16))
    for rid, adapter in (("l0", adapters[0]), ("l1", adapters[1])):
        expected = token_strings(tokenizer, reference(tiny_dir, ids, 16, adapter=adapter))
        assert generated_tokens(harness, rid) == expected
        assert generated_tokens(harness, rid) != base


def test_adapters_share_one_base(harness: Harness, adapters: list[Path]) -> None:
    for i in range(2):
        harness.one(f"l{i}", lora(adapters[i]), CHAT, max_tokens=3)
    store = harness.engine.store
    assert len(store.loaded) == 1
    (loaded,) = store.loaded.values()
    assert len(loaded.adapters) == 2
    layer = loaded.peft.base_model.model.model.layers[0].self_attn.q_proj
    assert set(layer.lora_A) == set(loaded.adapters.values())
    # One base weight under both adapters: the same storage the plain model had.
    plain = loaded.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert layer.base_layer.weight.data_ptr() == plain.data_ptr()
    base_params = [p for n, p in loaded.peft.named_parameters() if "lora_" not in n]
    assert sum(p.numel() for p in base_params) == sum(
        p.numel() for n, p in loaded.model.named_parameters() if "lora_" not in n
    )


def test_adapter_lru_eviction(models_dir: Path, adapters: list[Path]) -> None:
    h = Harness(models_dir, max_adapters=2)
    texts = [
        h.one(f"l{i}", lora(a), CHAT, max_tokens=8, temperature=0) for i, a in enumerate(adapters)
    ]
    (loaded,) = h.engine.store.loaded.values()
    assert list(loaded.adapters) == [str(adapters[1]), str(adapters[2])]
    assert len(loaded.peft.peft_config) == 2
    # The evicted one comes back (and pushes out the least recently used, adapter 1).
    assert h.one("again", lora(adapters[0]), CHAT, max_tokens=8, temperature=0) == texts[0]
    assert list(loaded.adapters) == [str(adapters[2]), str(adapters[0])]


def test_full_model_and_memory_budget(models_dir: Path, tiny_dir: Path, full_dir: Path) -> None:
    h = Harness(models_dir, memory_budget=1)
    tokenizer = load_tokenizer(tiny_dir)
    full = ServedModel("ft:full", "full", "ftserve-tiny", str(full_dir))
    base = h.one("base", TINY, CHAT, max_tokens=12, temperature=0)
    h.submit("full", full, CHAT, max_tokens=12, temperature=0, logprobs=True)
    h.drain()
    expected = reference(full_dir, chat_ids(tokenizer, CHAT), 12)
    assert generated_tokens(h, "full") == token_strings(tokenizer, expected)
    assert h.text("full") != base
    # Over budget: only the most recent model stays loaded once nothing uses the other.
    assert list(h.engine.store.loaded) == [str(full_dir)]


def test_missing_weights_fail_and_engine_keeps_serving(harness: Harness, tmp_path: Path) -> None:
    harness.submit("gone", lora(tmp_path / "nope"), CHAT, max_tokens=3)
    failed = harness.of("gone")
    assert len(failed) == 1 and isinstance(failed[0], Failed)
    assert "nope" in failed[0].message
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    harness.submit("bad", ServedModel("x", "full", "ftserve-tiny", str(corrupt)), CHAT)
    assert [type(m) for m in harness.of("bad")] == [Failed]
    assert harness.one("ok", TINY, CHAT, max_tokens=3) is not None
    assert len(harness.finished("ok")) == 1


def test_read_only_model_dirs(models_dir: Path, adapters: list[Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ro-adapter"
    shutil.copytree(adapters[0], copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    for path in [copy, *copy.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        h = Harness(models_dir)
        assert h.one("ro", lora(copy), CHAT, max_tokens=4) is not None
        assert len(h.finished("ro")) == 1
        assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir()} == before
    finally:
        copy.chmod(0o755)


def test_failure_in_a_batch_fails_only_that_batch(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.submit("a", TINY, CHAT, max_tokens=50)
    harness.step()
    (batch,) = harness.engine.batches

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(batch, "_decode", broken)
    harness.step()
    assert isinstance(harness.of("a")[-1], Failed) and "boom" in harness.of("a")[-1].message
    assert not harness.engine.busy
    monkeypatch.undo()
    assert harness.one("b", TINY, CHAT, max_tokens=4) is not None
    assert len(harness.finished("b")) == 1
