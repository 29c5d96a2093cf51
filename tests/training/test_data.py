"""How rows become token ids and trained-token masks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ftserve.modeling.chat_templates import CHATML_FALLBACK_TEMPLATE, TINY_CHAT_TEMPLATE
from ftserve.modeling.tiny_model import build_byte_tokenizer
from ftserve.training.data import (
    ChatEncoder,
    Example,
    load_preference,
    load_supervised,
)
from ftserve.training.spec import TrainingFailed
from tests.training.training_helpers import preference_rows, write_jsonl

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "See you."},
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_byte_tokenizer()


def strip_generation_markers(template: str) -> str:
    plain = re.sub(r"\{%-? *(end)?generation *-?%\}", "", template)
    assert "{%- generation" not in plain
    return plain


def trained_text(tokenizer: Any, example: Example) -> str:
    return str(
        tokenizer.decode(
            [t for t, m in zip(example.input_ids, example.target_mask, strict=True) if m]
        )
    )


def test_chat_trains_every_assistant_turn_and_its_end_marker(
    tmp_path: Path, tokenizer: Any
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": CONVERSATION}])
    [example] = load_supervised(path, tokenizer, 2048)
    assert trained_text(tokenizer, example) == "Hello!<|im_end|>See you.<|im_end|>"
    assert example.input_ids[0] == tokenizer.bos_token_id


def test_weight_zero_turn_is_context_only(tmp_path: Path, tokenizer: Any) -> None:
    messages: list[dict[str, object]] = [dict(m) for m in CONVERSATION]
    messages[2]["weight"] = 0
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": messages}])
    [example] = load_supervised(path, tokenizer, 2048)
    assert trained_text(tokenizer, example) == "See you.<|im_end|>"
    assert "Hello!" in tokenizer.decode(example.input_ids)


def test_template_without_generation_markers_masks_by_prefix_rendering(tokenizer: Any) -> None:
    plain = strip_generation_markers(TINY_CHAT_TEMPLATE)
    marked = ChatEncoder(build_byte_tokenizer(TINY_CHAT_TEMPLATE))
    unmarked = ChatEncoder(build_byte_tokenizer(plain))
    trained = [True] * len(CONVERSATION)
    ids_a, mask_a = marked.encode(CONVERSATION, None, trained)
    ids_b, mask_b = unmarked.encode(CONVERSATION, None, trained)
    assert ids_a == ids_b
    # Prefix rendering also claims the newline after each end-of-turn marker; nothing else.
    extra = [t for t, a, b in zip(ids_a, mask_a, mask_b, strict=True) if b and not a]
    assert tokenizer.decode(extra) == "\n\n"
    assert all(b for a, b in zip(mask_a, mask_b, strict=True) if a)


def test_weight_zero_with_template_without_markers(tmp_path: Path) -> None:
    tok = build_byte_tokenizer(strip_generation_markers(CHATML_FALLBACK_TEMPLATE))
    messages: list[dict[str, object]] = [dict(m) for m in CONVERSATION]
    messages[4]["weight"] = 0
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": messages}])
    [example] = load_supervised(path, tok, 2048)
    assert trained_text(tok, example) == "Hello!<|im_end|><|eos|>\n"


def test_prompt_completion_trains_completion_and_eos_only(tmp_path: Path, tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "2+2=", "completion": " 4"}])
    [example] = load_supervised(path, tokenizer, 2048)
    assert trained_text(tokenizer, example) == " 4<|eos|>"
    assert tokenizer.decode(example.input_ids) == "<|bos|>2+2= 4<|eos|>"


def test_tools_reach_the_template_and_tool_call_arguments_are_parsed(
    tmp_path: Path, tokenizer: Any
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    row = {
        "tools": tools,
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            {"role": "assistant", "content": "It rains."},
        ],
    }
    [example] = load_supervised(write_jsonl(tmp_path / "t.jsonl", [row]), tokenizer, 2048)
    text = tokenizer.decode(example.input_ids)
    assert '"name": "get_weather", "parameters"' in text
    assert trained_text(tokenizer, example) == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
        "<|im_end|>It rains.<|im_end|>"
    )


# The shape of SmolLM2's own template: ChatML that renders only role and content.
TOOL_BLIND_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_a_template_that_drops_tool_calls_is_refused_not_trained_on(tmp_path: Path) -> None:
    blind = build_byte_tokenizer(chat_template=TOOL_BLIND_TEMPLATE)
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    row = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
    }
    path = write_jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(TrainingFailed, match="does not render tools or tool calls") as info:
        load_supervised(path, blind, 2048)
    assert "Example 1 of the training file" in info.value.message
    # Rows without tools still train on such a template.
    plain = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    }
    [example] = load_supervised(write_jsonl(tmp_path / "p.jsonl", [plain]), blind, 2048)
    assert "Yo" in trained_text(blind, example)


def test_truncation_keeps_the_start_and_drops_examples_left_without_targets(
    tmp_path: Path, tokenizer: Any
) -> None:
    long_prompt = {"prompt": "x" * 100, "completion": "y"}
    short = {"prompt": "a", "completion": "b"}
    path = write_jsonl(tmp_path / "t.jsonl", [long_prompt, short])
    examples = load_supervised(path, tokenizer, 50)
    assert len(examples) == 1
    assert trained_text(tokenizer, examples[0]) == "b<|eos|>"
    with pytest.raises(TrainingFailed) as info:
        load_supervised(write_jsonl(tmp_path / "u.jsonl", [long_prompt]), tokenizer, 50)
    assert info.value.code == "invalid_training_data"
    assert "max_seq_len=50" in info.value.message


def test_preference_rows_are_rejected_by_supervised_and_chat_rows_by_dpo(
    tmp_path: Path, tokenizer: Any
) -> None:
    pref = write_jsonl(tmp_path / "p.jsonl", preference_rows(2))
    chat = write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION}])
    with pytest.raises(TrainingFailed, match="preference example") as info:
        load_supervised(pref, tokenizer, 2048)
    assert info.value.code == "invalid_training_data"
    with pytest.raises(TrainingFailed, match="not a preference example") as info:
        load_preference(chat, tokenizer, 2048)
    assert info.value.code == "invalid_training_data"


def test_preference_pair_scores_only_the_outputs(tmp_path: Path, tokenizer: Any) -> None:
    [pair] = load_preference(write_jsonl(tmp_path / "p.jsonl", preference_rows(1)), tokenizer, 2048)
    assert trained_text(tokenizer, pair.chosen).startswith("I like ")
    assert trained_text(tokenizer, pair.rejected) == "No.<|im_end|>"


def test_broken_json_names_the_line(tmp_path: Path, tokenizer: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{oops\n', encoding="utf-8")
    with pytest.raises(TrainingFailed, match="Line 2") as info:
        load_supervised(path, tokenizer, 2048)
    assert info.value.code == "invalid_training_data"
