"""Turning generated token ids into text that is safe to hand out, one token at a time.

Two things hold text back:

* :class:`IncrementalDecoder` never splits a character. Byte-level vocabularies can end a token
  in the middle of a multi-byte UTF-8 sequence; decoding such a prefix yields U+FFFD, so text is
  released only once the decoded tail no longer ends in one. It decodes a short window of
  previous ids together with the new ones and releases the difference, because SentencePiece-style
  tokenizers render a token's leading space only when something precedes it.
* :class:`StopMatcher` holds back text that may be the start of a stop sequence and releases it
  as soon as it can no longer be one. When a stop sequence completes, the text before it is
  released and the stop text itself (and anything after it) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    def __init__(self, tokenizer: Any, context: Sequence[int] = (), *, skip_special: bool = True):
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        # A few ids of context, so the first new token decodes as it would mid-sequence.
        self._ids: list[int] = list(context[-4:])
        self._prefix = 0
        self._read = len(self._ids)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self._tokenizer.decode(
            ids, skip_special_tokens=self._skip_special, clean_up_tokenization_spaces=False
        )
        return str(text)

    def push(self, token_id: int) -> str:
        """The text that token completes (may be empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            out = new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self._ids)
            return out
        return ""

    def flush(self) -> str:
        """Whatever is still held (an incomplete character comes out as U+FFFD)."""
        if self._read == len(self._ids):
            return ""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return new_text[len(prefix_text) :]


class StopMatcher:
    def __init__(self, stops: Sequence[str]):
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text to release, whether a stop sequence was completed)."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        # The stop that completes first wins, as if the text had come one character at a time.
        found = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)[1]], True
        keep = self._partial_match_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def _partial_match_length(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:k]):
                    best = k
                    break
        return best

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
