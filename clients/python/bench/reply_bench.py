"""Tokens per second one Python SDK reply sustains into a session, and the CPU the agent
process spends on it; the same measurement as the Rust SDK's `reply-bench`, printed as one
JSON line. `bash tests/bench/sdk.sh` runs both against one `agentwire dev`."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import agentwire


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8787")
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=0, help="tokens/s; 0: as fast as taken")
    parser.add_argument("--session", default="bench-reply-py")
    args = parser.parse_args()
    async with agentwire.Client(args.url) as client:
        session = await client.open(args.session)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        reply = session.reply("r1", parent="u1")
        tick = 1.0 / args.rate if args.rate else 0.0
        for i in range(args.tokens):
            reply.delta(f"tok{i % 10} ")
            if tick:
                # Paced: where the i-th token is due, so sleeps' overshoot does not add up.
                wait = t0 + tick * (i + 1) - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif i % 64 == 0:
                await asyncio.sleep(0)
        await reply.end()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        events = await client.read_all(args.session)
    text = sum(len(e["data"]["text"]) for _, e in events if e["type"] == "message.delta")
    assert text == args.tokens * 5, f"the session holds {text} bytes of text"
    deltas = sum(1 for _, e in events if e["type"] == "message.delta")
    print(json.dumps({
        "sdk": "python", "tokens": args.tokens, "rate": args.rate, "seconds": wall,
        "tokens_per_s": args.tokens / wall, "cpu_s": cpu,
        "cpu_us_per_token": cpu * 1e6 / args.tokens, "appends": deltas + 2,
    }))


if __name__ == "__main__":
    asyncio.run(main())
