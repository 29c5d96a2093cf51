"""Prompts render like training rendered its rows; incremental text never splits a character;
stop sequences hold back exactly what could still become one."""

from __future__ import annotations

import json
from pathlib import Path

from ftserve.inference.engine import IncrementalDecoder, StopMatcher, render
from ftserve.inference.engine.models import ModelStore
from ftserve.inference.protocol import ChatPrompt, EngineSettings, Sampling, ServedModel
from ftserve.modeling.device import resolve_device
from ftserve.modeling.loading import load_tokenizer
from ftserve.training.data import ChatEncoder
from tests.inference.engine_harness import TINY

TOOLS = (
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
)
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})},
}


def store(models_dir: Path) -> ModelStore:
    return ModelStore(EngineSettings(models_dir=str(models_dir)), resolve_device("cpu"))


def test_chat_with_tools_renders_like_training(models_dir: Path, tiny_dir: Path) -> None:
    info = store(models_dir).info(TINY)
    messages = (
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    )
    rendered = render(info, ChatPrompt(messages, TOOLS), Sampling(), 4096)
    tokenizer = load_tokenizer(tiny_dir)
    normalized = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {**CALL, "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]
    text = ChatEncoder(tokenizer)._render(normalized, list(TOOLS), add_generation_prompt=True)
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in text
    assert rendered.prompt_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(rendered.prompt_ids).endswith("<|im_start|>assistant\n")
    # ftserve-tiny has <|im_end|> as a token: it stops by id, not as text.
    assert rendered.stops == ()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in info.stop_ids


def test_fallback_template_ends_turns_with_text_stop(models_dir: Path, gpt2_dir: Path) -> None:
    info = store(models_dir).info(ServedModel("g", "base", str(gpt2_dir)))
    assert info.context_length == 512  # GPT-2's n_positions
    chat = render(info, ChatPrompt(({"role": "user", "content": "hi"},)), Sampling(stop=("x",)), 99)
    assert chat.stops == ("x", "<|im_end|>")
    assert chat.max_tokens == 99
    assert info.tokenizer.eos_token_id in info.stop_ids


def test_incremental_decoder_never_splits_characters(tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    text = "héllo wörld — 日本語 🙂!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))  # one token per byte
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # multi-byte characters waited for their last byte
    cut = IncrementalDecoder(tokenizer)
    partial = [cut.push(i) for i in "🙂".encode()[:2]]
    assert partial == ["", ""] and cut.flush() == "\ufffd"


def test_stop_matcher_holds_back_only_possible_starts() -> None:
    stops = StopMatcher(["END", "##"])
    assert stops.feed("abc E") == ("abc ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("x") == ("ENx", False)  # "ENx" cannot begin a stop any more
    assert stops.feed("#") == ("", False)
    assert stops.feed("#tail") == ("", True)
    late = StopMatcher(["stop here"])
    assert late.feed("say stop") == ("say ", False)
    assert late.flush() == "stop"
    earliest = StopMatcher(["bc", "abcd"])
    assert earliest.feed("xabcd") == ("xa", True)
    assert StopMatcher([]).feed("anything") == ("anything", False)
