"""What crosses the channel between the API process and the inference process.

Plain frozen dataclasses, pickled over a ``multiprocessing`` connection. No torch, no
transformers: the API imports this module, the inference process answers with it.

A request's life on the channel::

    API → inference   Generate(request_id, model, prompt, sampling)
    inference → API   Accepted(request_id, prompt_tokens, ...)   or   Rejected(...) and nothing more
    inference → API   Piece(request_id, index, text, logprob)     zero or more per choice
    inference → API   Finished(request_id, index, reason, ...)    once per choice (n in all)
    API → inference   Cancel(request_id)                          any time: the client went away
    inference → API   Failed(request_id, message)                 instead of the rest, on an error

``Accepted``/``Rejected`` always comes first, so the API can answer a bad request (a prompt too
long for the context, say) with a plain 4xx before any stream has started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ModelKind = Literal["base", "lora", "full"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model that can answer requests, and where its weights are."""

    name: str  # the id the caller asked for; echoed as the response's ``model``
    kind: ModelKind
    # What the base model loads from: "ftserve-tiny", an absolute Hugging Face directory, or
    # "gguf:/abs/path/model.gguf" (converted once into the models dir, then cached).
    base_source: str
    # kind "lora": the PEFT adapter directory; kind "full": the full model directory. Both hold
    # the tokenizer with the chat template the trainer used. None for kind "base". A local path
    # on a directory blob store; on a remote one its location (s3://…), which the inference
    # process downloads once into its cache.
    weights: str | None = None
    chat: bool = True  # False: trained on prompt/completion rows, served on /completions only


@dataclass(frozen=True, slots=True)
class Sampling:
    # None: the room left in the model's context, capped by the server's generation limit.
    max_tokens: int | None = None
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()  # generation ends before any of these; the stop text is not returned
    seed: int | None = None  # same seed, same request → same text
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0  # 0..20, only with logprobs
    # Every choice must match this llguidance grammar (Lark text; ``%json {…}`` embeds a JSON
    # schema): built by the API from ``response_format`` or forced tools, compiled here.
    grammar: str | None = None


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """Rendered with the chat template saved with the model (add_generation_prompt=True)."""

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """A legacy completions prompt: text, or token ids."""

    text: str | tuple[int, ...]
    echo: bool = False  # the prompt comes back before the completion (with logprobs if asked)


@dataclass(frozen=True, slots=True)
class Generate:
    request_id: str
    model: ServedModel
    prompt: ChatPrompt | TextPrompt
    sampling: Sampling
    # Lower goes first: live requests are 0, a batch's lines BATCH_PRIORITY, so a waiting live
    # request takes the next free row before any waiting batch line.
    priority: int = 0


LIVE_PRIORITY = 0
BATCH_PRIORITY = 1
# A batch line's decode batch holds this many times ``max_batch`` rows: nobody waits on a batch
# line's next token, so its rows trade latency for throughput (a fuller forward costs little
# more than a half-full one).
BATCH_ROWS_FACTOR = 2


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: str


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float  # -9999.0 stands for "very unlikely", as OpenAI's
    bytes: tuple[int, ...] | None
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Piece:
    """One generated token's worth of text for choice ``index``. ``text`` may be empty (a token
    that completes no character yet, or text held back while it may still begin a stop
    sequence); it is then carried by a later piece. ``logprob`` is set when asked for."""

    request_id: str
    index: int
    text: str
    logprob: TokenLogprob | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    prompt_tokens: int
    context_length: int
    # echo=True on a TextPrompt: the prompt's tokens as pieces (logprob of the first is None).
    echo: tuple[Piece, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """The request cannot run; rendered as an OpenAI error with these fields."""

    request_id: str
    status: int  # 400 or 404
    message: str
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    request_id: str
    index: int
    finish_reason: FinishReason
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The inference process could not finish the request (an error while generating)."""

    request_id: str
    message: str


ToInference = Generate | Cancel
FromInference = Accepted | Rejected | Piece | Finished | Failed


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the inference process needs from the service's settings (picklable)."""

    models_dir: str  # where ftserve-tiny and converted GGUF models are cached
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int = 1
    max_adapters: int = 8  # LoRA adapters kept loaded over their base, least recently used out
    memory_budget: int = 8 << 30  # bytes for loaded full models and bases, LRU out beyond it
    max_batch: int = 8  # requests decoded together
    max_generation_tokens: int = 4096  # cap on n * max_tokens per request
    # Where fine-tuned weights are fetched from when ``ServedModel.weights`` is a blob location
    # rather than a local directory (a remote blob store): its URL and endpoint, and the local
    # cache they are downloaded into (blobs/cache.py).
    blob_url: str | None = None
    s3_endpoint_url: str | None = None
    cache_dir: str | None = None
