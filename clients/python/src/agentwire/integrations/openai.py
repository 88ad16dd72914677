"""An OpenAI-compatible `chat.completions` stream into a reply."""

from __future__ import annotations

from typing import Any, Dict

from .._session import Reply
from ._common import Chunks, StreamResult, by_index, get, pump


async def stream_chat_completion(reply: Reply, stream: Chunks) -> StreamResult:
    """Streams the content of a `chat.completions.create(..., stream=True)` stream (the
    `openai` package's, sync or async, or any iterable of chunks shaped like them) into
    `reply`. Tool calls the model asks for are written as `tool.call` events when the
    stream ends, and returned. A cancel of the reply closes the stream."""
    result = StreamResult()
    calls: Dict[int, Dict[str, Any]] = {}

    def on_chunk(chunk: Any) -> None:
        for choice in get(chunk, "choices") or []:
            delta = get(choice, "delta")
            content = get(delta, "content")
            if isinstance(content, str) and content:
                reply.delta(content)
                result.text += content
            for call in get(delta, "tool_calls") or []:
                index = get(call, "index")
                entry = by_index(calls, index if isinstance(index, int) else len(calls))
                entry["id"] = get(call, "id") or entry["id"]
                function = get(call, "function")
                entry["name"] = get(function, "name") or entry["name"]
                entry["arguments"] += get(function, "arguments") or ""
            reason = get(choice, "finish_reason")
            if isinstance(reason, str):
                result.finish_reason = reason

    return await pump(reply, stream, on_chunk, result, calls)
