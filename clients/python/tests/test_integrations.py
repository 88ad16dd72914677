"""The `openai` and `anthropic` packages' streams into replies, against a local server that
speaks each API's streaming protocol (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import anthropic
import openai

from agentwire import Client, events
from agentwire.integrations import stream_anthropic_messages, stream_chat_completion

from conftest import Server
from loopback import LoopbackServer, read_request
from test_session import of, until


class ModelServer(LoopbackServer):
    """Answers `POST /v1/chat/completions` and `POST /v1/messages` with a stream of `frames`
    (one SSE event each), `delay` seconds apart; notes when the client hung up."""

    def __init__(self, frames: List[Dict[str, Any]], delay: float = 0.0) -> None:
        self.frames = frames
        self.delay = delay
        self.requests: List[Dict[str, Any]] = []
        self.hung_up = asyncio.Event()
        self.sent = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is None:
            return
        path = request.target
        self.requests.append({"path": path, "body": json.loads(request.body)})
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
        )
        try:
            for frame in self.frames:
                name = frame.get("type") if "/messages" in path else None
                head = f"event: {name}\n" if name else ""
                writer.write(f"{head}data: {json.dumps(frame)}\n\n".encode())
                await writer.drain()
                self.sent += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
            if "/chat/completions" in path:
                writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        except ConnectionError:
            self.hung_up.set()
        finally:
            writer.close()
        if self.sent < len(self.frames):
            self.hung_up.set()


def chunk(delta: Dict[str, Any], finish: Any = None) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


WORDS = [f"word{i} " for i in range(60)]


async def test_an_openai_stream_lands_in_the_reply(server: Server, name: str) -> None:
    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": w}) for w in WORDS]
    frames += [
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, finish="tool_calls"),
    ]
    async with ModelServer(frames) as model, Client(server.url) as client:
        llm = openai.AsyncOpenAI(base_url=f"{model.url}/v1", api_key="test", max_retries=0)
        session = await client.open(name)
        async with session.reply("r1", parent="u1") as reply:
            stream = await llm.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            result = await stream_chat_completion(reply, stream)
        evs = await client.read_all(name)
    assert model.requests[0]["body"]["stream"] is True
    assert result.text == "".join(WORDS) and result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("call_1", "lookup", {"city": "Oslo"})]
    deltas = of(evs, "message.delta", "r1")
    assert "".join(e["data"]["text"] for _, e in deltas) == "".join(WORDS)
    assert len(deltas) < len(WORDS) / 4, "coalesced"
    call = of(evs, "tool.call", "call_1")[0][1]
    assert call["data"] == {"tool": "lookup", "arguments": {"city": "Oslo"}} and call["parent"] == "r1"


async def test_a_cancel_closes_the_models_stream(server: Server, name: str) -> None:
    frames = [chunk({"content": w}) for w in WORDS * 5]
    async with ModelServer(frames, delay=0.02) as model, Client(server.url) as client, Client(server.url) as user:
        llm = openai.AsyncOpenAI(base_url=f"{model.url}/v1", api_key="test", max_retries=0)
        session = await client.open(name)
        reply = session.reply("r1")
        stream = await llm.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        streaming = asyncio.ensure_future(stream_chat_completion(reply, stream))

        async def started() -> bool:
            return len(of(await client.read_all(name), "message.delta", "r1")) >= 2

        await until(started)
        await user.append(name, [events.control("cancel", {"message_id": "r1"})])
        result = await asyncio.wait_for(streaming, timeout=5)
        outcome = await reply.end()
        await asyncio.wait_for(model.hung_up.wait(), timeout=5)
        evs = await client.read_all(name)
    assert result.cancelled and outcome.cancelled_by is not None
    assert model.sent < len(frames), "the model stopped streaming"
    assert of(evs, "message.end", "r1")[0][1]["data"] == {"stopped": True}
    assert of(evs, "control.ack")[0][1]["data"]["cut"] == outcome.cut


async def test_an_anthropic_stream_lands_in_the_reply(server: Server, name: str) -> None:
    usage = {"input_tokens": 3, "output_tokens": 0}
    frames: List[Dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test", "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    frames += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in WORDS]
    frames += [
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Ri'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ga"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 61}},
        {"type": "message_stop"},
    ]
    async with ModelServer(frames) as model, Client(server.url) as client:
        llm = anthropic.AsyncAnthropic(base_url=model.url, api_key="test", max_retries=0)
        session = await client.open(name)
        async with session.reply("r1") as reply:
            async with llm.messages.stream(
                model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                result = await stream_anthropic_messages(reply, stream)
        evs = await client.read_all(name)
    assert model.requests[0]["path"] == "/v1/messages"
    assert result.text == "".join(WORDS) and result.finish_reason == "tool_use"
    assert "".join(e["data"]["text"] for _, e in of(evs, "message.delta", "r1")) == "".join(WORDS)
    assert of(evs, "tool.call", "toolu_1")[0][1]["data"] == {"tool": "lookup", "arguments": {"city": "Riga"}}
