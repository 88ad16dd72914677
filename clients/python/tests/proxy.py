"""A proxy between the SDK and agentwire that fails on purpose: it forwards a request and
then drops the connection before the response (the append happened; the agent cannot know),
or answers 503 without forwarding."""

from __future__ import annotations

import asyncio
from typing import Callable, List, Optional, Tuple

import httpx

from loopback import LoopbackServer, read_request

# (method, path, n-th request of that method) -> "drop", "503" or None (pass).
Policy = Callable[[str, str, int], Optional[str]]


class FlakyProxy(LoopbackServer):
    def __init__(self, upstream: str, policy: Policy) -> None:
        self.upstream = upstream.rstrip("/")
        self.policy = policy
        self.counts: dict[str, int] = {}
        self.log: List[Tuple[str, str, Optional[str]]] = []
        self._http = httpx.AsyncClient(timeout=60)

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        await self._http.aclose()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                method, target = request.method, request.target
                self.counts[method] = self.counts.get(method, 0) + 1
                action = self.policy(method, target, self.counts[method])
                self.log.append((method, target, action))
                if action == "503":
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                skip = ("host", "content-length")
                forward = {k: v for k, v in request.headers.items() if k not in skip}
                response = await self._http.request(
                    method, self.upstream + target, headers=forward, content=request.body
                )
                if action == "drop":
                    return  # the request was served; its answer is lost
                out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
                hop = ("content-length", "transfer-encoding", "connection", "content-encoding")
                for key, value in response.headers.items():
                    if key.lower() not in hop:
                        out.append(f"{key}: {value}")
                out.append(f"content-length: {len(response.content)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + response.content)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
