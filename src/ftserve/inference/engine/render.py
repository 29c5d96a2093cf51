"""From a request's prompt to the token ids the model sees, and how many it may add.

Prompts are rendered exactly as training rendered its rows, so a fine-tune sees at inference what
it learned from:

* a chat prompt goes through the tokenizer's chat template with ``add_generation_prompt=True``
  (through ``ftserve.modeling.chat``, as training renders its rows) and the text is tokenized
  without adding special tokens, since the template writes its own BOS;
* a text prompt is tokenized with the tokenizer's special tokens, like the prompt of a
  prompt/completion row; a prompt given as token ids is used as given.

The completion budget: an explicit ``max_tokens`` must fit the context after the prompt (else
OpenAI's ``context_length_exceeded``) and ``n * max_tokens`` must stay within the server's
``max_generation_tokens``; an omitted one is the room left in the context, shrunk to
``max_generation_tokens // n``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftserve.inference.engine.models import ModelInfo
from ftserve.inference.protocol import ChatPrompt, Sampling, TextPrompt
from ftserve.modeling.chat import normalize_message, render_chat


class RequestRejected(Exception):
    def __init__(self, status: int, message: str, param: str | None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Rendered:
    prompt_ids: list[int]
    max_tokens: int
    stops: tuple[str, ...]


def prompt_ids(info: ModelInfo, prompt: ChatPrompt | TextPrompt) -> list[int]:
    tokenizer = info.tokenizer
    if isinstance(prompt, ChatPrompt):
        try:
            messages = [normalize_message(m) for m in prompt.messages]
            text = render_chat(
                tokenizer,
                messages,
                list(prompt.tools) if prompt.tools else None,
                add_generation_prompt=True,
            )
        except Exception as exc:
            raise RequestRejected(
                400,
                f"The messages cannot be rendered with this model's chat template: {exc}",
                "messages",
            ) from exc
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if isinstance(prompt.text, str):
        return list(tokenizer(prompt.text, add_special_tokens=True)["input_ids"])
    ids = [int(t) for t in prompt.text]
    bad = [t for t in ids if not 0 <= t < info.vocab_size]
    if bad:
        raise RequestRejected(
            400,
            f"Invalid token id {bad[0]} in the prompt: this model's vocabulary has ids 0 to "
            f"{info.vocab_size - 1}.",
            "prompt",
        )
    return ids


def _too_long(chat: bool, context: int, prompt: int, completion: int | None) -> RequestRejected:
    if chat:
        if completion is None:
            message = (
                f"This model's maximum context length is {context} tokens. However, your "
                f"messages resulted in {prompt} tokens. Please reduce the length of the messages."
            )
        else:
            message = (
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {prompt + completion} tokens ({prompt} in the messages, {completion} "
                "in the completion). Please reduce the length of the messages or completion."
            )
        return RequestRejected(400, message, "messages", "context_length_exceeded")
    asked = 1 if completion is None else completion
    message = (
        f"This model's maximum context length is {context} tokens, however you requested "
        f"{prompt + asked} tokens ({prompt} in your prompt; {asked} for the completion). "
        "Please reduce your prompt; or completion length."
    )
    return RequestRejected(400, message, None, "context_length_exceeded")


def check_sampling(info: ModelInfo, sampling: Sampling) -> None:
    for token, _ in sampling.logit_bias:
        if not 0 <= token < info.vocab_size:
            raise RequestRejected(
                400,
                f"Invalid key {token} in logit_bias: this model's vocabulary has token ids 0 to "
                f"{info.vocab_size - 1}.",
                "logit_bias",
            )
    if sampling.n < 1:
        raise RequestRejected(400, f"n must be at least 1, got {sampling.n}.", "n")


def render(
    info: ModelInfo, prompt: ChatPrompt | TextPrompt, sampling: Sampling, max_generation: int
) -> Rendered:
    check_sampling(info, sampling)
    ids = prompt_ids(info, prompt)
    chat = isinstance(prompt, ChatPrompt)
    if not ids:
        raise RequestRejected(400, "The prompt is empty.", "messages" if chat else "prompt")
    context = info.context_length
    asked = sampling.max_tokens
    if len(ids) + (asked or 1) > context:
        raise _too_long(chat, context, len(ids), asked)
    n = sampling.n
    if asked is None:
        per_choice = max_generation // n
        if per_choice < 1:
            raise RequestRejected(
                400,
                f"n={n} choices exceed this server's generation limit of {max_generation} "
                "tokens per request.",
                "n",
            )
        max_tokens = min(context - len(ids), per_choice)
    else:
        if asked < 0:
            raise RequestRejected(400, f"max_tokens must be at least 0, got {asked}.", "max_tokens")
        if n * asked > max_generation:
            raise RequestRejected(
                400,
                f"max_tokens is too large: {asked} tokens for each of {n} choices is "
                f"{n * asked} tokens, and this server generates at most {max_generation} "
                "tokens per request (n * max_tokens).",
                "max_tokens",
            )
        max_tokens = asked
    stops = tuple(sampling.stop)
    if chat and info.chat_stop_text is not None and info.chat_stop_text not in stops:
        stops = (*stops, info.chat_stop_text)
    return Rendered(prompt_ids=ids, max_tokens=max_tokens, stops=stops)
