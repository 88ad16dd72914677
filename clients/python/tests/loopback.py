"""The small HTTP/1.1 servers the tests stand up on 127.0.0.1: a proxy that fails on
purpose, a webhook receiver, model APIs. Each reads requests with `read_request`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Dict, Optional, TypeVar

S = TypeVar("S", bound="LoopbackServer")


@dataclass
class Request:
    method: str
    target: str
    headers: Dict[str, str]
    """Names in lower case."""
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Optional[Request]:
    """The next request on the connection; None once the client closed it."""
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers: Dict[str, str] = {}
    while True:
        header = (await reader.readline()).decode().rstrip("\r\n")
        if not header:
            break
        key, _, value = header.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


class LoopbackServer:
    """`async with` starts it on a free port (`url`); subclasses answer in `serve`."""

    url = ""

    async def __aenter__(self: S) -> S:
        self._server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
