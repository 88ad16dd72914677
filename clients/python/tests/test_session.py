"""Replies, exactly-once appends, control and sub-agents against a real `agentwire dev`."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Dict, List, Optional, Tuple

import agentwire
from agentwire import Client, Coalesce, events

from conftest import Server
from proxy import FlakyProxy

Events = List[Tuple[str, Dict[str, Any]]]


async def read(client: Client, name: str) -> Events:
    return await client.read_all(name)


def of(evs: Events, kind: str, id: Optional[str] = None) -> Events:
    return [(o, e) for o, e in evs if e["type"] == kind and (id is None or e.get("id") == id)]


async def until(check: Any, timeout: float = 10.0) -> None:
    """Waits until `check()` (plain or async) is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_burst_of_deltas_is_coalesced_into_few_appends(server: Server, name: str) -> None:
    async with Client(server.url) as client:
        session = await client.open(name)
        async with session.reply("r1", parent="u1") as reply:
            for i in range(300):
                reply.delta(f"t{i} ")
        evs = await read(client, name)
    start = of(evs, "message.start", "r1")
    assert start and start[0][1]["parent"] == "u1" and start[0][1]["role"] == "assistant"
    deltas = of(evs, "message.delta", "r1")
    assert "".join(e["data"]["text"] for _, e in deltas) == "".join(f"t{i} " for i in range(300))
    assert 1 <= len(deltas) <= 3, f"300 deltas in {len(deltas)} appends"
    assert evs[-1][1] == {"type": "message.end", "id": "r1"}


async def test_a_paced_stream_appends_about_once_per_linger(server: Server, name: str) -> None:
    async with Client(server.url) as client:
        session = await client.open(name)
        async with session.reply("r1", coalesce=Coalesce(linger=0.1)) as reply:
            for i in range(50):  # 0.5 s at 100 deltas/s
                reply.delta("x")
                await asyncio.sleep(0.01)
        deltas = of(await read(client, name), "message.delta", "r1")
    assert "".join(e["data"]["text"] for _, e in deltas) == "x" * 50
    # About one append per 100 ms, never one per delta.
    assert 3 <= len(deltas) <= 10, len(deltas)


async def test_max_bytes_flushes_before_the_linger(server: Server, name: str) -> None:
    async with Client(server.url) as client:
        session = await client.open(name)
        reply = session.reply("r1", coalesce=Coalesce(linger=30.0, max_bytes=100))
        for _ in range(10):
            reply.delta("y" * 50)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(reply.end(), timeout=5)  # a 30 s linger would time out
        deltas = of(await read(client, name), "message.delta", "r1")
    assert [len(e["data"]["text"]) for _, e in deltas] == [100] * 5


async def test_an_agent_faster_than_its_appends_makes_no_huge_append(server: Server, name: str) -> None:
    async with Client(server.url) as client:
        session = await client.open(name)
        async with session.reply("r1", coalesce=Coalesce(linger=0.1, max_bytes=256)) as reply:
            for i in range(2000):  # about 14 KB, queued far faster than it is appended
                reply.delta(f"t{i:04d} ")
        deltas = of(await read(client, name), "message.delta", "r1")
    sizes = [len(e["data"]["text"]) for _, e in deltas]
    assert "".join(e["data"]["text"] for _, e in deltas) == "".join(f"t{i:04d} " for i in range(2000))
    assert max(sizes) <= 256 + 6, sizes


async def test_appends_are_exactly_once_when_answers_are_lost(server: Server, name: str) -> None:
    # Every third POST is applied and its answer dropped; every fifth is refused with 503.
    def policy(method: str, path: str, n: int) -> Optional[str]:
        if method != "POST":
            return None
        return "drop" if n % 3 == 0 else "503" if n % 5 == 0 else None

    async with FlakyProxy(server.url, policy) as proxy:
        async with Client(proxy.url) as client:
            session = await client.open(name, follow_control=False)
            for i in range(20):
                await session.append([{"type": "agent.status", "data": {"n": i}}])
            async with session.reply("r1") as reply:
                for i in range(40):
                    reply.delta(f"{i},")
                    await asyncio.sleep(0.005)
        assert [a for _, _, a in proxy.log].count("drop") >= 5, proxy.log
    async with Client(server.url) as client:
        evs = await read(client, name)
    assert [e["data"]["n"] for _, e in of(evs, "agent.status")] == list(range(20))
    text = "".join(e["data"]["text"] for _, e in of(evs, "message.delta", "r1"))
    assert text == "".join(f"{i}," for i in range(40))
    assert len(of(evs, "message.start", "r1")) == 1 and len(of(evs, "message.end", "r1")) == 1


async def test_a_refused_append_raises_with_the_servers_reason(server: Server, name: str) -> None:
    async with Client(server.url) as client:
        session = await client.open(name, follow_control=False)
        await session.append([{"type": "agent.status", "data": {}}])
        try:
            await session.append([])
        except agentwire.Refused as e:
            assert e.status == 400 and "empty" in e.message.lower(), e
        else:
            raise AssertionError("an empty append was accepted")


async def test_a_cancel_stops_the_reply_and_is_acked_with_the_cut(server: Server, name: str) -> None:
    async with Client(server.url) as client, Client(server.url) as user:
        session = await client.open(name)
        reply = session.reply("r1", parent="u1")
        cancel_at = ""
        for i in range(400):
            if reply.cancelled:
                break
            reply.delta(f"w{i} ")
            await asyncio.sleep(0.01)
            if i == 30:
                cancel_at = await user.append(name, [events.control("cancel", {"message_id": "r1"})])
        outcome = await reply.end()
        evs = await read(client, name)
    assert outcome.cancelled_by is not None and outcome.cancelled_by.kind == "cancel"
    cancel = of(evs, "control.cancel")
    assert outcome.cancelled_by.offset == cancel[0][0]
    assert agentwire._offset.advance(cancel[0][0], 1) == cancel_at
    deltas = of(evs, "message.delta", "r1")
    assert len(deltas) < 40, "the reply stopped soon after the cancel"
    # The cut is the offset right after the reply's last delta.
    cut = agentwire._offset.advance(deltas[-1][0], 1)
    assert outcome.cut == cut
    end = of(evs, "message.end", "r1")
    assert end[0][1].get("data") == {"stopped": True}
    ack = of(evs, "control.ack")
    assert [e["data"] for _, e in ack] == [{"ref": cancel[0][0], "kind": "cancel", "cut": cut}]
    assert "".join(e["data"]["text"] for _, e in deltas) == outcome.text


async def test_a_cancel_reaches_a_reply_that_is_not_appending(server: Server, name: str) -> None:
    async with Client(server.url) as client, Client(server.url) as user:
        session = await client.open(name)
        reply = session.reply("r1")
        await asyncio.sleep(0.3)  # the model is thinking: nothing is appended
        await user.append(name, [events.control("cancel")])  # no message_id: every reply
        control = await asyncio.wait_for(reply.cancelled.wait(), timeout=5)
        outcome = await reply.end()
    assert control.kind == "cancel" and outcome.cancelled_by == control


async def test_a_cancel_of_another_reply_leaves_this_one(server: Server, name: str) -> None:
    async with Client(server.url) as client, Client(server.url) as user:
        session = await client.open(name)
        reply = session.reply("r1")
        reply.delta("a")
        await user.append(name, [events.control("cancel", {"message_id": "r2"})])
        await asyncio.sleep(0.3)
        reply.delta("b")
        outcome = await reply.end()
        evs = await read(client, name)
    assert outcome.cancelled_by is None and outcome.text == "ab"
    assert of(evs, "message.end", "r1")[0][1] == {"type": "message.end", "id": "r1"}


async def test_pause_holds_output_until_resume_and_both_are_acked(server: Server, name: str) -> None:
    async with Client(server.url) as client, Client(server.url) as user:
        session = await client.open(name)
        paused: List[str] = []
        session.on_pause(lambda c: paused.append(c.offset))
        reply = session.reply("r1")
        reply.delta("before ")
        await asyncio.sleep(0.3)
        pause = await user.append(name, [events.control("pause")])
        await until(lambda: bool(paused))
        assert session.paused
        reply.delta("held ")
        await asyncio.sleep(0.5)
        evs = await read(client, name)
        assert "held" not in "".join(e["data"]["text"] for _, e in of(evs, "message.delta"))
        await user.append(name, [events.control("resume")])
        reply.delta("after")
        outcome = await reply.end()
        evs = await read(client, name)
    assert outcome.text == "before held after" and not session.paused
    acks = [e["data"] for _, e in of(evs, "control.ack")]
    assert [a["kind"] for a in acks] == ["pause", "resume"]
    pause_offset = of(evs, "control.pause")[0][0]
    assert acks[0]["ref"] == pause_offset and agentwire._offset.advance(pause_offset, 1) == pause
    # Output stopped at the pause: the ack's cut is before every held delta.
    held = [o for o, e in of(evs, "message.delta") if "held" in e["data"]["text"]]
    assert acks[0]["cut"] <= held[0]


async def test_a_steer_reaches_its_callback_and_is_acked(server: Server, name: str) -> None:
    async with Client(server.url) as client, Client(server.url) as user:
        session = await client.open(name)
        steers: List[Any] = []

        async def on_steer(control: agentwire.ControlEvent) -> None:
            steers.append(control.data)

        session.on_steer(on_steer)
        await user.append(name, [events.control("steer", {"text": "shorter, please"})])

        async def acked() -> bool:
            return bool(of(await read(client, name), "control.ack"))

        await until(acked)
        evs = await read(client, name)
    assert steers == [{"text": "shorter, please"}]
    assert of(evs, "control.ack")[0][1]["data"]["kind"] == "steer"


async def test_sub_agents_write_concurrently_stamped_with_agent_and_parent(
    server: Server, name: str
) -> None:
    async with Client(server.url) as client:
        session = await client.open(name)
        async with session.reply("plan", parent="u1") as plan:
            plan.delta("asking two helpers")
        helpers = [session.sub_agent(f"planner/search-{n}", parent="plan") for n in (1, 2)]

        async def work(helper: agentwire.Session, n: int) -> None:
            await helper.tool_call(f"c{n}", "search", {"q": f"topic {n}"})
            async with helper.reply(f"h{n}", coalesce=Coalesce(linger=0.01)) as reply:
                for i in range(20):
                    reply.delta(f"{n}:{i} ")
                    await asyncio.sleep(0.02)
            await helper.tool_result(f"c{n}", {"hits": n})

        await asyncio.gather(*(work(h, n) for n, h in zip((1, 2), helpers)))
        evs = await read(client, name)
    for n in (1, 2):
        mine = [e for _, e in evs if e.get("agent") == f"planner/search-{n}"]
        assert mine and all(e["parent"] == "plan" for e in mine)
        text = "".join(e["data"]["text"] for e in mine if e["type"] == "message.delta")
        assert text == "".join(f"{n}:{i} " for i in range(20))
        call = next(e for e in mine if e["type"] == "tool.call")
        assert call["data"] == {"tool": "search", "arguments": {"q": f"topic {n}"}}
    assert all("agent" not in e for _, e in of(evs, "message.start", "plan"))
    # Both helpers appended at once (0.4 s each, side by side): their deltas interleave.
    order = [e["agent"][-1] for _, e in evs if e["type"] == "message.delta" and "agent" in e]
    assert order.index("2") < len(order) - 1 - order[::-1].index("1"), order


async def test_a_token_scoped_to_one_session_cannot_write_another(secured: Server) -> None:
    token = secured.token("--role", "writer", "--session", "chat-mine")
    async with Client(secured.url, token) as client:
        session = await client.open("chat-mine", follow_control=False)
        async with session.reply("r1") as reply:
            reply.delta("hello")
        try:
            await client.open("chat-theirs", follow_control=False)
        except agentwire.Refused as e:
            assert e.status == 403, e
        else:
            raise AssertionError("a token for chat-mine opened chat-theirs")
        assert of(await client.read_all("chat-mine"), "message.end", "r1")


def test_the_sync_facade_streams_a_reply(server: Server, name: str) -> None:
    with agentwire.sync.Client(server.url) as client:
        session = client.open(name)
        with session.reply("r1", parent="u1") as reply:
            for i in range(50):
                reply.delta(f"{i} ")
        evs = client.read_all(name)
    assert "".join(e["data"]["text"] for _, e in evs if e["type"] == "message.delta") == "".join(
        f"{i} " for i in range(50)
    )
    assert evs[-1][1]["type"] == "message.end"


async def test_an_append_that_gave_up_does_not_swallow_the_next(server: Server, name: str) -> None:
    # Every answer is lost for a while (the appends are applied): the SDK gives up. The next
    # append must not reuse the sequence number the server already holds, or it would be
    # taken for a duplicate and never stored.
    healthy = [False]

    def policy(method: str, path: str, n: int) -> Optional[str]:
        return None if method != "POST" or healthy[0] else "drop"

    async with FlakyProxy(server.url, policy) as proxy:
        async with Client(proxy.url) as client:
            session = await client.open(name, follow_control=False)
            try:
                await session.append([{"type": "agent.status", "data": {"n": 1}}])
            except agentwire.NetworkError:
                pass
            else:
                raise AssertionError("every answer was lost, yet the append succeeded")
            healthy[0] = True
            await session.append([{"type": "agent.status", "data": {"n": 2}}])
            evs = await read(client, name)
    assert [e["data"]["n"] for _, e in of(evs, "agent.status")] == [1, 2]
