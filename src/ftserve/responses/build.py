"""One response being made: its fixed members (from the request), and the response object at
each of its states (in progress, completed, incomplete, failed), through the one
:data:`~.schemas.RESPONSE` shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..completions.toolcalls import parse_tool_calls
from ..inference.protocol import FinishReason
from .items import item_id
from .request import ResponseRequest
from .schemas import RESPONSE, function_call, output_message

Json = dict[str, Any]


@dataclass
class Draft:
    id: str
    request: ResponseRequest
    model: str
    tools: bool  # the answer is parsed for tool calls
    created_at: int = field(default_factory=lambda: int(time.time()))

    def object(
        self,
        status: str,
        output: list[Json],
        usage: Json | None = None,
        *,
        error: Json | None = None,
    ) -> Json:
        req = self.request
        done = status in ("completed", "incomplete", "failed")
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return RESPONSE.make(
            id=self.id,
            created_at=self.created_at,
            status=status,
            completed_at=int(time.time()) if done else None,
            error=error,
            incomplete_details=incomplete,
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            max_tool_calls=None,
            model=self.model,
            output=output,
            previous_response_id=req.previous_response_id,
            reasoning={"effort": None, "summary": None},
            store=req.store,
            temperature=req.temperature,
            text=req.text,
            tool_choice=req.tool_choice,
            tools=[_tool(t) for t in req.tools],
            top_p=req.top_p,
            usage=usage,
            user=None,
            metadata=req.metadata,
        )

    def output(self, text: str, finish: FinishReason) -> list[Json]:
        """The output items of a finished generation: the text as an assistant message, and
        any tool calls in it as ``function_call`` items."""
        status = status_of(finish)
        content: str | None = text
        calls: tuple[Json, ...] = ()
        if self.tools:
            parsed = parse_tool_calls(text)
            content, calls = parsed.content, parsed.calls
        items: list[Json] = []
        if content is not None:
            items.append(output_message(item_id("msg_"), content, status))
        for call in calls:
            fn = call["function"]
            items.append(
                function_call(item_id("fc_"), call["id"], fn["name"], fn["arguments"], "completed")
            )
        return items


def _tool(tool: Json) -> Json:
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def status_of(finish: FinishReason) -> str:
    """A generation cut at the token limit is OpenAI's ``incomplete`` (``max_output_tokens``)."""
    return "incomplete" if finish == "length" else "completed"
