"""A proxy between the SDK and agentwire that fails on purpose: it forwards a request and
then drops the connection before the response (the append happened; the agent cannot know),
or answers 503 without forwarding."""

from __future__ import annotations

import asyncio
from typing import Callable, List, Optional, Tuple

import httpx

# (method, path, n-th request of that method) -> "drop", "503" or None (pass).
Policy = Callable[[str, str, int], Optional[str]]


class FlakyProxy:
    def __init__(self, upstream: str, policy: Policy) -> None:
        self.upstream = upstream.rstrip("/")
        self.policy = policy
        self.counts: dict[str, int] = {}
        self.log: List[Tuple[str, str, Optional[str]]] = []
        self.url = ""
        self._server: Optional[asyncio.AbstractServer] = None
        self._http = httpx.AsyncClient(timeout=60)

    async def __aenter__(self) -> "FlakyProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._http.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: List[Tuple[str, str]] = []
                while True:
                    header = (await reader.readline()).decode().rstrip("\r\n")
                    if not header:
                        break
                    key, _, value = header.partition(":")
                    headers.append((key.strip(), value.strip()))
                length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                self.counts[method] = self.counts.get(method, 0) + 1
                action = self.policy(method, target, self.counts[method])
                self.log.append((method, target, action))
                if action == "503":
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                forward = [(k, v) for k, v in headers if k.lower() not in ("host", "content-length")]
                response = await self._http.request(
                    method, self.upstream + target, headers=forward, content=body
                )
                if action == "drop":
                    return  # the request was served; its answer is lost
                out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        out.append(f"{key}: {value}")
                out.append(f"content-length: {len(response.content)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + response.content)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
