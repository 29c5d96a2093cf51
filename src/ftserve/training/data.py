"""Turning JSONL rows into token sequences with a mask of the tokens the model is trained on.

Row formats (the files are validated upstream; this module still fails cleanly on surprises):

* chat: ``{"messages": [...], "tools"?: [...]}``. The conversation goes through the tokenizer's
  chat template (with ``tools=`` when present) and only assistant turns are trained; an assistant
  message with ``"weight": 0`` is context only.
* prompt/completion: ``{"prompt": str, "completion": str}``. The prompt is tokenized with the
  tokenizer's usual special tokens (a BOS for Llama-style tokenizers), the completion without, and
  the EOS token is appended; only the completion and the EOS are trained.
* preference (DPO): ``{"input": {"messages": [...], "tools"?}, "preferred_output": [...],
  "non_preferred_output": [...]}``. Each side is the input conversation followed by its output
  messages; only the output messages are trained (scored, for DPO).

Which tokens belong to an assistant turn:

* If the template marks assistant turns with ``{% generation %}`` and the tokenizer is a fast
  one, ``apply_chat_template(..., return_assistant_tokens_mask=True)`` says so directly.
* Otherwise the turn's character span is found by rendering prefixes: the conversation up to the
  turn with ``add_generation_prompt=True`` ends where the turn's text starts, and the conversation
  including the turn ends where it stops (so the end-of-turn marker is trained too). If the template
  renders prefixes differently from the whole conversation (some hide earlier reasoning), the
  turn's content is searched for in the rendered text instead, in order.
* Weight-0 turns are found the same way and removed from the mask.

Sequences are cut to ``max_seq_len`` tokens from the end; an example whose trained tokens were all
cut away is dropped.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftserve.modeling.chat import normalize_message, render_chat, text_of
from ftserve.training.spec import TrainingFailed

RowKind = Literal["chat", "completion", "preference"]

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class Example:
    """``target_mask[t]`` is true when token ``t`` is a training target (predicted from ``< t``)."""

    input_ids: list[int]
    target_mask: list[bool]

    @property
    def n_targets(self) -> int:
        return sum(self.target_mask)


@dataclass(frozen=True)
class PreferencePair:
    chosen: Example
    rejected: Example


def read_rows(path: Path, *, what: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise TrainingFailed("invalid_training_data", f"Cannot read the {what}: {exc}") from exc
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingFailed(
                    "invalid_training_data",
                    f"Line {line_number} of the {what} is not valid JSON: {exc.msg}.",
                ) from exc
            if not isinstance(row, dict):
                raise TrainingFailed(
                    "invalid_training_data",
                    f"Line {line_number} of the {what} is not a JSON object.",
                )
            rows.append(row)
    if not rows:
        raise TrainingFailed("invalid_training_data", f"The {what} has no examples.")
    return rows


def row_kind(row: dict[str, Any]) -> RowKind | None:
    if "input" in row and "preferred_output" in row and "non_preferred_output" in row:
        return "preference"
    if "messages" in row:
        return "chat"
    if "prompt" in row and "completion" in row:
        return "completion"
    return None


class ChatEncoder:
    """Renders conversations with one tokenizer's chat template and masks the trained turns."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def _render(
        self, messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool = False
    ) -> str:
        return render_chat(
            self.tokenizer, messages, tools, add_generation_prompt=add_generation_prompt
        )

    def _turn_spans(
        self,
        messages: list[dict[str, Any]],
        tools: Any,
        full_text: str,
        indices: Sequence[int],
    ) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        cursor = 0
        for k in indices:
            span: tuple[int, int] | None = None
            if k > 0:
                upto = self._render(messages[: k + 1], tools)
                before = self._render(messages[:k], tools, add_generation_prompt=True)
                if (
                    len(upto) > len(before)
                    and upto.startswith(before)
                    and full_text.startswith(upto)
                    and len(before) >= cursor
                ):
                    span = (len(before), len(upto))
            if span is None:
                content = messages[k]["content"]
                found = full_text.find(content, cursor) if content else -1
                if found < 0:
                    raise ValueError(
                        f"cannot locate assistant message {k} in the rendered conversation "
                        "(the chat template has no {% generation %} markers and renders "
                        "partial conversations differently)"
                    )
                span = (found, found + len(content))
            spans.append(span)
            cursor = span[1]
        return spans

    def _tokenize_with_spans(
        self, text: str, spans: Sequence[tuple[int, int]]
    ) -> tuple[list[int], list[bool]]:
        if self.tokenizer.is_fast:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            mask = [_overlaps(start, end, spans) for start, end in enc["offset_mapping"]]
            return ids, mask
        # Slow tokenizers have no offsets: tokenize the pieces between span edges separately.
        edges = sorted({0, len(text), *(e for span in spans for e in span)})
        ids, mask = [], []
        for start, end in itertools.pairwise(edges):
            piece = self.tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
            ids.extend(piece)
            mask.extend([_overlaps(start, end, spans)] * len(piece))
        return ids, mask

    def encode(
        self, messages: list[dict[str, Any]], tools: Any, trained: Sequence[bool]
    ) -> tuple[list[int], list[bool]]:
        """Token ids of the conversation and, per token, whether it belongs to a trained turn.

        ``trained[i]`` says whether message ``i`` would be trained if it is an assistant turn.
        """
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        trained_turns = [i for i in assistant if trained[i]]
        untrained_turns = [i for i in assistant if not trained[i]]
        template = self.tokenizer.get_chat_template(None, tools)
        if self.tokenizer.is_fast and _GENERATION_TAG.search(template):
            out = self.tokenizer.apply_chat_template(
                messages, tools=tools, return_dict=True, return_assistant_tokens_mask=True
            )
            ids = list(out["input_ids"])
            mask = [bool(flag) for flag in out["assistant_masks"]]
            if untrained_turns:
                text = self._render(messages, tools)
                spans = self._turn_spans(messages, tools, text, untrained_turns)
                offsets = out.encodings[0].offsets
                mask = [
                    flag and not _overlaps(start, end, spans)
                    for flag, (start, end) in zip(mask, offsets, strict=True)
                ]
            return ids, mask
        text = self._render(messages, tools)
        spans = self._turn_spans(messages, tools, text, trained_turns)
        return self._tokenize_with_spans(text, spans)


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < span_end and end > span_start for span_start, span_end in spans)


def _finish(ids: list[int], mask: list[bool], max_seq_len: int) -> Example | None:
    ids, mask = ids[:max_seq_len], mask[:max_seq_len]
    if mask:
        # The first token has nothing to be predicted from.
        mask[0] = False
    if not any(mask):
        return None
    return Example(input_ids=ids, target_mask=mask)


def _chat_example(encoder: ChatEncoder, row: dict[str, Any], max_seq_len: int) -> Example | None:
    raw = row["messages"]
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    messages = [normalize_message(m) for m in raw]
    trained = [not (isinstance(m, dict) and m.get("weight", 1) == 0) for m in raw]
    tools = row.get("tools") or None
    _check_tools_rendered(encoder, messages, tools)
    ids, mask = encoder.encode(messages, tools, trained)
    return _finish(ids, mask, max_seq_len)


def _tool_names(messages: list[dict[str, Any]], tools: Any) -> set[str]:
    names = set()
    for tool in tools or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            names.add(str(tool["function"].get("name", "")))
    for message in messages:
        for call in message.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                names.add(str(fn.get("name", "")))
    names.discard("")
    return names


def _check_tools_rendered(encoder: ChatEncoder, messages: list[dict[str, Any]], tools: Any) -> None:
    """Many models' own chat templates drop ``tools`` and ``tool_calls`` without a word; training
    on such a rendering would teach the model answers with the calls cut out. Refuse instead."""
    names = _tool_names(messages, tools)
    if not names:
        return
    text = encoder._render(messages, tools)
    missing = sorted(n for n in names if n not in text)
    if missing:
        raise ValueError(
            f"this model's chat template does not render tools or tool calls (the function "
            f"{missing[0]!r} is missing from the rendered conversation), so the model would be "
            "trained on text without them. Fine-tune a model whose chat template renders tools "
            "(ftserve-tiny, or a tokenizer without a chat template: ftserve then uses its own "
            "ChatML template with tools), or remove tools and tool_calls from the file"
        )


def _completion_example(tokenizer: Any, row: dict[str, Any], max_seq_len: int) -> Example | None:
    prompt = tokenizer(text_of(row["prompt"]), add_special_tokens=True)["input_ids"]
    completion = tokenizer(text_of(row["completion"]), add_special_tokens=False)["input_ids"]
    completion = [*completion, tokenizer.eos_token_id]
    ids = [*prompt, *completion]
    mask = [False] * len(prompt) + [True] * len(completion)
    return _finish(ids, mask, max_seq_len)


def _preference_pair(
    encoder: ChatEncoder, row: dict[str, Any], max_seq_len: int
) -> PreferencePair | None:
    given = row["input"]
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        raise ValueError("'input' must be an object with a 'messages' list")
    context = [normalize_message(m) for m in given["messages"]]
    tools = given.get("tools") or row.get("tools") or None
    sides: list[Example | None] = []
    for key in ("preferred_output", "non_preferred_output"):
        output = row[key]
        if not isinstance(output, list) or not output:
            raise ValueError(f"'{key}' must be a non-empty list of messages")
        messages = [*context, *(normalize_message(m) for m in output)]
        trained = [False] * len(context) + [True] * len(output)
        ids, mask = encoder.encode(messages, tools, trained)
        sides.append(_finish(ids, mask, max_seq_len))
    chosen, rejected = sides
    if chosen is None or rejected is None:
        return None
    return PreferencePair(chosen=chosen, rejected=rejected)


def _fail_row(what: str, index: int, exc: Exception) -> TrainingFailed:
    return TrainingFailed(
        "invalid_training_data", f"Example {index + 1} of the {what} cannot be used: {exc}."
    )


def _no_usable(what: str, max_seq_len: int) -> TrainingFailed:
    return TrainingFailed(
        "invalid_training_data",
        f"No example of the {what} has a trained token within max_seq_len={max_seq_len} tokens "
        "(every assistant/completion token was cut away or there were none).",
    )


def load_supervised(
    path: Path, tokenizer: Any, max_seq_len: int, *, what: str = "training file"
) -> list[Example]:
    rows = read_rows(path, what=what)
    encoder = ChatEncoder(tokenizer)
    examples: list[Example] = []
    for index, row in enumerate(rows):
        kind = row_kind(row)
        if kind == "preference":
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} is a preference example; supervised jobs "
                "need chat or prompt/completion examples.",
            )
        if kind is None:
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} is neither a chat nor a prompt/completion "
                "example.",
            )
        try:
            if kind == "chat":
                example = _chat_example(encoder, row, max_seq_len)
            else:
                example = _completion_example(tokenizer, row, max_seq_len)
        except TrainingFailed:
            raise
        except Exception as exc:
            raise _fail_row(what, index, exc) from exc
        if example is not None:
            examples.append(example)
    if not examples:
        raise _no_usable(what, max_seq_len)
    return examples


def load_preference(
    path: Path, tokenizer: Any, max_seq_len: int, *, what: str = "training file"
) -> list[PreferencePair]:
    rows = read_rows(path, what=what)
    encoder = ChatEncoder(tokenizer)
    pairs: list[PreferencePair] = []
    for index, row in enumerate(rows):
        if row_kind(row) != "preference":
            raise TrainingFailed(
                "invalid_training_data",
                f"Example {index + 1} of the {what} is not a preference example; DPO jobs need "
                "'input', 'preferred_output' and 'non_preferred_output'.",
            )
        try:
            pair = _preference_pair(encoder, row, max_seq_len)
        except TrainingFailed:
            raise
        except Exception as exc:
            raise _fail_row(what, index, exc) from exc
        if pair is not None:
            pairs.append(pair)
    if not pairs:
        raise _no_usable(what, max_seq_len)
    return pairs
