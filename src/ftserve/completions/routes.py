"""POST /chat/completions, /completions and Azure classic's /deployments/{deployment}/…

Everything that can fail before generating (validation, the model, the inference process's
``Accepted``/``Rejected``) happens before the 200, so those errors are plain JSON 4xx. After the
first byte of a stream only an in-band ``data: {"error": …}`` event remains. Generation runs in
the inference process; the handlers only wait on queues, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx, json_body
from ..api.responses import json_response
from ..errors import InferenceDisabled, InferenceFailed, MissingParameter
from ..ids import chat_completion_id, completion_id
from ..inference.client import InferenceClient, Stream
from ..inference.protocol import Finished, Generate, Piece
from .chat_request import ChatRequest, parse_chat
from .objects import (
    Choice,
    Head,
    chat_logprobs,
    chat_message,
    chunk_choice,
    text_logprobs,
    usage,
)
from .resolve import served_model
from .sse import DONE, EventStream, error_event, event
from .text_request import TextRequest, parse_text
from .toolcalls import parse_tool_calls

Json = dict[str, Any]


def _client(ctx: Ctx) -> InferenceClient:
    if ctx.services.inference is None:
        raise InferenceDisabled()
    return ctx.services.inference


def _model_name(request_model: str | None, deployment: str | None) -> str:
    if deployment is not None:
        return deployment
    if request_model is None:
        raise MissingParameter("model")
    return request_model


async def _collect(stream: Stream, choices: list[Choice], offset: int = 0) -> None:
    try:
        async for msg in stream:
            choice = choices[offset + msg.index]
            if isinstance(msg, Piece):
                choice.add(msg.text, msg.logprob)
            else:
                choice.finish_reason = msg.finish_reason
                choice.completion_tokens = msg.completion_tokens
    finally:
        stream.cancel()  # no-op once finished; stops generating if this task was cancelled


async def _client_gone(request: Request) -> None:
    # The body has been read: the next ASGI message is the disconnect, whenever it comes.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[None]) -> bool:
    """Run ``work`` (collecting a non-streamed answer); False, with the work cancelled (and so
    its generation, through ``_collect``'s ``finally``), if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


# Nobody reads it: the client went away before the answer was ready (nginx's code for that).
GONE = 499

# -- chat ---------------------------------------------------------------------------------------


def _chat_choice(i: int, choice: Choice, req: ChatRequest) -> Json:
    content: str | None = choice.joined
    calls: tuple[Json, ...] = ()
    finish = choice.finish_reason or "stop"
    if req.tools:
        parsed = parse_tool_calls(content or "")
        content, calls = parsed.content, parsed.calls
        if calls:
            finish = "stop" if req.named_tool else "tool_calls"
    return {
        "index": i,
        "message": chat_message(content, calls),
        "logprobs": chat_logprobs(choice.logprobs) if req.sampling.logprobs else None,
        "finish_reason": finish,
    }


async def _chat(request: Request, ctx: Ctx, deployment: str | None) -> Response:
    client = _client(ctx)
    body = await json_body(request)
    req = parse_chat(
        body,
        max_generation_tokens=ctx.services.settings.max_generation_tokens,
        deployment=deployment is not None,
    )
    name = _model_name(req.model, deployment)
    model = served_model(ctx, name, "chat", deployment=deployment is not None)
    head = Head(chat_completion_id(), int(time.time()), req.model or name)
    stream = await client.generate(Generate(head.id, model, req.prompt, req.sampling))
    if req.stream:
        return EventStream(_chat_events(stream, req, head))
    choices = [Choice() for _ in range(req.sampling.n)]
    if not await unless_gone(request, _collect(stream, choices)):
        return Response(status_code=GONE)
    completion = sum(c.completion_tokens for c in choices)
    return json_response(
        head.chat(
            [_chat_choice(i, c, req) for i, c in enumerate(choices)],
            usage(stream.accepted.prompt_tokens, completion),
        )
    )


async def _chat_events(stream: Stream, req: ChatRequest, head: Head) -> AsyncIterator[bytes]:
    n, logprobs, include = req.sampling.n, req.sampling.logprobs, req.include_usage

    def chunk(choice: Json) -> bytes:
        return event(head.chunk([choice], include_usage=include))

    try:
        for i in range(n):
            yield chunk(chunk_choice(i, {"role": "assistant", "content": "", "refusal": None}))
        buffered = [Choice() for _ in range(n)]  # with tools: the answer is parsed at the end
        pending: list[list[Any]] = [[] for _ in range(n)]  # logprobs of text not sent yet
        completion = 0
        async for msg in stream:
            i = msg.index
            if isinstance(msg, Piece):
                if req.tools:
                    buffered[i].add(msg.text, msg.logprob)
                    continue
                if msg.logprob is not None:
                    pending[i].append(msg.logprob)
                if not msg.text:
                    continue
                lps = chat_logprobs(pending[i]) if logprobs else None
                pending[i] = []
                yield chunk(chunk_choice(i, {"content": msg.text}, logprobs=lps))
                continue
            assert isinstance(msg, Finished)
            completion += msg.completion_tokens
            finish: str = msg.finish_reason
            if req.tools:
                parsed = parse_tool_calls(buffered[i].joined)
                lps = chat_logprobs(buffered[i].logprobs) if logprobs else None
                if parsed.content:
                    yield chunk(chunk_choice(i, {"content": parsed.content}, logprobs=lps))
                    lps = None
                if parsed.calls:
                    finish = "stop" if req.named_tool else "tool_calls"
                    deltas = [
                        {"index": k, "id": c["id"], "type": "function", "function": c["function"]}
                        for k, c in enumerate(parsed.calls)
                    ]
                    yield chunk(chunk_choice(i, {"tool_calls": deltas}, logprobs=lps))
            elif pending[i] and logprobs:
                # Tokens whose text never showed (held back, then dropped at a stop).
                yield chunk(chunk_choice(i, {"content": ""}, logprobs=chat_logprobs(pending[i])))
            yield chunk(chunk_choice(i, {}, finish_reason=finish))
        if include:
            yield event(
                head.chunk(
                    [],
                    include_usage=True,
                    usage=usage(stream.accepted.prompt_tokens, completion),
                )
            )
        yield DONE
    except InferenceFailed as exc:
        yield error_event(exc)
        yield DONE
    finally:
        stream.cancel()


async def create_chat_completion(request: Request, ctx: Ctx) -> Response:
    return await _chat(request, ctx, None)


async def create_deployment_chat_completion(request: Request, ctx: Ctx) -> Response:
    return await _chat(request, ctx, request.path_params["deployment"])


# -- legacy completions -----------------------------------------------------------------------


async def _open_streams(
    client: InferenceClient, req: TextRequest, head: Any, model: Any
) -> list[Stream]:
    streams: list[Stream] = []
    try:
        for k, prompt in enumerate(req.prompts):
            rid = head.id if k == 0 else f"{head.id}-{k}"
            streams.append(await client.generate(Generate(rid, model, prompt, req.sampling)))
    except BaseException:
        for s in streams:
            s.cancel()
        raise
    return streams


def _text_choice(i: int, choice: Choice, req: TextRequest) -> Json:
    return {
        "text": choice.joined,
        "index": i,
        "logprobs": text_logprobs(choice) if req.sampling.logprobs else None,
        "finish_reason": choice.finish_reason or "stop",
    }


def _echo(choice: Choice, stream: Stream) -> None:
    for k, piece in enumerate(stream.accepted.echo):
        choice.add(piece.text, piece.logprob, first_echo=k == 0)


async def _text(request: Request, ctx: Ctx, deployment: str | None) -> Response:
    client = _client(ctx)
    body = await json_body(request)
    req = parse_text(
        body,
        max_generation_tokens=ctx.services.settings.max_generation_tokens,
        deployment=deployment is not None,
    )
    name = _model_name(req.model, deployment)
    model = served_model(ctx, name, "text", deployment=deployment is not None)
    head = Head(completion_id(), int(time.time()), req.model or name)
    streams = await _open_streams(client, req, head, model)
    if req.stream:
        return EventStream(_text_events(streams, req, head))
    n = req.sampling.n
    choices = [Choice() for _ in range(n * len(streams))]

    async def collect_all() -> None:
        for k, stream in enumerate(streams):
            for j in range(n):
                _echo(choices[k * n + j], stream)
            await _collect(stream, choices, k * n)

    try:
        if not await unless_gone(request, collect_all()):
            return Response(status_code=GONE)
    finally:
        for stream in streams:
            stream.cancel()
    prompt_tokens = sum(s.accepted.prompt_tokens for s in streams)
    completion = sum(c.completion_tokens for c in choices)
    return json_response(
        head.text(
            [_text_choice(i, c, req) for i, c in enumerate(choices)],
            usage(prompt_tokens, completion),
        )
    )


async def _text_events(streams: list[Stream], req: TextRequest, head: Head) -> AsyncIterator[bytes]:
    n, logprobs, include = req.sampling.n, req.sampling.logprobs, req.include_usage

    def chunk(index: int, text: str, choice: Choice | None, finish: str | None = None) -> bytes:
        lps = text_logprobs(choice) if logprobs and choice is not None else None
        return event(
            head.text(
                [{"text": text, "index": index, "logprobs": lps, "finish_reason": finish}],
                None,
                include_usage=include,
            )
        )

    try:
        completion = 0
        for k, stream in enumerate(streams):
            if stream.accepted.echo:
                for j in range(n):
                    echoed = Choice()
                    _echo(echoed, stream)
                    yield chunk(k * n + j, echoed.joined, echoed)
            pending = [Choice() for _ in range(n)]
            async for msg in stream:
                index = k * n + msg.index
                if isinstance(msg, Piece):
                    pending[msg.index].add(msg.text, msg.logprob)
                    if not msg.text:
                        continue
                    piece, pending[msg.index] = pending[msg.index], Choice()
                    yield chunk(index, piece.joined, piece)
                else:
                    completion += msg.completion_tokens
                    rest = pending[msg.index]
                    yield chunk(index, "", rest if rest.tokens else None, msg.finish_reason)
        if include:
            prompt_tokens = sum(s.accepted.prompt_tokens for s in streams)
            yield event(head.text([], usage(prompt_tokens, completion)))
        yield DONE
    except InferenceFailed as exc:
        yield error_event(exc)
        yield DONE
    finally:
        for stream in streams:
            stream.cancel()


async def create_completion(request: Request, ctx: Ctx) -> Response:
    return await _text(request, ctx, None)


async def create_deployment_completion(request: Request, ctx: Ctx) -> Response:
    return await _text(request, ctx, request.path_params["deployment"])


ROUTES = [
    ("POST", "/chat/completions", create_chat_completion),
    ("POST", "/completions", create_completion),
    ("POST", "/deployments/{deployment}/chat/completions", create_deployment_chat_completion),
    ("POST", "/deployments/{deployment}/completions", create_deployment_completion),
]
