"""A pool worker: serves every session whose name matches a pattern, woken by a Durable
Streams pull-wake subscription, one lease per session.

The workers of a pool share one subscription (`lease_scope: "stream"`, so each session has
a lease of its own) and follow its wake stream. On a wake a worker claims that session's
lease, reads what arrived since the session's cursor, and hands it to the handler as a
`Job`; heartbeats keep the lease while the handler writes, and a `done` ack moves the
cursor past what was handled. A worker that dies loses its lease when it runs out: the
server writes `agent.lost` into the session and wakes it again, and another worker answers
what is still unanswered (`Job.unanswered`)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

import httpx

from . import _offset
from ._client import Client, refuse_unless_ok
from ._errors import ProtocolError, Refused
from ._session import Session

log = logging.getLogger("agentwire")


@dataclass
class WorkerOptions:
    """What a pool of workers shares, and what this one is called."""

    subscription: str
    """The pool's subscription id (workers of one pool use the same)."""
    pattern: str
    """The session names the pool serves (`chat-*`)."""
    wake_stream: str = ""
    """The stream wakes are written to (default `wakes/<subscription>`); made if missing."""
    lease_ttl: float = 10.0
    """Seconds a session's lease lasts without a heartbeat (1 to 600): how soon a dead
    worker's session is answered by another."""
    name: str = field(default_factory=lambda: f"worker-{os.getpid()}-{secrets.token_hex(2)}")
    """This worker's name, as claims and `agent.lost` give it."""
    concurrency: int = 16
    """Sessions served at once."""

    def __post_init__(self) -> None:
        if not self.wake_stream:
            self.wake_stream = f"wakes/{self.subscription}"
        if self.concurrency < 1:
            raise ValueError("a worker serves at least one session")
        if not 1.0 <= self.lease_ttl <= 600.0:
            raise ValueError("lease_ttl is from 1 to 600 seconds")


@dataclass(frozen=True)
class UserMessage:
    """A user message, assembled from its events."""

    id: str
    text: str


class _Lease:
    def __init__(self, client: Client, subscription: str, claim: Dict[str, Any]) -> None:
        self.client = client
        self.subscription = subscription
        try:
            self.token: str = claim["token"]
            self.wake_id: str = claim["wake_id"]
            self.generation: int = int(claim["generation"])
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"a claim without {e}") from e
        self.reply: Optional[str] = None

    async def post(self, path: str, body: Dict[str, Any]) -> Any:
        url = self.client.stream_url(f"__ds/subscriptions/{self.subscription}/{path}")
        response = await self.client.http.post(
            url, json=body, headers={"authorization": f"Bearer {self.token}"}
        )
        refuse_unless_ok(response)
        return response.json() if response.content else None

    def _body(self) -> Dict[str, Any]:
        return {"wake_id": self.wake_id, "generation": self.generation}

    async def beat(self) -> None:
        """A heartbeat: the lease runs for another TTL."""
        body = self._body()
        if self.reply is not None:
            body["reply"] = self.reply
        await self.post("ack", body)

    async def release(self) -> None:
        """Gives the lease back without acking: the work is woken again."""
        await self.post("release", self._body())

    async def done(self, stream: str, offset: str) -> None:
        """Acks `stream` up to `offset` and gives the lease back."""
        body = self._body()
        body["acks"] = [{"stream": stream, "offset": offset}]
        body["done"] = True
        await self.post("ack", body)


class Job:
    """One session's new events, under its lease."""

    def __init__(
        self, session: Session, events: List[Tuple[str, Any]], lease: Optional[_Lease]
    ) -> None:
        self.session = session
        """The session, with the agent API (replies, control, sub-agents)."""
        self.events = events
        """What arrived since the session's cursor, with offsets; from the session's start
        when a message in it began before the cursor (a user message sent in pieces)."""
        self._lease = lease

    def unanswered(self) -> List[UserMessage]:
        """The user messages among the events that ended and have no finished reply (a
        `message.start` naming them as `parent`, then its `message.end`): a reply a lost
        worker left unfinished is answered again, a finished one never twice."""
        texts: Dict[str, List[str]] = {}
        ended: List[str] = []
        replies: Dict[str, str] = {}
        finished: Set[str] = set()
        for _, event in self.events:
            if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                continue
            id, kind, user = event["id"], event.get("type"), event.get("role") == "user"
            if kind == "message.start" and user:
                texts[id] = []
            elif kind == "message.start" and isinstance(event.get("parent"), str):
                replies[id] = event["parent"]
            elif kind == "message.delta" and id in texts:
                data = event.get("data")
                text = data.get("text") if isinstance(data, dict) else None
                if isinstance(text, str):
                    texts[id].append(text)
            elif kind == "message.end" and id in texts:
                ended.append(id)
            elif kind == "message.end" and not user:
                finished.add(id)
        answered = {parent for reply, parent in replies.items() if reply in finished}
        return [UserMessage(id, "".join(texts[id])) for id in ended if id not in answered]

    async def working_on(self, reply_id: str) -> None:
        """Says which reply this worker is writing, at once: if the worker dies, the
        session's `agent.lost` names it."""
        if self._lease is not None:
            self._lease.reply = reply_id
            await self._lease.beat()


Handler = Callable[[Job], Awaitable[None]]


def _begins_before(events: List[Tuple[str, Any]]) -> bool:
    """Whether a message event belongs to a message that started before these events."""
    started: Set[str] = set()
    for _, event in events:
        if not isinstance(event, dict):
            continue
        kind, id = event.get("type"), event.get("id")
        if not isinstance(id, str):
            continue
        if kind == "message.start":
            started.add(id)
        elif kind in ("message.delta", "message.end") and id not in started:
            return True
    return False


class Worker:
    """A worker of a pool; see the module documentation. `await Worker.start(client,
    options)`, then `await worker.run(handler)`."""

    def __init__(self, client: Client, options: WorkerOptions) -> None:
        self.client = client
        self.options = options

    @classmethod
    async def start(cls, client: Client, options: WorkerOptions) -> "Worker":
        """Makes the wake stream and the pool's subscription if they are missing (the same
        configuration re-confirms; another is refused with the server's reason)."""
        await client.ensure(options.wake_stream)
        body = {
            "type": "pull-wake",
            "pattern": options.pattern,
            "wake_stream": options.wake_stream,
            "lease_ttl_ms": int(options.lease_ttl * 1000),
            "lease_scope": "stream",
            "description": f"agent pool for {options.pattern}",
        }
        response = await client.http.put(
            client.stream_url(f"__ds/subscriptions/{options.subscription}"),
            json=body,
            headers=client.headers(),
        )
        refuse_unless_ok(response)
        return cls(client, options)

    @property
    def name(self) -> str:
        return self.options.name

    async def run(self, handler: Handler) -> None:
        """Serves the pool until an error it cannot get past (the wake stream gone, a token
        refused) or until cancelled: each wake is claimed and, if this worker got the lease,
        `handler` gets the session's new events. Wakes that arrive while every slot is busy
        wait: the wake stream keeps them, and another worker may claim them first."""
        slots = asyncio.Semaphore(self.options.concurrency)
        # Sessions being served here, each with the number of the serve that has it.
        serving: Dict[str, int] = {}
        tasks: Set["asyncio.Task[None]"] = set()
        serves = 0
        prefix = f"{self.options.subscription}:"
        at = await self.client.ensure(self.options.wake_stream)
        log.info("worker %s serving %s", self.name, self.options.pattern)
        try:
            while True:
                page = await self.client.wait(self.options.wake_stream, at)
                at = page.next
                for _, event in page.events:
                    if not isinstance(event, dict) or event.get("type") != "wake":
                        continue
                    id = event.get("subscription_id")
                    if not isinstance(id, str) or not id.startswith(prefix) or id in serving:
                        # Not this pool's, or being served here: what it woke for is read
                        # before the ack.
                        continue
                    serves += 1
                    serving[id] = serves
                    await slots.acquire()
                    task = asyncio.ensure_future(
                        self._serve_then_free(id, serves, handler, serving, slots)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _serve_then_free(
        self,
        id: str,
        serve_no: int,
        handler: Handler,
        serving: Dict[str, int],
        slots: asyncio.Semaphore,
    ) -> None:
        def done_here() -> None:
            if serving.get(id) == serve_no:
                del serving[id]

        try:
            await self._serve(id, handler, done_here)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("session %s not served: %s", id, e)
        finally:
            done_here()
            slots.release()

    async def _serve(self, id: str, handler: Handler, done_here: Callable[[], None]) -> None:
        """Claims `id`'s lease and runs `handler` until the session has nothing new."""
        client, ttl = self.client, self.options.lease_ttl
        response = await client.http.post(
            client.stream_url(f"__ds/subscriptions/{id}/claim"),
            json={"worker": self.name},
            headers=client.headers(),
        )
        if response.status_code == 409:
            log.debug("claim of %s lost", id)  # another worker has it, or it was answered
            return
        claim = refuse_unless_ok(response).json()
        lease = _Lease(client, id, claim)
        try:
            stream: str = claim["streams"][0]["path"]
            cursor: str = claim["streams"][0]["acked_offset"] or _offset.START
            _offset.parse(cursor)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ProtocolError(f"a claim without its stream: {e}") from e
        lost = asyncio.Event()
        beats = asyncio.ensure_future(self._beat(lease, ttl, lost))
        session = await client.open(stream)
        try:
            try:
                cursor = await self._work(session, stream, cursor, lease, handler, lost)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not lost.is_set():
                    # The handler failed (a model endpoint down, a bug): this worker is
                    # alive, so it gives the session back itself, after a pause that keeps
                    # a failure that repeats from spinning (the beats hold the lease).
                    log.warning("handler failed on %s; the session is given back", id)
                    await asyncio.sleep(min(ttl / 2, 5.0))
                    beats.cancel()
                    done_here()
                    await lease.release()
                raise
            beats.cancel()
            # The ack wakes the session again if more arrived: that wake is this worker's
            # to take too, so it is no longer "being served" here.
            done_here()
            await lease.done(stream, cursor)
        finally:
            beats.cancel()
            follower = session._shared.follower
            if follower is not None:
                follower.cancel()

    async def _work(
        self,
        session: Session,
        stream: str,
        cursor: str,
        lease: _Lease,
        handler: Handler,
        lost: asyncio.Event,
    ) -> str:
        client = self.client
        while True:
            events = await client.read_all(stream, cursor)
            if not events:
                return cursor
            reached = events[-1][0]
            if _begins_before(events):
                # A message whose start is behind the cursor (sent in several appends):
                # the job sees the session from its start, so it is whole.
                whole = [e for e in await client.read_all(stream) if e[0] < cursor]
                events = whole + events
            work = asyncio.ensure_future(handler(Job(session, events, lease)))
            gone = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait([work, gone], return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
            if not work.done():
                work.cancel()
                raise ProtocolError("the lease ran out mid-work; the session goes to another")
            work.result()
            # Read again: what arrived meanwhile (the reply itself, or another message).
            cursor = _offset.advance(reached, 1)

    async def _beat(self, lease: _Lease, ttl: float, lost: asyncio.Event) -> None:
        """Heartbeats at a third of the TTL. A fenced one means the lease is gone (it ran
        out, another worker has the session): stop writing at once. A worker that cannot
        reach the server stops too, before its lease can have run out."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(ttl / 3)
            sent = loop.time()
            try:
                await lease.beat()
                last = sent
            except Refused as e:
                if e.status in (404, 409):
                    log.warning("lease of %s lost", lease.subscription)
                    lost.set()
                    return
                if loop.time() - last + ttl / 3 >= ttl:
                    lost.set()
                    return
            except httpx.TransportError:
                if loop.time() - last + ttl / 3 >= ttl:
                    log.warning("lease of %s about to run out unrenewed", lease.subscription)
                    lost.set()
                    return
