"""``POST /responses``, ``GET``/``DELETE /responses/{response_id}`` and
``GET /responses/{response_id}/input_items``.

A response is a chat completion underneath (``request.chat_request``): the same model access,
the same inference process, the same parsing of tool calls. As with chat, everything that can
fail before generating is a plain 4xx; after a stream's first byte only ``response.failed``
remains. Stored responses are written in the thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..api.context import Ctx, json_body
from ..api.responses import json_response, list_body
from ..completions.resolve import served_model
from ..completions.routes import GONE, unless_gone
from ..errors import InferenceDisabled
from ..ids import response_id
from ..inference.client import InferenceClient, Stream
from ..inference.protocol import FinishReason, Generate, Piece
from ..params import query_choice
from ..wire.queries import Paging
from .build import Draft, status_of
from .items import chat_messages
from .request import chat_request, parse_response_request
from .schemas import deleted, usage
from .service import ResponseService, previous_not_found
from .stream import ResponseEventStream, response_events

Json = dict[str, Any]
ITEMS_PAGING = Paging("input item", "ResponseInputItems", default_limit=20, max_limit=100)


def _client(ctx: Ctx) -> InferenceClient:
    if ctx.services.inference is None:
        raise InferenceDisabled()
    return ctx.services.inference


def _service(ctx: Ctx) -> ResponseService:
    return ctx.services.responses


async def create_response(request: Request, ctx: Ctx) -> Response:
    client = _client(ctx)
    body = await json_body(request)
    req = parse_response_request(body)
    history: list[Json] = []
    if req.previous_response_id is not None:
        previous = _service(ctx).find(ctx.organization, req.previous_response_id)
        if previous is None:
            raise previous_not_found(req.previous_response_id)
        history = previous.conversation()
    items = [*history, *req.items]
    chat = chat_request(
        req,
        chat_messages(req.instructions, items),
        max_generation_tokens=ctx.services.settings.max_generation_tokens,
    )
    model = served_model(ctx, req.model, "chat", deployment=False)
    draft = Draft(response_id(), req, req.model, chat.tools)

    async def save(response: Json) -> None:
        if req.store:
            await run_in_threadpool(_service(ctx).save, ctx.organization, response, items)

    stream = await client.generate(Generate(draft.id, model, chat.prompt, chat.sampling))
    if req.stream:
        return ResponseEventStream(response_events(stream, draft, save))
    collected: list[str] = []
    ended: list[tuple[FinishReason, int]] = []
    if not await unless_gone(request, _collect(stream, collected, ended)):
        return Response(status_code=GONE)
    finish, completion = ended[0] if ended else ("stop", 0)
    response = draft.object(
        status_of(finish),
        draft.output("".join(collected), finish),
        usage(stream.accepted.prompt_tokens, completion),
    )
    await save(response)
    return json_response(response)


async def _collect(stream: Stream, texts: list[str], ended: list[tuple[FinishReason, int]]) -> None:
    try:
        async for msg in stream:
            if isinstance(msg, Piece):
                texts.append(msg.text)
            else:
                ended.append((msg.finish_reason, msg.completion_tokens))
    finally:
        stream.cancel()


async def get_response(request: Request, ctx: Ctx) -> Response:
    stored = _service(ctx).get(ctx.organization, request.path_params["response_id"])
    return json_response(stored.response)


async def delete_response(request: Request, ctx: Ctx) -> Response:
    rid = request.path_params["response_id"]
    await run_in_threadpool(_service(ctx).delete, ctx.organization, rid)
    return json_response(deleted(rid))


async def list_input_items(request: Request, ctx: Ctx) -> Response:
    q = request.query_params
    page = _service(ctx).input_items(
        ctx.organization,
        request.path_params["response_id"],
        after=ITEMS_PAGING.after(q),
        limit=ITEMS_PAGING.limit(q, ctx.services.settings),
        order=query_choice(q, "order", ("asc", "desc"), "desc"),
    )
    return json_response(list_body(page.items, page.has_more, ids=True))


ROUTES = [
    ("POST", "/responses", create_response),
    ("GET", "/responses/{response_id}", get_response),
    ("DELETE", "/responses/{response_id}", delete_response),
    ("GET", "/responses/{response_id}/input_items", list_input_items),
]
