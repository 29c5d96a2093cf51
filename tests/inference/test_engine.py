"""The engine in this process, on real (tiny, config-built) models: decoding matches
``model.generate``, batching changes nothing, sampling parameters do what OpenAI says."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path
from typing import Any

from ftserve.inference.protocol import (
    Accepted,
    ChatPrompt,
    Finished,
    Rejected,
    TextPrompt,
)
from ftserve.modeling.loading import load_tokenizer
from tests.inference.engine_harness import (
    CHAT,
    PROMPTS,
    TINY,
    Harness,
    chat_ids,
    generated_bytes,
    generated_tokens,
    reference,
    token_strings,
)


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
