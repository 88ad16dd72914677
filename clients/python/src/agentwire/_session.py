"""The agent side: appending to a session exactly once, streaming replies, and control."""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Set,
    Type,
    Union,
)
from types import TracebackType

import httpx

from . import events as _events
from ._client import Client, next_offset, refuse_unless_ok
from ._errors import NetworkError, Refused

log = logging.getLogger("agentwire")

# Retries of one append on network errors and 5xx (the producer headers make them safe).
RETRIES = 8


@dataclass(frozen=True)
class ControlEvent:
    """A control event an agent must act on."""

    offset: str
    """Where the control event sits in the session."""
    kind: str
    """`cancel`, `steer`, `pause`, `resume`, or a kind appended over HTTP."""
    data: Any
    """Its `data` (None when it has none)."""

    @staticmethod
    def from_event(offset: str, event: Any) -> Optional["ControlEvent"]:
        kind = _events.control_kind(event)
        if kind is None:
            return None
        return ControlEvent(offset=offset, kind=kind, data=event.get("data"))

    @property
    def target(self) -> Optional[str]:
        """The id of the message a cancel targets (`data.message_id`); None means all."""
        if isinstance(self.data, dict):
            target = self.data.get("message_id")
            return target if isinstance(target, str) else None
        return None


@dataclass(frozen=True)
class Coalesce:
    """How token deltas are coalesced into appends: one append (one storage write, one push
    per subscriber) carries everything produced within `linger` seconds, or `max_bytes` of
    text. 100 ms is smooth to read and, at 50 tokens/s, about five tokens per append."""

    linger: float = 0.1
    max_bytes: int = 8 * 1024


ControlCallback = Callable[[ControlEvent], Union[None, Awaitable[None]]]


class _Shared:
    """What every handle on one session shares: control, whichever path brought it."""

    def __init__(self, client: Client, name: str, tail: str) -> None:
        self.client = client
        self.name = name
        self.tail = tail
        self.published: Set[str] = set()
        self.listeners: List[Callable[[ControlEvent], None]] = []
        self.callbacks: Dict[str, List[ControlCallback]] = {}
        # Set while not paused: replies hold their output while it is clear.
        self.running = asyncio.Event()
        self.running.set()
        # The latest pause and resume, and the controls acked already.
        self.latest: Dict[str, str] = {}
        self.acked: Set[str] = set()
        self.follower: Optional["asyncio.Task[None]"] = None
        # Acknowledges control for the session (set by the first handle).
        self.ack: Optional[Callable[[ControlEvent], Awaitable[Any]]] = None

    def publish(self, control: ControlEvent) -> None:
        if control.offset in self.published:
            return
        self.published.add(control.offset)
        log.debug("control %s at %s", control.kind, control.offset)
        if control.kind in ("pause", "resume"):
            self.latest[control.kind] = control.offset
            if control.kind == "pause":
                self.running.clear()
            else:
                self.running.set()
        for listener in list(self.listeners):
            listener(control)
        callbacks = self.callbacks.get(control.kind, []) + self.callbacks.get("*", [])
        if callbacks:
            asyncio.ensure_future(self._call(control, callbacks))

    async def _call(self, control: ControlEvent, callbacks: List[ControlCallback]) -> None:
        for callback in callbacks:
            try:
                result = callback(control)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("control callback for %s failed", control.kind)
                return
        # A steer the agent's callbacks took is acted on: say so, as for a pause.
        if control.kind == "steer" and self.ack is not None:
            await self.ack(control)

    def follow(self) -> "asyncio.Task[None]":
        """Follows the session (long-poll) and publishes control as it is appended."""
        if self.follower is None or self.follower.done():
            self.follower = asyncio.ensure_future(self._follow())
        return self.follower

    async def _follow(self) -> None:
        at = self.tail
        while True:
            try:
                page = await self.client.wait(self.name, at)
            except Refused as e:
                if e.status == 404:
                    return
                log.debug("control follow retrying: %s", e)
                await asyncio.sleep(0.2)
                continue
            except (httpx.TransportError, NetworkError) as e:
                log.debug("control follow retrying: %s", e)
                await asyncio.sleep(0.2)
                continue
            for offset, event in page.events:
                control = ControlEvent.from_event(offset, event)
                if control is not None:
                    self.publish(control)
            at = page.next


class _Producer:
    def __init__(self, seen: str) -> None:
        self.id = f"py-{secrets.token_hex(8)}"
        self.epoch = 0
        self.seq = 0
        self.seen = seen
        self.lock = asyncio.Lock()

    def rotate(self) -> None:
        """After an append whose fate is unknown (retries spent): the server may have
        applied it, so its sequence number is never reused for other events (the server
        would take them for its duplicate and drop them); a new producer starts afresh."""
        self.id = f"py-{secrets.token_hex(8)}"
        self.seq = 0


class Session:
    """An agent's handle on a session (from `Client.open`). `sub_agent` makes a handle with
    its own producer and `agent` path; control is shared by all of them."""

    def __init__(
        self,
        shared: _Shared,
        agent: Optional[str],
        parent: Optional[str],
        producer: _Producer,
    ) -> None:
        self._shared = shared
        self.agent = agent
        self.parent = parent
        self._producer = producer

    @staticmethod
    def _at(client: Client, name: str, tail: str) -> "Session":
        session = Session(_Shared(client, name, tail), None, None, _Producer(tail))
        session._shared.ack = session._ack_once
        return session

    @property
    def name(self) -> str:
        return self._shared.name

    @property
    def client(self) -> Client:
        return self._shared.client

    @property
    def position(self) -> str:
        """The session's tail after this handle's last append (or at open)."""
        return self._producer.seen

    @property
    def paused(self) -> bool:
        """True between a `control.pause` and its `control.resume`."""
        return not self._shared.running.is_set()

    def sub_agent(self, path: str, parent: Optional[str] = None) -> "Session":
        """A handle for a sub-agent at `path` (e.g. `planner/search-1`) working for the
        event `parent` (e.g. the orchestrator's message id): its events carry both, and it
        has its own producer, so sub-agents append concurrently."""
        return Session(self._shared, path, parent, _Producer(self._producer.seen))

    def on_control(self, kind: str, callback: ControlCallback) -> None:
        """Calls `callback` (plain or async) for each control of `kind` (`steer`, `pause`,
        `resume`, `cancel`, or `*` for all), once, whichever path brought it."""
        self._shared.callbacks.setdefault(kind, []).append(callback)

    def on_steer(self, callback: ControlCallback) -> None:
        self.on_control("steer", callback)

    def on_pause(self, callback: ControlCallback) -> None:
        self.on_control("pause", callback)

    def on_resume(self, callback: ControlCallback) -> None:
        self.on_control("resume", callback)

    async def controls(self) -> AsyncIterator[ControlEvent]:
        """Control events as they arrive, from now on."""
        queue: "asyncio.Queue[ControlEvent]" = asyncio.Queue()
        self._shared.listeners.append(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            self._shared.listeners.remove(queue.put_nowait)

    def follow_control(self) -> "asyncio.Task[None]":
        """Follows the session so control arrives while this agent is not appending (done
        by `Client.open` unless `follow_control=False`)."""
        return self._shared.follow()

    async def append(self, events: List[_events.Event]) -> str:
        """Appends events exactly once and returns the session's tail: retried on network
        errors and 5xx with the same producer sequence, so the server applies it at most
        once. Events without `agent` or `parent` get this handle's. Control that arrived
        since this handle's previous append comes back in the response and is published."""
        for event in events:
            if self.agent is not None:
                event.setdefault("agent", self.agent)
            if self.parent is not None:
                event.setdefault("parent", self.parent)
        client = self._shared.client
        producer = self._producer
        async with producer.lock:
            attempt = 0
            while True:
                headers = client.headers(
                    {
                        "content-type": "application/json",
                        "producer-id": producer.id,
                        "producer-epoch": str(producer.epoch),
                        "producer-seq": str(producer.seq),
                        "agentwire-control-since": producer.seen,
                    }
                )
                try:
                    response = await client.http.post(
                        client.stream_url(self.name), headers=headers, json=events, timeout=30.0
                    )
                    if response.status_code < 500:
                        break
                    if attempt >= RETRIES:
                        producer.rotate()
                        break
                    log.warning("append failed (%s); retrying", response.status_code)
                except httpx.TransportError as e:
                    if attempt >= RETRIES:
                        producer.rotate()
                        raise NetworkError(str(e)) from e
                    log.warning("append failed (%s); retrying", type(e).__name__)
                attempt += 1
                await asyncio.sleep(0.025 * (1 << min(attempt, 6)))
            tail = next_offset(refuse_unless_ok(response))
            producer.seq += 1
            producer.seen = tail
        if response.status_code == 200 and "agentwire-control" in response.headers:
            body = response.json()
            for item in body.get("control", []) if isinstance(body, dict) else []:
                offset = item.get("offset") if isinstance(item, dict) else None
                if isinstance(offset, str):
                    control = ControlEvent.from_event(offset, item.get("event"))
                    if control is not None:
                        self._shared.publish(control)
        return tail

    async def ack(self, control: ControlEvent, cut: Optional[str] = None) -> str:
        """Acknowledges control; `cut` is where this agent's output stopped (default: its
        position)."""
        return await self.append(
            [_events.control_ack(control.offset, control.kind, cut or self.position)]
        )

    async def _ack_once(self, control: ControlEvent) -> None:
        if control.offset not in self._shared.acked:
            self._shared.acked.add(control.offset)
            await self.ack(control)

    async def tool_call(self, id: str, tool: str, arguments: Any = None) -> str:
        return await self.append([_events.tool_call(id, tool, arguments)])

    async def tool_result(self, id: str, result: Any, is_error: bool = False) -> str:
        return await self.append([_events.tool_result(id, result, is_error)])

    async def status(self, data: Dict[str, Any]) -> str:
        """An `agent.status` event: what the agent is doing."""
        return await self.append([_events.agent_status(data)])

    def reply(
        self,
        id: Optional[str] = None,
        parent: Optional[str] = None,
        coalesce: Coalesce = Coalesce(),
    ) -> "Reply":
        """Starts a reply message (`message.start`, naming `parent`, the message it answers)
        and streams its deltas coalesced. Use `async with session.reply(...) as reply:`, or
        call `await reply.end()`. A `control.cancel` stops it (`reply.cancelled`); a pause
        holds its output until the resume."""
        return Reply(self, id or f"r-{secrets.token_hex(6)}", parent, coalesce)


class Cancelled:
    """Set once, when a cancel for a reply arrives (like an `asyncio.Event`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.control: Optional[ControlEvent] = None

    def _set(self, control: ControlEvent) -> None:
        if self.control is None:
            self.control = control
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self.is_set()

    async def wait(self) -> ControlEvent:
        await self._event.wait()
        assert self.control is not None
        return self.control


@dataclass(frozen=True)
class ReplyOutcome:
    """How a reply ended."""

    id: str
    cut: str
    """The offset after the reply's last delta: where its output stopped."""
    cancelled_by: Optional[ControlEvent] = None
    text: str = field(default="", repr=False)
    """The text that was appended."""


async def _first(*events: asyncio.Event, timeout: Optional[float] = None) -> None:
    """Waits until any of `events` is set, or `timeout` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Reply:
    """A reply being streamed. `delta()` queues text; `end()` flushes and closes it."""

    def __init__(
        self, session: Session, id: str, parent: Optional[str], coalesce: Coalesce
    ) -> None:
        self.session = session
        self.id = id
        self.parent = parent
        self.coalesce = coalesce
        self.cancelled = Cancelled()
        self._buffer: List[str] = []
        self._size = 0
        self._text: List[str] = []
        self._ready = asyncio.Event()  # something is queued
        self._full = asyncio.Event()  # enough is queued, or the reply closed
        self._drained = asyncio.Event()  # nothing is queued
        self._drained.set()
        self._closed = False
        shared = session._shared
        shared.listeners.append(self._on_control)
        self._flusher = asyncio.ensure_future(self._flush())

    def _on_control(self, control: ControlEvent) -> None:
        if control.kind == "cancel" and control.target in (None, self.id):
            self.cancelled._set(control)

    async def __aenter__(self) -> "Reply":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        if error is None:
            await self.end()
        else:
            # Left open: a pool's next worker answers a message whose reply never ended.
            self._detach()
            self._flusher.cancel()

    def delta(self, text: str) -> None:
        """Queues text; it is appended within the linger time (dropped once cancelled)."""
        if self._closed or self.cancelled or not text:
            return
        self._buffer.append(text)
        self._size += len(text.encode("utf-8"))
        self._ready.set()
        self._drained.clear()
        if self._size >= self.coalesce.max_bytes:
            self._full.set()

    async def tool_call(self, id: str, tool: str, arguments: Any = None) -> str:
        """A `tool.call` made while writing this reply (it names the reply as parent)."""
        await self.flush()
        event = _events.tool_call(id, tool, arguments)
        event["parent"] = self.id
        return await self.session.append([event])

    async def tool_result(self, id: str, result: Any, is_error: bool = False) -> str:
        event = _events.tool_result(id, result, is_error)
        event["parent"] = self.id
        return await self.session.append([event])

    async def flush(self) -> None:
        """Appends what is queued now, without waiting for the linger."""
        if self._buffer:
            self._full.set()
            await _first(self._drained, self.cancelled._event)

    async def end(self) -> ReplyOutcome:
        """Flushes what is queued (unless cancelled) and appends `message.end`; a cancelled
        reply ends with `"stopped": true` and is acknowledged with its cut offset."""
        self._closed = True
        self._full.set()
        self._ready.set()
        try:
            cut = await self._flusher
        finally:
            self._detach()
        control = self.cancelled.control
        if control is None:
            await self.session.append([_events.message_end(self.id)])
        else:
            await self.session.append(
                [
                    _events.message_end(self.id, stopped=True),
                    _events.control_ack(control.offset, control.kind, cut),
                ]
            )
        return ReplyOutcome(self.id, cut, control, "".join(self._text))

    def _detach(self) -> None:
        listeners = self.session._shared.listeners
        if self._on_control in listeners:
            listeners.remove(self._on_control)

    async def _flush(self) -> str:
        """Appends `message.start`, then coalesced deltas, until the reply closes or a
        cancel arrives. An append in flight always completes, so the cut is exact."""
        shared = self.session._shared
        cancel = self.cancelled._event
        cut = await self.session.append(
            [_events.message_start(self.id, _events.ROLE_ASSISTANT, self.parent)]
        )
        while True:
            await _first(self._ready, cancel)
            if cancel.is_set() or (self._closed and not self._buffer):
                break
            await _first(self._full, cancel, timeout=self.coalesce.linger)
            if not shared.running.is_set():
                await self._hold()
            if cancel.is_set():
                break
            text = self._take()
            if not self._closed:
                if not self._buffer:
                    self._ready.clear()
                if self._size < self.coalesce.max_bytes:
                    self._full.clear()
            if text:
                cut = await self.session.append([_events.message_delta(self.id, text)])
                self._text.append(text)
            if not self._buffer:
                self._drained.set()
        return cut

    def _take(self) -> str:
        """The queued text, up to about `max_bytes` (an agent faster than its appends does
        not make one huge append); the rest waits for the next."""
        taken, size = 0, 0
        while taken < len(self._buffer) and size < self.coalesce.max_bytes:
            size += len(self._buffer[taken].encode("utf-8"))
            taken += 1
        text = "".join(self._buffer[:taken])
        del self._buffer[:taken]
        self._size -= size
        return text

    async def _hold(self) -> None:
        """Paused: acknowledge the pause with where output stopped, and hold it (text keeps
        queueing) until the resume, which is acknowledged too; a cancel ends the hold."""
        shared = self.session._shared
        await self._ack_latest("pause")
        await _first(shared.running, self.cancelled._event)
        if shared.running.is_set():
            await self._ack_latest("resume")

    async def _ack_latest(self, kind: str) -> None:
        shared = self.session._shared
        offset = shared.latest.get(kind)
        if offset is None or offset in shared.acked:
            return
        shared.acked.add(offset)
        await self.session.append([_events.control_ack(offset, kind, self.session.position)])
