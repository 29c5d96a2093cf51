"""The model layer's logits constraint on ftserve-tiny's byte tokenizer (no model): exactly the
tokens the grammar allows survive, stop tokens only where the grammar may end, and a dead end
(which no sound grammar reaches) ends the row instead of leaving nothing to sample."""

from __future__ import annotations

import numpy as np
import torch

from ftserve.modeling.constraint import Grammars, TokenConstraint, allowed_tokens, constrain
from ftserve.modeling.tiny_model import build_byte_tokenizer

EOS, END_OF_TURN = 258, 260


def test_masks_follow_the_grammar_and_its_end() -> None:
    grammars = Grammars(build_byte_tokenizer(), [EOS, END_OF_TURN])
    row = grammars.constraint('start: "ab" | "ac"')
    width = 300  # wider than the tokenizer, as a padded embedding matrix is
    assert np.flatnonzero(allowed_tokens([row], width)).tolist() == [ord("a")]
    row.advance(ord("a"))
    assert np.flatnonzero(allowed_tokens([row], width)).tolist() == [ord("b"), ord("c")]
    row.advance(ord("c"))
    assert np.flatnonzero(allowed_tokens([row], width)).tolist() == [EOS, END_OF_TURN]
    fresh = grammars.constraint('start: "ab" | "ac"')  # a copy of the cached one, from the start
    logits = torch.zeros(2, width)
    out = constrain(logits, [(1, fresh)])
    assert out[0].isfinite().all()  # the unconstrained row is untouched
    assert out[1].isfinite().nonzero().flatten().tolist() == [ord("a")]


class _DeadEnd(TokenConstraint):
    def __init__(self) -> None:
        super().__init__(None, 9, [EOS, END_OF_TURN])

    def fill(self, bitmask: np.ndarray) -> None:
        bitmask[:] = 0


def test_a_dead_end_allows_only_the_stop_tokens() -> None:
    assert np.flatnonzero(allowed_tokens([_DeadEnd()], 261)).tolist() == [EOS, END_OF_TURN]
