"""An Anthropic Messages stream into a reply."""

from __future__ import annotations

from typing import Any, Dict

from .._session import Reply
from ._common import Chunks, StreamResult, by_index, get, pump


async def stream_anthropic_messages(reply: Reply, stream: Chunks) -> StreamResult:
    """Streams an Anthropic Messages stream (`messages.create(..., stream=True)` or
    `messages.stream(...)` of the `anthropic` package, or events shaped like them) into
    `reply`: text deltas as they come, `tool_use` blocks as `tool.call` events when the
    stream ends. A cancel of the reply closes the stream."""
    result = StreamResult()
    calls: Dict[int, Dict[str, Any]] = {}

    def on_chunk(event: Any) -> None:
        kind, index = get(event, "type"), get(event, "index")
        if kind == "content_block_start":
            block = get(event, "content_block")
            if get(block, "type") == "tool_use" and isinstance(index, int):
                entry = by_index(calls, index)
                entry["id"], entry["name"] = get(block, "id") or "", get(block, "name") or ""
        elif kind == "content_block_delta":
            # `messages.stream()` also yields its own `text` events: the deltas are read
            # here only, so no text counts twice.
            delta = get(event, "delta")
            if get(delta, "type") == "text_delta":
                text = get(delta, "text")
                if isinstance(text, str) and text:
                    reply.delta(text)
                    result.text += text
            elif get(delta, "type") == "input_json_delta" and index in calls:
                calls[index]["arguments"] += get(delta, "partial_json") or ""
        elif kind == "message_delta":
            reason = get(get(event, "delta"), "stop_reason")
            if isinstance(reason, str):
                result.finish_reason = reason

    return await pump(reply, stream, on_chunk, result, calls)
