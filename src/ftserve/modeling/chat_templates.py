"""Chat templates ftserve supplies itself.

Both are ChatML-shaped (``<|im_start|>role\\n…<|im_end|>\\n``) and wrap every assistant turn in
``{% generation %}…{% endgeneration %}`` so ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` marks exactly the tokens the model should learn to produce:
the assistant content, its tool calls and the end-of-turn marker.

Tool definitions go into a leading system block, one JSON schema per line; tool calls are
rendered as ``<tool_call>{"name": …, "arguments": …}</tool_call>`` lines; ``tool`` messages are
ordinary turns with role ``tool``.

:data:`TINY_CHAT_TEMPLATE` belongs to ftserve-tiny, whose vocabulary has ``<|im_start|>`` and
``<|im_end|>`` as special tokens and starts every sequence with ``<|bos|>``.

:data:`CHATML_FALLBACK_TEMPLATE` is given to a user's tokenizer that has no chat template (GPT-2,
base models). ``<|im_start|>``/``<|im_end|>`` are not in such a vocabulary and are tokenized as
plain text, so the vocabulary and the embeddings stay untouched (with LoRA the embeddings are not
trained, so new tokens would stay random). Each assistant turn ends with ``<|im_end|>`` followed by
the tokenizer's EOS token, so a model trained this way stops generating on its own. The template
is saved with the tokenizer in every checkpoint and in the final model, so inference renders
conversations the same way.
"""

from __future__ import annotations

CHATML_END_OF_TURN = "<|im_end|>"
"""Ends every turn of both templates; inference stops a chat answer on it."""

_TOOLS_BLOCK = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n# Tools\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson }}{{- '\\n' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
)

_CONTENT = (
    "{%- if message.content is string %}{{- message.content }}"
    "{%- elif message.content %}"
    "{%- for part in message.content %}{%- if part.text is defined %}{{- part.text }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
)

_TOOL_CALLS = (
    "{%- if message.tool_calls %}"
    "{%- for call in message.tool_calls %}"
    "{%- set fn = call.function if call.function is defined else call %}"
    "{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>' }}"
    '{{- {"name": fn.name, "arguments": fn.arguments} | tojson }}'
    "{{- '</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
)


def _chatml(prefix: str, end_of_assistant_turn: str) -> str:
    return (
        prefix
        + _TOOLS_BLOCK
        + "{%- for message in messages %}"
        + "{{- '<|im_start|>' + message.role + '\\n' }}"
        + "{%- if message.role == 'assistant' %}"
        + "{%- generation %}"
        + _CONTENT
        + _TOOL_CALLS
        + end_of_assistant_turn
        + "{%- endgeneration %}"
        + "{{- '\\n' }}"
        + "{%- else %}"
        + _CONTENT
        + "{{- '<|im_end|>\\n' }}"
        + "{%- endif %}"
        + "{%- endfor %}"
        + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


TINY_CHAT_TEMPLATE = _chatml("{{- bos_token }}", "{{- '<|im_end|>' }}")

CHATML_FALLBACK_TEMPLATE = _chatml(
    "",
    "{{- '<|im_end|>' }}{%- if eos_token is defined and eos_token %}{{- eos_token }}{%- endif %}",
)
