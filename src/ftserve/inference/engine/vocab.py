"""What a single token looks like in a logprobs entry: its text and its UTF-8 bytes.

A token's text alone can be U+FFFD (a byte-level token holding half a character), so OpenAI also
reports the bytes. They are recovered per vocabulary style: byte-level BPE tokens map back through
the GPT-2 byte table, SentencePiece byte-fallback tokens are written ``<0xNN>``, SentencePiece
word pieces mark spaces with ``▁``; anything else (added and special tokens) is its text.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_decoder() -> dict[str, int]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[str, int] = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in type(decoder).__name__ + repr(decoder)


class Vocab:
    """Token text and bytes for one tokenizer, cached per id."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._byte_level = _is_byte_level(tokenizer)
        self._special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
        self._added = {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
        self._text: dict[int, str] = {}
        self._bytes: dict[int, tuple[int, ...]] = {}

    def text_of(self, token_id: int) -> str:
        text = self._text.get(token_id)
        if text is None:
            text = str(self._tokenizer.decode([token_id], clean_up_tokenization_spaces=False))
            self._text[token_id] = text
        return text

    def bytes_of(self, token_id: int) -> tuple[int, ...]:
        data = self._bytes.get(token_id)
        if data is None:
            data = tuple(self._compute_bytes(token_id))
            self._bytes[token_id] = data
        return data

    def _compute_bytes(self, token_id: int) -> bytes:
        if token_id in self._special or token_id in self._added:
            return self.text_of(token_id).encode("utf-8")
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        if not isinstance(piece, str):
            return self.text_of(token_id).encode("utf-8")
        if self._byte_level:
            table = _byte_decoder()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        match = _BYTE_FALLBACK.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        if "▁" in piece:
            return piece.replace("▁", " ").encode("utf-8")
        return self.text_of(token_id).encode("utf-8")
