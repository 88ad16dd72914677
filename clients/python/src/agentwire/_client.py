"""Where agentwire is, which token to present, and the reads every part shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Set, Tuple, Type
from types import TracebackType
from urllib.parse import quote

import httpx

from . import _offset
from ._errors import ProtocolError, Refused

if TYPE_CHECKING:
    from ._session import Session


@dataclass
class ReadPage:
    events: List[Tuple[str, Any]]
    """Events with their offsets."""
    next: str
    """Where the next read starts."""
    up_to_date: bool
    """True when the page reached the tail."""


class Client:
    """A connection to agentwire at `base_url` (e.g. `http://127.0.0.1:8787`).

    Use it as `async with Client(url, token) as client:`, or call `aclose()`; sessions opened
    from it stop following control when it closes."""

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        *,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # Long-polls hold a connection for up to the server's timeout (20 s by default).
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        self._owns_http = http is None
        self._closing: Set["asyncio.Task[None]"] = set()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for closing in list(self._closing):
            closing.cancel()
        self._closing.clear()
        if self._owns_http:
            await self.http.aclose()

    def stream_url(self, stream: str) -> str:
        return f"{self.base_url}/v1/stream/{quote(stream, safe='/*:')}"

    def headers(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    async def open(self, session: str, *, follow_control: bool = True) -> "Session":
        """Opens (creating if needed) a JSON session for an agent. With `follow_control`,
        the session is followed (long-poll) so a cancel reaches a reply that is waiting on
        its model and not appending."""
        from ._session import Session

        tail = await self.ensure(session)
        handle = Session._at(self, session, tail)
        if follow_control:
            follower = handle._shared.follow()
            self._closing.add(follower)
            follower.add_done_callback(self._closing.discard)
        return handle

    async def ensure(self, stream: str) -> str:
        """Creates the JSON stream if it does not exist yet; returns its tail."""
        response = await self.http.put(
            self.stream_url(stream),
            headers=self.headers({"content-type": "application/json"}),
        )
        return next_offset(refuse_unless_ok(response))

    async def read(self, stream: str, offset: str = _offset.START) -> ReadPage:
        """One page of events from `offset`."""
        return await self._page(stream, offset, live=False)

    async def wait(self, stream: str, offset: str) -> ReadPage:
        """Events from `offset`, waiting (long-poll) until some arrive or the server's wait
        ends (an empty page)."""
        return await self._page(stream, offset, live=True)

    async def read_all(self, stream: str, offset: str = _offset.START) -> List[Tuple[str, Any]]:
        """Every event from `offset` to the tail."""
        events: List[Tuple[str, Any]] = []
        while True:
            page = await self.read(stream, offset)
            events.extend(page.events)
            if page.up_to_date or page.next == offset:
                return events
            offset = page.next

    async def append(self, stream: str, events: List[Any]) -> str:
        """Appends events to an existing stream without a producer (prefer a Session's
        exactly-once appends); returns the tail."""
        response = await self.http.post(
            self.stream_url(stream),
            headers=self.headers({"content-type": "application/json"}),
            json=events,
        )
        return next_offset(refuse_unless_ok(response))

    async def _page(self, stream: str, offset: str, live: bool) -> ReadPage:
        params = {"offset": offset}
        if live:
            params["live"] = "long-poll"
        response = refuse_unless_ok(
            await self.http.get(self.stream_url(stream), params=params, headers=self.headers())
        )
        nxt = next_offset(response)
        # A long-poll answers only when caught up; a catch-up read says so in a header.
        up_to_date = live or "stream-up-to-date" in response.headers
        events = [] if response.status_code == 204 or not response.content else response.json()
        if not isinstance(events, list):
            raise ProtocolError("a read of a JSON stream that is not an array")
        return ReadPage(
            events=[(_offset.advance(offset, i), e) for i, e in enumerate(events)],
            next=nxt,
            up_to_date=up_to_date,
        )


def refuse_unless_ok(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise Refused(response.status_code, response.text.strip())


def next_offset(response: httpx.Response) -> str:
    offset: Optional[str] = response.headers.get("stream-next-offset")
    if offset is None:
        raise ProtocolError("response without Stream-Next-Offset")
    _offset.parse(offset)
    return offset
