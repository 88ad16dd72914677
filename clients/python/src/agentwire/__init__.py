"""The Python SDK for agentwire sessions.

Agents `await Client(url, token).open(name)` to get a `Session`, stream replies with
`session.reply(parent=...)` (token deltas coalesced into few appends, each exactly once),
and learn of control (cancel, steer, pause, resume) from append responses and by following
the session: `reply.cancelled`, `session.on_steer(...)`. A pool of agents serves every
session whose name matches a pattern with `Worker`; serverless agents verify webhook wakes
with `agentwire.webhook`. `agentwire.sync` is the same API for code that is not asyncio.
"""

from . import events, sync, webhook
from ._client import Client, ReadPage
from ._errors import AgentwireError, NetworkError, ProtocolError, Refused
from ._session import Cancelled, Coalesce, ControlEvent, Reply, ReplyOutcome, Session
from ._worker import Job, UserMessage, Worker, WorkerOptions

__all__ = [
    "AgentwireError",
    "Cancelled",
    "Client",
    "Coalesce",
    "ControlEvent",
    "Job",
    "NetworkError",
    "ProtocolError",
    "ReadPage",
    "Refused",
    "Reply",
    "ReplyOutcome",
    "Session",
    "UserMessage",
    "Worker",
    "WorkerOptions",
    "events",
]
