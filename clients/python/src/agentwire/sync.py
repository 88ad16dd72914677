"""A thin synchronous facade for agents that are not asyncio programs: the async SDK runs
on an event loop in a background thread, and each call waits for its result.

    with agentwire.sync.Client("http://127.0.0.1:8787", token) as client:
        session = client.open("chat-1")
        with session.reply(parent="u1") as reply:
            for token in model_tokens():
                if reply.cancelled:
                    break
                reply.delta(token)
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Awaitable, Dict, List, Optional, Type, TypeVar

from . import _client, _session

T = TypeVar("T")


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await work

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Client:
    """`agentwire.Client`, synchronously."""

    def __init__(self, base_url: str, token: Optional[str] = None) -> None:
        self._loop = _Loop()

        async def make() -> _client.Client:
            return _client.Client(base_url, token)

        self._client = self._loop.run(make())

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._client.aclose())
        self._loop.stop()

    def open(self, session: str, *, follow_control: bool = True) -> "Session":
        return Session(self._loop, self._loop.run(self._client.open(session, follow_control=follow_control)))

    def read_all(self, stream: str) -> List[Any]:
        return self._loop.run(self._client.read_all(stream))


class Session:
    """`agentwire.Session`, synchronously."""

    def __init__(self, loop: _Loop, session: _session.Session) -> None:
        self._loop = loop
        self._session = session

    @property
    def name(self) -> str:
        return self._session.name

    @property
    def position(self) -> str:
        return self._session.position

    def sub_agent(self, path: str, parent: Optional[str] = None) -> "Session":
        return Session(self._loop, self._session.sub_agent(path, parent))

    def append(self, events: List[Dict[str, Any]]) -> str:
        return self._loop.run(self._session.append(events))

    def tool_call(self, id: str, tool: str, arguments: Any = None) -> str:
        return self._loop.run(self._session.tool_call(id, tool, arguments))

    def tool_result(self, id: str, result: Any, is_error: bool = False) -> str:
        return self._loop.run(self._session.tool_result(id, result, is_error))

    def reply(
        self,
        id: Optional[str] = None,
        parent: Optional[str] = None,
        coalesce: _session.Coalesce = _session.Coalesce(),
    ) -> "Reply":
        async def start() -> _session.Reply:
            return self._session.reply(id, parent, coalesce)

        return Reply(self._loop, self._loop.run(start()))


class Reply:
    """`agentwire.Reply`, synchronously; `delta` does not wait."""

    def __init__(self, loop: _Loop, reply: _session.Reply) -> None:
        self._loop = loop
        self._reply = reply

    @property
    def id(self) -> str:
        return self._reply.id

    @property
    def cancelled(self) -> bool:
        return self._reply.cancelled.is_set()

    def delta(self, text: str) -> None:
        self._loop.loop.call_soon_threadsafe(self._reply.delta, text)

    def end(self) -> _session.ReplyOutcome:
        return self._loop.run(self._reply.end())

    def __enter__(self) -> "Reply":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        self._loop.run(self._reply.__aexit__(kind, error, trace))
