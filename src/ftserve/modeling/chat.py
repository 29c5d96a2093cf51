"""Messages as chat templates take them, and rendering a conversation with a tokenizer's template.

Training renders its rows and inference renders its prompts through here, so a fine-tune sees at
inference what it learned from: OpenAI's content parts are joined into one string, tool-call
``arguments`` (a JSON string on the wire) become the mapping Hugging Face templates expect, and
the template is applied as text (tokenized afterwards without special tokens, since the template
writes its own BOS).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any


def text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or the ``text`` of its parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    return str(content)


def _normalize_tool_call(call: Any) -> Any:
    """OpenAI sends ``arguments`` as a JSON string; Hugging Face templates expect a mapping."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    function = dict(call["function"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # Not JSON: the template gets the string as it is.
        with contextlib.suppress(json.JSONDecodeError):
            function["arguments"] = json.loads(arguments)
    return {**call, "function": function}


def normalize_message(message: Any) -> dict[str, Any]:
    """One OpenAI message as a template takes it; a ValueError when it has no string role."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise ValueError("every message needs a string 'role'")
    out: dict[str, Any] = {"role": message["role"], "content": text_of(message.get("content"))}
    for key in ("name", "tool_call_id"):
        if key in message and message[key] is not None:
            out[key] = message[key]
    if message.get("tool_calls"):
        out["tool_calls"] = [_normalize_tool_call(call) for call in message["tool_calls"]]
    return out


def render_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    tools: Any,
    *,
    add_generation_prompt: bool = False,
) -> str:
    """``messages`` (normalized) through the tokenizer's chat template, as text."""
    text = tokenizer.apply_chat_template(
        list(messages),
        tools=tools,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )
    return str(text)
