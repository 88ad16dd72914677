"""A pool worker on pull-wake, and a webhook agent, against a real `agentwire dev`."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional, Tuple

import agentwire
from agentwire import Client, Job, Worker, WorkerOptions, events
from agentwire.webhook import InvalidSignature, Wake, WebhookVerifier

from conftest import Server
from loopback import LoopbackServer, read_request
from test_session import of, until


async def test_a_worker_answers_each_message_of_its_pattern_once(server: Server, name: str) -> None:
    pool = f"pool-{name[-12:]}"
    pattern = f"{name}-*"
    seen: List[str] = []

    async def handle(job: Job) -> None:
        for message in job.unanswered():
            seen.append(message.text)
            reply_id = f"re-{message.id}"
            await job.working_on(reply_id)
            async with job.session.reply(reply_id, parent=message.id) as reply:
                reply.delta(f"you said: {message.text}")

    async with Client(server.url) as client:
        worker = await Worker.start(client, WorkerOptions(pool, pattern, lease_ttl=3.0))
        running = asyncio.ensure_future(worker.run(handle))
        try:
            for stream in (f"{name}-a", f"{name}-b"):
                await client.ensure(stream)
            for n, text in enumerate(["hello", "and again"]):
                await client.append(f"{name}-a", events.user_message(f"u{n}", "ann", text))
            await client.append(f"{name}-b", events.user_message("u9", "bob", "other session"))

            async def answered() -> bool:
                a = of(await client.read_all(f"{name}-a"), "message.end")
                b = of(await client.read_all(f"{name}-b"), "message.end")
                return len(a) == 4 and len(b) == 2

            await until(answered, timeout=20)
            await asyncio.sleep(0.5)  # anything extra would be answered by now
            a = await client.read_all(f"{name}-a")
        finally:
            running.cancel()
    assert sorted(seen) == ["and again", "hello", "other session"]
    replies = [e for _, e in of(a, "message.start") if e.get("role") == "assistant"]
    assert sorted(r["parent"] for r in replies) == ["u0", "u1"]
    texts = {e["id"]: e["data"]["text"] for _, e in of(a, "message.delta") if e["id"].startswith("re-")}
    assert texts == {"re-u0": "you said: hello", "re-u1": "you said: and again"}


class Receiver(LoopbackServer):
    """A webhook endpoint on 127.0.0.1 (which `agentwire dev` may call): it queues each wake
    and answers `{}`."""

    def __init__(self) -> None:
        self.wakes: "asyncio.Queue[Tuple[Dict[str, str], bytes]]" = asyncio.Queue()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is not None:
            await self.wakes.put((request.headers, request.body))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()


async def test_a_webhook_agent_verifies_the_wake_replies_and_acks(server: Server, name: str) -> None:
    async with Client(server.url) as client, Receiver() as receiver:
        hook = f"{receiver.url}/"
        sub = f"hook-{name[-12:]}"
        response = await client.http.put(
            client.stream_url(f"__ds/subscriptions/{sub}"),
            json={"type": "webhook", "pattern": f"{name}-*", "webhook": {"url": hook}},
        )
        assert response.is_success, response.text
        await client.ensure(f"{name}-1")
        await client.append(f"{name}-1", events.user_message("u1", "ann", "ping"))
        headers, body = await asyncio.wait_for(receiver.wakes.get(), timeout=10)

        verifier = WebhookVerifier(client)
        wake: Wake = await verifier.verify(headers, body)
        assert [s.path for s in wake.streams] == [f"{name}-1"]
        # A body changed on the way, or no signature: refused.
        tampered = body.replace(b"ping", b"pong") if b"ping" in body else body + b" "
        for bad_headers, bad_body in ((headers, tampered), ({}, body)):
            try:
                await verifier.verify(bad_headers, bad_body)
            except InvalidSignature:
                pass
            else:
                raise AssertionError("a wake that does not verify was accepted")

        stream = wake.streams[0]
        session = await client.open(stream.path, follow_control=False)
        job = Job(session, await client.read_all(stream.path, stream.acked_offset), None)
        [message] = job.unanswered()
        async with session.reply("r1", parent=message.id) as reply:
            reply.delta(f"pong to {message.text}")
        answer = await wake.ack(client, stream.path, session.position)
        assert answer["ok"] is True, answer
        # Acked past its own reply: the agent is not woken by what it wrote.
        await asyncio.sleep(1.5)
        assert receiver.wakes.empty()
        evs = await client.read_all(stream.path)
    assert of(evs, "message.delta", "r1")[0][1]["data"]["text"] == "pong to ping"


def test_a_signature_outside_the_window_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    import base64

    key = Ed25519PrivateKey.generate()
    x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": base64.urlsafe_b64encode(x).rstrip(b"=").decode()}]}
    body = b'{"wake_id": "w1"}'

    def header(t: int) -> str:
        sig = base64.urlsafe_b64encode(key.sign(f"{t}.".encode() + body)).rstrip(b"=").decode()
        return f"t={t},kid=k1,ed25519={sig}"

    agentwire.webhook.verify_signature(header(1_000_000), body, jwks, now=1_000_100)
    for bad, why in ((header(1_000_000), "old"), (header(1_000_000).replace("k1", "k2"), "key")):
        try:
            agentwire.webhook.verify_signature(bad, body, jwks, now=1_000_000 + 301 if why == "old" else 1_000_000)
        except InvalidSignature as e:
            assert str(e)
        else:
            raise AssertionError(f"a signature with a bad {why} passed")


async def test_a_dead_workers_session_is_answered_by_another(server: Server, name: str) -> None:
    pool = f"pool-{name[-12:]}"

    def options(worker: str) -> WorkerOptions:
        return WorkerOptions(pool, f"{name}-*", lease_ttl=1.5, name=worker)
    stuck = asyncio.Event()

    async def dies_mid_reply(job: Job) -> None:
        for message in job.unanswered():
            await job.working_on(f"first-{message.id}")
            reply = job.session.reply(f"first-{message.id}", parent=message.id)
            reply.delta("half a rep")
            stuck.set()
            await asyncio.Event().wait()  # the process hangs, then is killed

    async def answers(job: Job) -> None:
        for message in job.unanswered():
            async with job.session.reply(f"second-{message.id}", parent=message.id) as reply:
                reply.delta("a whole reply")

    async with Client(server.url) as client:
        first = await Worker.start(client, options("w1"))
        dying = asyncio.ensure_future(first.run(dies_mid_reply))
        await client.ensure(f"{name}-1")
        await client.append(f"{name}-1", events.user_message("u1", "ann", "hello"))
        await asyncio.wait_for(stuck.wait(), timeout=10)
        await asyncio.sleep(0.3)
        dying.cancel()  # no release, no more heartbeats: the lease runs out
        second = await Worker.start(client, options("w2"))
        serving = asyncio.ensure_future(second.run(answers))
        try:

            async def answered() -> bool:
                evs = await client.read_all(f"{name}-1")
                return bool(of(evs, "message.end", "second-u1"))

            await until(answered, timeout=20)
            evs = await client.read_all(f"{name}-1")
        finally:
            serving.cancel()
    lost = of(evs, "agent.lost")
    assert lost and lost[0][1]["id"] == "first-u1" and lost[0][1]["data"]["worker"] == "w1"
    assert not of(evs, "message.end", "first-u1")
    text = of(evs, "message.delta", "second-u1")[0][1]["data"]["text"]
    assert text == "a whole reply"
