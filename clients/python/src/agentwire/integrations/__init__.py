"""Streams from model SDKs into a reply, each a line for the agent:

    async with session.reply(parent=message.id) as reply:
        stream = await openai.chat.completions.create(model=..., messages=..., stream=True)
        result = await stream_chat_completion(reply, stream)

Neither SDK is imported here: the chunks are read by their documented fields, as objects
or as plain dicts, so any OpenAI-compatible or Anthropic-shaped stream works."""

from ._common import StreamResult, ToolCallRequest
from .anthropic import stream_anthropic_messages
from .openai import stream_chat_completion

__all__ = [
    "StreamResult",
    "ToolCallRequest",
    "stream_anthropic_messages",
    "stream_chat_completion",
]
