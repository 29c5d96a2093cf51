"""The batched decode loop: a set of rows sharing one model and one KV cache.

Every choice of every request is a row. Rows are left-padded to a common length; the attention
mask hides the padding and ``position_ids`` count only a row's real tokens, so a padded row sees
exactly what it would see alone. One :meth:`Batch.step` samples a token for every row from the
logits the previous forward left, hands out the row's text, drops rows that finished, and runs one
forward over the rest with the KV cache (``cache=``, formerly ``past_key_values``, and
``use_cache=True``).

Rows can join a running batch between steps when the model's cache is the plain
``DynamicCache`` (full attention in every layer): the newcomers are prefilled on their own, then
their cache and the running one are left-padded to the same length and stacked. Models with other
cache layouts (sliding windows, recurrent state) run static batches: nobody joins after the first
prefill. When rows leave, cache columns that only padding still occupies are cut off.

Token accounting: every generated token is one :class:`Piece` (its text may be empty), the
end-of-sequence token that stops a row included, so ``completion_tokens`` in :class:`Finished`
equals the number of pieces. The EOS token's piece carries no text of its own, only whatever was
still held back (text that might have begun a stop sequence, or half a character).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ftserve.inference.engine.models import LoadedModel
from ftserve.inference.engine.sampling import RowSampler, choose_tokens
from ftserve.inference.engine.stops import IncrementalDecoder, StopMatcher
from ftserve.inference.engine.vocab import Vocab
from ftserve.inference.protocol import (
    Finished,
    FinishReason,
    FromInference,
    Piece,
    TokenLogprob,
    TopLogprob,
)
from ftserve.modeling.constraint import TokenConstraint, constrain

Emit = Callable[[FromInference], None]
VERY_UNLIKELY = -9999.0


class Row:
    """One choice being generated."""

    def __init__(
        self,
        *,
        owner: Any,
        request_id: str,
        index: int,
        adapter: str | None,
        sampler: RowSampler,
        decoder: IncrementalDecoder,
        stops: StopMatcher,
        stop_ids: frozenset[int],
        max_tokens: int,
        vocab: Vocab,
        constraint: TokenConstraint | None = None,
    ):
        self.owner = owner
        self.request_id = request_id
        self.index = index
        self.adapter = adapter
        self.sampler = sampler
        self.decoder = decoder
        self.stops = stops
        self.stop_ids = stop_ids
        self.max_tokens = max_tokens
        self.vocab = vocab
        self.constraint = constraint
        self.generated = 0

    def advance(self, token: int) -> tuple[str, FinishReason | None]:
        """Take one generated token: the text to release now, and why the row ends (if so)."""
        self.generated += 1
        self.sampler.observe(token)
        if token in self.stop_ids:
            return self._drain(), "stop"
        if self.constraint is not None:
            self.constraint.advance(token)
        released, stopped = self.stops.feed(self.decoder.push(token))
        if stopped:
            return released, "stop"
        if self.generated >= self.max_tokens:
            return released + self._drain(), "length"
        return released, None

    def _drain(self) -> str:
        released, stopped = self.stops.feed(self.decoder.flush())
        return released if stopped else released + self.stops.flush()


def token_logprob(vocab: Vocab, logprobs: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """``logprobs``: one position's log-softmax over the vocabulary."""
    alternatives: tuple[TopLogprob, ...] = ()
    if top > 0:
        values, ids = logprobs.topk(min(top, logprobs.shape[-1]))
        alternatives = tuple(
            TopLogprob(vocab.text_of(i), max(v, VERY_UNLIKELY), vocab.bytes_of(i))
            for v, i in zip(values.tolist(), ids.tolist(), strict=True)
        )
    value = max(float(logprobs[token]), VERY_UNLIKELY)
    return TokenLogprob(vocab.text_of(token), value, vocab.bytes_of(token), alternatives)


def _constrained(logits: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
    """The logits to sample from: a constrained row's forbidden tokens at -inf. The others are
    untouched (and nothing is copied when no row is constrained); reported logprobs stay those
    of the raw logits, as OpenAI's."""
    constrained = [(i, row.constraint) for i, row in enumerate(rows) if row.constraint]
    return constrain(logits, constrained) if constrained else logits


def _plain_dynamic(cache: Any) -> bool:
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers = getattr(cache, "layers", None) or []
    return (
        type(cache) is DynamicCache
        and bool(layers)
        and all(type(layer) is DynamicLayer for layer in layers)
    )


def _pad_left(tensor: torch.Tensor, extra: int) -> torch.Tensor:
    if extra == 0:
        return tensor
    if tensor.dim() == 2:  # attention mask (rows x length)
        return F.pad(tensor, (extra, 0))
    return F.pad(tensor, (0, 0, extra, 0))  # keys/values (rows x heads x length x dim)


class Batch:
    def __init__(self, model: LoadedModel, pad_id: int, *, exclusive: bool, priority: int = 0):
        self.model = model
        self.pad_id = pad_id
        self.exclusive = exclusive  # a seeded request alone: nobody joins it
        self.priority = priority  # its rows' Generate.priority (live and batch rows never mix)
        self.rows: list[Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self._joinable = True

    @property
    def group(self) -> str:
        return self.model.key

    @property
    def joinable(self) -> bool:
        return not self.exclusive and self._joinable

    def _forward(self, rows: Sequence[Row], **kwargs: Any) -> Any:
        if self.model.keeps_logits:
            kwargs["logits_to_keep"] = 1
        return self.model.forward([r.adapter for r in rows], use_cache=True, **kwargs)

    def add(self, rows: Sequence[Row], prompts: Sequence[Sequence[int]]) -> None:
        """Prefill ``rows`` (one prompt each) and make them part of the batch."""
        device = self.model.device
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[i, length - len(prompt) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(rows, input_ids=ids, attention_mask=mask, position_ids=positions)
        logits = out.logits[:, -1, :].float()
        cache = out.cache
        if self._cache is None or not self.rows:
            self._cache, self._mask, self._logits = cache, mask, logits
            self._joinable = _plain_dynamic(cache)
        else:
            self._merge(cache, mask, logits)
        self.rows.extend(rows)

    def _merge(self, cache: Any, mask: torch.Tensor, logits: torch.Tensor) -> None:
        assert self._mask is not None and self._logits is not None
        old_len, new_len = self._mask.shape[1], mask.shape[1]
        length = max(old_len, new_len)
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            if not (mine.is_initialized and theirs.is_initialized):
                continue
            mine.keys = torch.cat(
                [_pad_left(mine.keys, length - old_len), _pad_left(theirs.keys, length - new_len)]
            )
            mine.values = torch.cat(
                [
                    _pad_left(mine.values, length - old_len),
                    _pad_left(theirs.values, length - new_len),
                ]
            )
        self._mask = torch.cat(
            [_pad_left(self._mask, length - old_len), _pad_left(mask, length - new_len)]
        )
        self._logits = torch.cat([self._logits, logits])

    def remove(self, drop: Callable[[Row], bool]) -> list[Row]:
        """Take out the rows ``drop`` picks (before the next step); returns them."""
        keep = [i for i, row in enumerate(self.rows) if not drop(row)]
        removed = [row for row in self.rows if drop(row)]
        if removed:
            self._keep(keep)
        return removed

    def _keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._cache = self._mask = self._logits = None
            return
        assert self._mask is not None and self._logits is not None
        index = torch.tensor(keep, dtype=torch.long, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        self._logits = self._logits[index]
        if _plain_dynamic(self._cache):
            # Columns every remaining row has as padding cost attention time for nothing.
            used = self._mask.any(dim=0).nonzero()
            start = int(used[0]) if used.numel() else 0
            if start > 0:
                self._mask = self._mask[:, start:]
                for layer in self._cache.layers:
                    if layer.is_initialized:
                        layer.keys = layer.keys[:, :, start:, :]
                        layer.values = layer.values[:, :, start:, :]

    def step(self, emit: Emit) -> list[Row]:
        """Generate one token for every row; returns the rows that finished."""
        if not self.rows:
            return []
        assert self._logits is not None and self._mask is not None
        logits = self._logits
        samplers = [row.sampler for row in self.rows]
        tokens = choose_tokens(_constrained(logits, self.rows), samplers)
        logprobs = None
        if any(s.logprobs for s in samplers):
            logprobs = torch.log_softmax(logits, dim=-1)
        keep: list[int] = []
        finished: list[Row] = []
        for i, (row, token) in enumerate(zip(self.rows, tokens, strict=True)):
            text, reason = row.advance(token)
            entry = None
            if logprobs is not None and row.sampler.logprobs:
                entry = token_logprob(row.vocab, logprobs[i], token, row.sampler.top_logprobs)
            emit(Piece(row.request_id, row.index, text, entry))
            if reason is None:
                keep.append(i)
            else:
                emit(Finished(row.request_id, row.index, reason, row.generated))
                finished.append(row)
        if len(keep) < len(self.rows):
            self._keep(keep)
        if self.rows:
            self._decode([tokens[i] for i in keep])
        return finished

    def _decode(self, tokens: list[int]) -> None:
        assert self._mask is not None
        mask = self._mask
        ids = torch.tensor(tokens, dtype=torch.long, device=mask.device).unsqueeze(1)
        positions = mask.sum(dim=1, keepdim=True)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = self._forward(
            self.rows,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._cache,
        )
        self._mask = mask
        self._cache = out.cache
        self._logits = out.logits[:, -1, :].float()


def prompt_logprobs(model: LoadedModel, adapter: str | None, ids: Sequence[int]) -> torch.Tensor:
    """Log-softmax at every prompt position (position t predicts token t + 1)."""
    tensor = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    out = model.forward([adapter], input_ids=tensor, use_cache=False)
    return torch.log_softmax(out.logits[0].float(), dim=-1)
