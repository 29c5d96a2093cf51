"""Requests in, messages out: validation, batching, and the order of what is sent.

:meth:`Engine.submit` validates a request at once (model files, rendering, context length), so
``Accepted``/``Rejected`` go out before any decoding; a model whose files are missing or cannot be
loaded gets ``Failed``. Accepted requests wait in a queue and are placed into batches between
decode steps:

* rows of one loaded model (a base with any of its adapters, or one full model) share a batch of
  at most ``settings.max_batch`` rows (``BATCH_ROWS_FACTOR`` times that for batch lines), and new
  requests join a running batch at the next step;
* a request with a ``seed`` runs in a batch of its own that nobody joins, because batch
  composition changes the floating-point results a little, which could change a sampled token;
  alone, the same seed gives the same text whatever else the server is doing;
* a request with more choices than ``max_batch`` runs in a batch of its own;
* up to ``MAX_BATCHES`` batches are in flight at once, stepped in turn;
* live requests and batch lines (``Generate.priority``) never share a batch; waiting live
  requests are placed first, batch lines leave one of the ``MAX_BATCHES`` slots to live ones
  and wait for a row of their model's batch rather than open a second one, and while a live
  batch runs the batch lines' batches step only one round in ``BATCH_EVERY``.

An exception while a batch steps fails the requests in that batch (``Failed``) and nothing else.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ftserve.inference.engine.decode import Batch, Emit, Row, prompt_logprobs, token_logprob
from ftserve.inference.engine.models import LoadedModel, ModelInfo, ModelStore, ModelUnavailable
from ftserve.inference.engine.render import Rendered, RequestRejected, render
from ftserve.inference.engine.sampling import RowSampler
from ftserve.inference.engine.stops import IncrementalDecoder, StopMatcher
from ftserve.inference.protocol import (
    BATCH_ROWS_FACTOR,
    LIVE_PRIORITY,
    Accepted,
    EngineSettings,
    Failed,
    Finished,
    Generate,
    Piece,
    Rejected,
    TextPrompt,
)
from ftserve.modeling.constraint import GrammarError
from ftserve.modeling.device import resolve_device
from ftserve.modeling.errors import ModelFailed

MAX_BATCHES = 4
# While a live batch runs, the batch-priority batches step once every this many rounds: batch
# lines go on, slowly, and a live row's step is not shared with (nor waits on) theirs.
BATCH_EVERY = 4


@dataclass
class Request:
    generate: Generate
    info: ModelInfo
    rendered: Rendered
    open_choices: int
    model: LoadedModel | None = None
    adapter: str | None = None
    batch: Batch | None = field(default=None, repr=False)

    @property
    def request_id(self) -> str:
        return self.generate.request_id

    @property
    def exclusive(self) -> bool:
        return self.generate.sampling.seed is not None


class Engine:
    def __init__(self, settings: EngineSettings, emit: Emit):
        self.settings = settings
        self.emit = emit
        try:
            device = resolve_device(settings.device)
        except ModelFailed as exc:
            raise RuntimeError(exc.message) from exc
        self.store = ModelStore(settings, device)
        self.pending: deque[Request] = deque()
        self.batches: list[Batch] = []
        self.requests: dict[str, Request] = {}
        self._round = 0

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.batches)

    # -- messages in ----------------------------------------------------------------------------

    def submit(self, generate: Generate) -> None:
        rid = generate.request_id
        if rid in self.requests:
            self.emit(Rejected(rid, 400, f"Request id {rid!r} is already in progress.", None))
            return
        try:
            info = self.store.info(generate.model)
            rendered = render(
                info, generate.prompt, generate.sampling, self.settings.max_generation_tokens
            )
            echo = self._echo(generate, info, rendered)
            if generate.sampling.grammar is not None:
                info.grammars.compile(generate.sampling.grammar)
        except GrammarError as exc:
            # The API checked the schema; what it could not foresee is this tokenizer.
            self.emit(Rejected(rid, 400, f"Invalid 'response_format': {exc}", "response_format"))
            return
        except RequestRejected as exc:
            self.emit(Rejected(rid, exc.status, exc.message, exc.param, exc.code))
            return
        except ModelUnavailable as exc:
            self.emit(Failed(rid, str(exc)))
            return
        except Exception as exc:
            self.emit(Failed(rid, f"Could not prepare the request: {exc}"))
            return
        self.emit(Accepted(rid, len(rendered.prompt_ids), info.context_length, echo))
        n = generate.sampling.n
        if rendered.max_tokens == 0:
            for index in range(n):
                self.emit(Finished(rid, index, "length", 0))
            return
        request = Request(generate, info, rendered, open_choices=n)
        self.requests[rid] = request
        self.pending.append(request)

    def cancel(self, request_id: str) -> None:
        request = self.requests.pop(request_id, None)
        if request is None:
            return
        if request.batch is None:
            self.pending.remove(request)
            return
        request.batch.remove(lambda row: row.owner is request)
        self._release(request)

    # -- the loop -------------------------------------------------------------------------------

    def run_once(self) -> None:
        """Place waiting requests, then one decode step for every batch (for the batch-priority
        ones, while live ones run, one round in ``BATCH_EVERY``)."""
        self._admit()
        self._round += 1
        live = any(b.priority == LIVE_PRIORITY for b in self.batches)
        for batch in list(self.batches):
            if live and batch.priority != LIVE_PRIORITY and self._round % BATCH_EVERY:
                continue
            try:
                finished = batch.step(self.emit)
            except Exception as exc:
                self._fail_batch(batch, exc)
                continue
            for row in finished:
                request: Request = row.owner
                request.open_choices -= 1
                if request.open_choices == 0:
                    self.requests.pop(request.request_id, None)
                    self._release(request)
            if not batch.rows:
                self.batches.remove(batch)

    def _admit(self) -> None:
        waiting: deque[Request] = deque()
        joining: dict[int, tuple[Batch, list[Request]]] = {}
        # Live requests are placed before batch lines (stable: arrival order within each).
        order = sorted(self.pending, key=lambda r: r.generate.priority)
        self.pending = deque(order)
        while self.pending:
            request = self.pending.popleft()
            batch = self._place(request, joining)
            if batch is None:
                waiting.append(request)
                continue
            joining.setdefault(id(batch), (batch, []))[1].append(request)
        self.pending = waiting
        for batch, requests in joining.values():
            self._prefill(batch, requests)
            if not batch.rows and batch in self.batches:
                self.batches.remove(batch)

    def _place(
        self, request: Request, joining: dict[int, tuple[Batch, list[Request]]]
    ) -> Batch | None:
        n = request.generate.sampling.n
        priority = request.generate.priority
        limit = self.settings.max_batch * (1 if priority == LIVE_PRIORITY else BATCH_ROWS_FACTOR)
        if not request.exclusive and n <= limit:
            for batch in self.batches:
                planned = sum(r.generate.sampling.n for r in joining.get(id(batch), (batch, []))[1])
                if (
                    batch.group == request.info.group
                    and batch.priority == priority
                    and batch.joinable
                    and len(batch.rows) + planned + n <= limit
                    and (batch.rows or planned)
                ):
                    return batch
            if priority != LIVE_PRIORITY and any(
                b.group == request.info.group and b.priority == priority and b.joinable
                for b in self.batches
            ):
                # A batch line waits for a row of its model's full batch rather than opening a
                # second, smaller batch stepped in turn (one fuller forward is cheaper).
                return None
        # Batch lines leave one slot to live requests.
        slots = MAX_BATCHES if priority == LIVE_PRIORITY else MAX_BATCHES - 1
        if len(self.batches) >= slots:
            return None
        try:
            model, _ = self._acquire_probe(request)
        except Exception as exc:
            self._fail(request, str(exc))
            return None
        exclusive = request.exclusive or n > limit
        batch = Batch(model, request.info.pad_id, exclusive=exclusive, priority=priority)
        self.batches.append(batch)
        return batch

    def _acquire_probe(self, request: Request) -> tuple[LoadedModel, str | None]:
        # Loads the weights (and adapter) now, so the new batch knows its model; the lease is
        # the request's own and is kept.
        model, adapter = self.store.acquire(request.info)
        request.model, request.adapter = model, adapter
        return model, adapter

    def _prefill(self, batch: Batch, requests: list[Request]) -> None:
        rows: list[Row] = []
        prompts: list[list[int]] = []
        admitted: list[Request] = []
        for request in requests:
            try:
                if request.model is None:
                    self._acquire_probe(request)
                if request.model is not batch.model:
                    raise ModelUnavailable("The model was reloaded; try again.")
                mine = [self._row(request, i) for i in range(request.generate.sampling.n)]
            except Exception as exc:
                self._fail(request, str(exc))
                continue
            admitted.append(request)
            rows.extend(mine)
            prompts.extend(request.rendered.prompt_ids for _ in mine)
        if not rows:
            return
        try:
            batch.add(rows, prompts)
        except Exception as exc:
            for request in admitted:
                self._fail(request, f"Generation failed: {exc}")
            return
        for request in admitted:
            request.batch = batch

    def _row(self, request: Request, index: int) -> Row:
        info = request.info
        sampling = request.generate.sampling
        return Row(
            owner=request,
            request_id=request.request_id,
            index=index,
            adapter=request.adapter,
            sampler=RowSampler(sampling, index, info.vocab_size, request.model.device),  # type: ignore[union-attr]
            decoder=IncrementalDecoder(info.tokenizer, request.rendered.prompt_ids),
            stops=StopMatcher(request.rendered.stops),
            stop_ids=info.stop_ids,
            max_tokens=request.rendered.max_tokens,
            vocab=info.vocab,
            constraint=info.grammars.constraint(sampling.grammar) if sampling.grammar else None,
        )

    # -- endings --------------------------------------------------------------------------------

    def _release(self, request: Request) -> None:
        if request.model is not None:
            self.store.release(request.model, request.adapter)
            request.model = None

    def _fail(self, request: Request, message: str) -> None:
        if self.requests.pop(request.request_id, None) is not None:
            self.emit(Failed(request.request_id, message))
        self._release(request)

    def _fail_batch(self, batch: Batch, exc: Exception) -> None:
        owners: dict[int, Request] = {id(row.owner): row.owner for row in batch.rows}
        batch.remove(lambda row: True)
        for request in owners.values():
            self._fail(request, f"Generation failed: {exc}")
        if batch in self.batches:
            self.batches.remove(batch)

    # -- echo -----------------------------------------------------------------------------------

    def _echo(self, generate: Generate, info: ModelInfo, rendered: Rendered) -> tuple[Piece, ...]:
        prompt = generate.prompt
        if not isinstance(prompt, TextPrompt) or not prompt.echo:
            return ()
        rid = generate.request_id
        ids = rendered.prompt_ids
        decoder = IncrementalDecoder(info.tokenizer)
        texts = [decoder.push(token) for token in ids]
        texts[-1] += decoder.flush()
        sampling = generate.sampling
        if not sampling.logprobs:
            return tuple(Piece(rid, 0, text) for text in texts)
        model, adapter = self.store.acquire(info)
        try:
            logprobs = prompt_logprobs(model, adapter, ids)
        finally:
            self.store.release(model, adapter)
        pieces = [Piece(rid, 0, texts[0])]
        for t in range(1, len(ids)):
            entry = token_logprob(info.vocab, logprobs[t - 1], ids[t], sampling.top_logprobs)
            pieces.append(Piece(rid, 0, texts[t], entry))
        return tuple(pieces)
