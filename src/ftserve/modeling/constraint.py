"""Constrained decoding: the tokens a grammar allows next, as a mask over a row's logits.

The grammar engine is llguidance (a small Rust library without dependencies): a grammar is its
JSON or Lark text (``%json {…}`` embeds a JSON schema), compiled lazily against the tokenizer,
so compiling costs well under a millisecond and each step's mask tens of microseconds on CPU.

:class:`Grammars` belongs to one tokenizer: it compiles each grammar text once and keeps the
compiled matcher (and the lexer states it has built) as a prototype; every constrained row gets a
copy of it (:class:`TokenConstraint`). The tokenizer's stop tokens are the grammar's end: they are
allowed exactly where the grammar accepts, and are the only tokens allowed once it is complete.

Inference's decode loop uses this per row; the training child can use it the same way to sample
constrained completions.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch

GRAMMAR_CACHE = 64  # compiled grammars kept per tokenizer, least recently used out
TOKENIZER_CACHE = 8  # llguidance's views of tokenizers, shared by models with the same one

# Preparing a tokenizer for llguidance takes ~0.5 s on a 50k vocabulary; the LoRA adapters of one
# base each load their own copy of the same tokenizer, so the prepared one is shared by content.
_prepared: OrderedDict[str, Any] = OrderedDict()


class GrammarError(ValueError):
    """The grammar cannot be compiled; the message says why (llguidance's words)."""


class TokenConstraint:
    """One row's position in its grammar."""

    def __init__(self, matcher: Any, words: int, stop_ids: list[int]):
        self._matcher = matcher
        self.words = words  # 32-bit words of its bitmask: one bit per token id
        self.stop_ids = stop_ids

    def fill(self, bitmask: np.ndarray) -> None:
        """Write the allowed next tokens into ``bitmask`` (int32, at least ``words`` long)."""
        self._matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, self.words * 4)

    def advance(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise GrammarError(f"token {token} broke the grammar: {self._matcher.get_error()}")


def allowed_tokens(constraints: Sequence[TokenConstraint], width: int) -> np.ndarray:
    """Which of ``width`` token ids each constraint allows next (bool, rows x width): computed
    for all of a step's constrained rows at once, in numpy, since per-row tensor operations
    would cost more than the grammar itself on a small model."""
    words = max(c.words for c in constraints)
    bitmask = np.zeros((len(constraints), words), dtype=np.int32)
    for words_of_row, constraint in zip(bitmask, constraints, strict=True):
        constraint.fill(words_of_row)
    # Little-endian words, least significant bit first: bit t of the row is token t.
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, count=width, bitorder="little")
    allowed = bits.astype(np.bool_)
    for row in np.flatnonzero(~allowed.any(axis=1)).tolist():  # a dead end (no sound grammar has)
        allowed[row, [i for i in constraints[row].stop_ids if i < width]] = True  # ends the row
    return allowed


def constrain(logits: torch.Tensor, rows: Sequence[tuple[int, TokenConstraint]]) -> torch.Tensor:
    """A copy of ``logits`` (rows x vocabulary) with each listed row's forbidden tokens at -inf;
    the other rows untouched."""
    allowed = allowed_tokens([c for _, c in rows], logits.shape[1])
    forbidden = np.zeros(logits.shape, dtype=np.bool_)
    forbidden[[i for i, _ in rows]] = ~allowed
    return logits.masked_fill(torch.from_numpy(forbidden).to(logits.device), float("-inf"))


def _prepare(tokenizer: Any, stop_ids: list[int]) -> Any:
    content = tokenizer.backend_tokenizer.to_str() + repr(stop_ids)  # fast tokenizers only
    key = hashlib.sha256(content.encode()).hexdigest()
    prepared = _prepared.get(key)
    if prepared is None:
        # The tokenizer's own length, not the model's (often padded) embedding count: llguidance
        # must know every id's bytes.
        prepared = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=len(tokenizer), eos_token=stop_ids or None
        )
        _prepared[key] = prepared
        if len(_prepared) > TOKENIZER_CACHE:
            _prepared.popitem(last=False)
    _prepared.move_to_end(key)
    return prepared


class Grammars:
    """Compiled grammars for one tokenizer (a transformers fast tokenizer)."""

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int]):
        self._hf = tokenizer
        self._stop_ids = sorted(stop_ids)
        self._tokenizer: Any = None
        self._compiled: OrderedDict[str, Any] = OrderedDict()

    def _lltokenizer(self) -> Any:
        if self._tokenizer is None:
            try:
                self._tokenizer = _prepare(self._hf, self._stop_ids)
            except Exception as exc:  # a slow (pure Python) tokenizer, say
                raise GrammarError(
                    f"this model's tokenizer cannot be used for constrained decoding ({exc})"
                ) from exc
        return self._tokenizer

    def compile(self, grammar: str) -> Any:
        """The prototype matcher for ``grammar`` (compiled on first use); GrammarError if it
        cannot be."""
        matcher = self._compiled.get(grammar)
        if matcher is not None:
            self._compiled.move_to_end(grammar)
            return matcher
        tokenizer = self._lltokenizer()
        matcher = llguidance.LLMatcher(tokenizer, grammar)
        if matcher.is_error():
            raise GrammarError(str(matcher.get_error()))
        self._compiled[grammar] = matcher
        if len(self._compiled) > GRAMMAR_CACHE:
            self._compiled.popitem(last=False)
        return matcher

    def constraint(self, grammar: str) -> TokenConstraint:
        prototype = self.compile(grammar)
        words = (self._lltokenizer().vocab_size + 31) // 32
        return TokenConstraint(prototype.deep_copy(), words, self._stop_ids)
