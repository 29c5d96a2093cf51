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
    if first is None or last is None:  # nothing but the end-of-turn token
        return start, 0.0, used
    return start, last - first, used


def single(client: openai.OpenAI, model: str, tokens: int, structured: bool) -> tuple[float, int]:
    _, span, used = stream(client, model, PROMPT, tokens, structured)
    return (used - 1) / span if span > 0 else 0.0, used


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


def _model_dir(model: str, models_dir: Path) -> Path:
    from ftserve.modeling.sources import materialize

    if model == "ftserve-tiny":
        return materialize(model, models_dir)
    # the real model, as the server converted it from its GGUF
    [found] = list((models_dir / "gguf").glob("SmolLM2*-*[0-9a-f]"))
    return found


def interleaved(model_dir: Path, models_dir: Path, steps: int) -> dict[str, float]:
    """Decode-step time of batches that differ only in one row's constraint, in this process,
    their steps interleaved one by one so that whatever else the machine does hits both alike:
    one plain row against one constrained row; 4 plain + 1 plain against 4 plain + 1 constrained.
    The plain rows cannot end early (their stop tokens are biased away)."""
    import torch

    from ftserve.completions.structured import ResponseFormat, grammar_for
    from ftserve.inference.engine import Engine
    from ftserve.inference.protocol import (
        ChatPrompt,
        EngineSettings,
        Generate,
        Sampling,
        ServedModel,
    )

    torch.set_num_threads(1)
    served = ServedModel("bench", "base", str(model_dir))
    grammar = grammar_for(ResponseFormat("json_schema", STORY, True), None, None)
    settings = EngineSettings(models_dir=str(models_dir), device="cpu")

    def engine(rows: int, constrained: bool) -> Engine:
        made = Engine(settings, lambda message: None)
        stop_ids = made.store.info(served).stop_ids
        plain = Sampling(
            max_tokens=steps + 8, temperature=0, logit_bias=tuple((i, -100.0) for i in stop_ids)
        )
        for k in range(rows):
            last = k == rows - 1
            prompt = ChatPrompt(
                ({"role": "user", "content": PROMPT if last else PLAIN_PROMPTS[k]},)
            )
            sampling = Sampling(max_tokens=steps + 8, temperature=0, grammar=grammar)
            made.submit(
                Generate(f"r{k}", served, prompt, sampling if last and constrained else plain)
            )
        return made

    result: dict[str, float] = {}
    with torch.inference_mode():
        for rows in (1, 5):
            engines = {False: engine(rows, False), True: engine(rows, True)}
            spent = {False: 0.0, True: 0.0}
            for e in engines.values():
                e.run_once()  # prefill and a first step
            for step in range(steps):
                order = [False, True] if step % 2 else [True, False]  # neither always goes first
                for constrained in order:
                    e = engines[constrained]
                    full = sum(len(b.rows) for b in e.batches) == rows
                    t0 = time.perf_counter()
                    e.run_once()
                    spent[constrained] += time.perf_counter() - t0
                    assert full, "a row ended early: fewer steps (--steps)"
            result[f"{rows}_ratio"] = spent[False] / spent[True]
            result[f"{rows}_ms"] = spent[False] / steps * 1e3
    return result


def compile_times(model: str, models_dir: Path) -> dict[str, float]:
    from ftserve.completions.strict_schema import json_grammar
    from ftserve.modeling.constraint import Grammars, allowed_tokens
    from ftserve.modeling.loading import load_tokenizer

    tokenizer = load_tokenizer(_model_dir(model, models_dir))
    grammars = Grammars(tokenizer, [tokenizer.eos_token_id])
    width = len(tokenizer)
    t0 = time.perf_counter()
    allowed_tokens([grammars.constraint(json_grammar({"type": "object"}, strict=True))], width)
    prepare = time.perf_counter() - t0
    colds, cached, masks = [], [], []
    for i in range(5):
        schema = {**TYPICAL, "title": f"Invoice{i}"}  # a new grammar text: not in the cache
        grammar = json_grammar(schema, strict=True)
        t0 = time.perf_counter()
        constraint = grammars.constraint(grammar)
        allowed_tokens([constraint], width)
        colds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        again = grammars.constraint(grammar)
        allowed_tokens([again], width)
        cached.append(time.perf_counter() - t0)
        for token in tokenizer('{"customer":"Ada","total":12.5', add_special_tokens=False)[
            "input_ids"
        ]:
            again.advance(token)
            t0 = time.perf_counter()
            allowed_tokens([again], width)
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
    parser.add_argument("--steps", type=int, default=48, help="interleaved decode steps")
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
    models_dir = args.data_dir / "models"
    steps = interleaved(_model_dir(args.model, models_dir), models_dir, args.steps)

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
    print(
        f"in process, {args.steps} steps interleaved: one row's decode {steps['1_ms']:.1f} ms/step "
        f"plain, constrained {steps['1_ratio']:.2f}x its tokens/s; 5 rows "
        f"{steps['5_ms']:.1f} ms/step, 4 plain beside a constrained row "
        f"{steps['5_ratio']:.2f}x their tokens/s beside a plain one"
    )


if __name__ == "__main__":
    main()
