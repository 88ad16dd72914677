from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Optional, Union

from .._session import Reply

Chunks = Union[AsyncIterator[Any], Iterable[Any]]


def get(value: Any, name: str) -> Any:
    """A field of an SDK object or of a plain dict."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


@dataclass
class ToolCallRequest:
    """A tool call the model asked for, written to the session as `tool.call`."""

    id: str
    name: str
    arguments: Any
    """Parsed JSON when the model's arguments parse, else the raw string."""


@dataclass
class StreamResult:
    text: str = ""
    tool_calls: List[ToolCallRequest] = field(default_factory=list)
    finish_reason: Optional[str] = None
    cancelled: bool = False
    """The reply was cancelled: the model's stream was closed early."""


def parse_arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


async def pump(
    reply: Reply,
    stream: Chunks,
    on_chunk: Callable[[Any], None],
    result: StreamResult,
    calls: Dict[int, Dict[str, Any]],
) -> StreamResult:
    """Feeds each chunk to `on_chunk` until the stream ends or the reply is cancelled; on a
    cancel the stream is closed, so the model stops generating (and billing)."""

    async def consume() -> None:
        if hasattr(stream, "__aiter__"):
            async for chunk in stream:  # type: ignore[union-attr,unused-ignore]
                on_chunk(chunk)
        else:
            for chunk in stream:  # type: ignore[union-attr,unused-ignore]
                on_chunk(chunk)
                await asyncio.sleep(0)

    reading = asyncio.ensure_future(consume())
    cancel = asyncio.ensure_future(reply.cancelled.wait())
    try:
        await asyncio.wait([reading, cancel], return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancel.cancel()
    if not reading.done():
        reading.cancel()
        result.cancelled = True
        await close(stream)
        try:
            await reading
        except asyncio.CancelledError:
            pass
        return result
    reading.result()
    result.tool_calls = [
        ToolCallRequest(c["id"] or f"call-{i}", c["name"], parse_arguments(c["arguments"]))
        for i, c in sorted(calls.items())
    ]
    for call in result.tool_calls:
        await reply.tool_call(call.id, call.name, call.arguments)
    return result


async def close(stream: Any) -> None:
    for name in ("close", "aclose"):
        method: Optional[Callable[[], Union[None, Awaitable[None]]]] = getattr(stream, name, None)
        if callable(method):
            outcome = method()
            if inspect.isawaitable(outcome):
                await outcome
            return


def by_index(calls: Dict[int, Dict[str, Any]], index: int) -> Dict[str, Any]:
    return calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
