"""Structured outputs (constrained decoding with llguidance), measured side by side in one run.

1. Decode tokens/s of one streamed, greedy chat request with a JSON schema (``response_format``
   json_schema, strict) against the same request without one, through ``/v1/chat/completions``
   on the same server. Goal: >= 0.8x.
2. Grammar compile time for a typical schema (the SDK's schema of a small Pydantic model), in
   this process on the model's tokenizer: the tokenizer's one-time preparation, a cold compile
   plus its first mask, and a cached one (a copy of the compiled grammar plus its first mask);
   and the median time of one step's mask.
3. Unconstrained rows beside a constrained one: the aggregate tokens/s of 4 plain streams
   decoded together with a 5th stream that has a JSON schema, against the same 4 beside a 5th
   plain stream (five rows in one batch either way). Goal: >= 0.9x.

Runs alternate and the best of ``--rounds`` is kept (other work on a shared machine only ever
slows a run down; absolute rates drift by 20 % from one round to the next). Default model: the
built-in real model (SmolLM2-135M-Instruct, a 49k-token vocabulary); ``--model ftserve-tiny``
for the tiny one.

Run: .venv/bin/python bench/structured_bench.py [--rounds 3] [--tokens 96] [--model NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from tests.conftest import Server

STORY = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        # A list the model must keep writing: the constrained row stays in the batch.
        "paragraphs": {"type": "array", "items": {"type": "string"}, "minItems": 8},
        "mood": {"type": "string", "enum": ["happy", "sad", "neutral"]},
    },
    "required": ["title", "paragraphs", "mood"],
    "additionalProperties": False,
}
TYPICAL = {  # what client.chat.completions.parse sends for a small Pydantic model
    "type": "object",
    "title": "Invoice",
    "properties": {
        "customer": {"type": "string", "title": "Customer"},
        "total": {"type": "number", "title": "Total"},
        "paid": {"type": "boolean", "title": "Paid"},
        "lines": {
            "type": "array",
            "title": "Lines",
            "items": {"$ref": "#/$defs/Line"},
        },
        "currency": {"type": "string", "enum": ["EUR", "USD", "NOK"], "title": "Currency"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"},
    },
    "required": ["customer", "total", "paid", "lines", "currency", "note"],
    "additionalProperties": False,
    "$defs": {
        "Line": {
            "type": "object",
            "title": "Line",
            "properties": {
                "item": {"type": "string", "title": "Item"},
                "quantity": {"type": "integer", "title": "Quantity"},
            },
            "required": ["item", "quantity"],
            "additionalProperties": False,
        }
    },
}
PROMPT = "Write a long story about a lighthouse keeper in paragraphs, with a title and its mood."
PLAIN_PROMPTS = [
    "Tell me about the ocean.",
    "Describe a walk in the forest.",
    "Explain how a bicycle works.",
    "Why do people keep gardens?",
]
SCHEMA_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "story", "strict": True, "schema": STORY},
}


def stream(
    client: openai.OpenAI, model: str, prompt: str, tokens: int, structured: bool
) -> tuple[float, float, int]:
    """(start, seconds from first to last token, completion tokens) of one greedy stream."""
    extra: dict[str, Any] = {"response_format": SCHEMA_FORMAT} if structured else {}
    start = time.perf_counter()
    first = last = None
    used = 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter()
            first = now if first is None else first
            last = now
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    assert first is not None and last is not None
    return start, last - first, used


def single(client: openai.OpenAI, model: str, tokens: int, structured: bool) -> tuple[float, int]:
    _, span, used = stream(client, model, PROMPT, tokens, structured)
    return (used - 1) / max(span, 1e-9), used


def beside(client: openai.OpenAI, model: str, tokens: int, structured: bool) -> float:
    """Aggregate tokens/s of the 4 plain streams while a 5th (structured or not) runs too."""
    with ThreadPoolExecutor(5) as pool:
        fifth = pool.submit(stream, client, model, PROMPT, tokens, structured)
        plain = list(pool.map(lambda p: stream(client, model, p, tokens, False), PLAIN_PROMPTS))
        fifth.result()
    used = sum(u for _, _, u in plain)
    start = min(s for s, _, _ in plain)
    end = max(s + span for s, span, _ in plain)
    return used / max(end - start, 1e-9)


def compile_times(model: str, models_dir: Path) -> dict[str, float]:
    from ftserve.completions.strict_schema import json_grammar
    from ftserve.modeling.constraint import Grammars
    from ftserve.modeling.loading import load_tokenizer
    from ftserve.modeling.sources import materialize

    if model == "ftserve-tiny":
        model_dir = materialize(model, models_dir)
    else:  # the real model, as the server converted it from its GGUF
        [model_dir] = list((models_dir / "gguf").glob("SmolLM2*-*[0-9a-f]"))
    tokenizer = load_tokenizer(model_dir)
    grammars = Grammars(tokenizer, len(tokenizer), [tokenizer.eos_token_id])
    width = len(tokenizer)
    t0 = time.perf_counter()
    grammars.constraint(json_grammar({"type": "object"}, strict=True)).allowed(width)
    prepare = time.perf_counter() - t0
    colds, cached, masks = [], [], []
    for i in range(5):
        schema = {**TYPICAL, "title": f"Invoice{i}"}  # a new grammar text: not in the cache
        grammar = json_grammar(schema, strict=True)
        t0 = time.perf_counter()
        constraint = grammars.constraint(grammar)
        constraint.allowed(width)
        colds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        again = grammars.constraint(grammar)
        again.allowed(width)
        cached.append(time.perf_counter() - t0)
        for token in tokenizer('{"customer":"Ada","total":12.5', add_special_tokens=False)[
            "input_ids"
        ]:
            again.advance(token)
            t0 = time.perf_counter()
            again.allowed(width)
            masks.append(time.perf_counter() - t0)
    return {
        "vocab": width,
        "prepare_ms": prepare * 1e3,
        "cold_ms": statistics.median(colds) * 1e3,
        "cached_ms": statistics.median(cached) * 1e3,
        "mask_us": statistics.median(masks) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ftserve-structured-bench"))
    args = parser.parse_args()

    server = Server(
        args.data_dir,
        env={"FTSERVE_WORKERS": "0", "FTSERVE_TORCH_THREADS": "1", "FTSERVE_LOG_LEVEL": "warning"},
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        print("warming up (the first run converts the real model's GGUF once) ...", flush=True)
        client = server.client()
        single(client, args.model, 8, False)  # loads the model
        single(client, args.model, 8, True)
        free, constrained, free_beside, json_beside = [], [], [], []
        for _ in range(args.rounds):
            rate, used = single(client, args.model, args.tokens, False)
            free.append(rate)
            rate, used_json = single(client, args.model, args.tokens, True)
            constrained.append(rate)
            free_beside.append(beside(client, args.model, args.tokens, False))
            json_beside.append(beside(client, args.model, args.tokens, True))
            print(
                f"  round: plain {free[-1]:.1f} tok/s ({used} tokens), schema "
                f"{constrained[-1]:.1f} tok/s ({used_json} tokens); 4 plain beside a plain "
                f"row {free_beside[-1]:.1f} tok/s, beside a schema row "
                f"{json_beside[-1]:.1f} tok/s",
                flush=True,
            )
    finally:
        server.stop()
    times = compile_times(args.model, args.data_dir / "models")

    plain, schema = max(free), max(constrained)
    alone, mixed = max(free_beside), max(json_beside)
    print(f"model {args.model}, {args.tokens} tokens, best of {args.rounds} rounds")
    print(
        f"1. decode: plain {plain:.1f} tok/s, with a JSON schema {schema:.1f} tok/s: "
        f"{schema / plain:.2f}x (goal >= 0.8x)"
    )
    print(
        f"2. compile ({times['vocab']} tokens): tokenizer prepared once {times['prepare_ms']:.1f} "
        f"ms; typical schema cold {times['cold_ms']:.2f} ms, cached {times['cached_ms']:.2f} ms; "
        f"one step's mask {times['mask_us']:.0f} us"
    )
    print(
        f"3. 4 plain rows beside a plain row {alone:.1f} tok/s, beside a schema row "
        f"{mixed:.1f} tok/s: {mixed / alone:.2f}x (goal >= 0.9x)"
    )


if __name__ == "__main__":
    main()
