"""A minimal OpenAI agent on agentwire: a worker that answers every `chat-*` session.

    pip install agentwire openai
    AGENTWIRE_URL=http://127.0.0.1:8787 OPENAI_API_KEY=sk-... python agent.py
    # no model at hand: python agent.py --fake

Send it a message (`curl`, the demo chat, or the browser client) and the reply streams into
the session; a stop from any tab closes the model's stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any, Dict, Iterator

import agentwire
from agentwire.integrations import stream_chat_completion


def fake_model(text: str) -> Iterator[Dict[str, Any]]:
    """Chunks shaped like OpenAI's, for trying it without a key."""
    for word in f"You said: {text}".split():
        yield {"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
    yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pattern", default="chat-*", help="the sessions this agent answers")
    parser.add_argument("--fake", action="store_true", help="echo instead of calling a model")
    parser.add_argument("--model", default=os.environ.get("MODEL", "gpt-4o-mini"))
    parser.add_argument("--exit-after", type=int, default=0, help="stop after N replies")
    args = parser.parse_args()

    url = os.environ.get("AGENTWIRE_URL", "http://127.0.0.1:8787")
    replies = 0
    done = asyncio.Event()

    async with agentwire.Client(url, os.environ.get("AGENTWIRE_TOKEN")) as client:
        if not args.fake:
            from openai import AsyncOpenAI

            llm = AsyncOpenAI()  # OPENAI_API_KEY, and OPENAI_BASE_URL for any compatible server

        async def answer(job: agentwire.Job) -> None:
            nonlocal replies
            for message in job.unanswered():
                reply_id = f"reply-{message.id}"
                await job.working_on(reply_id)
                async with job.session.reply(reply_id, parent=message.id) as reply:
                    if args.fake:
                        stream: Any = fake_model(message.text)
                    else:
                        stream = await llm.chat.completions.create(
                            model=args.model,
                            messages=[{"role": "user", "content": message.text}],
                            stream=True,
                        )
                    await stream_chat_completion(reply, stream)
                replies += 1
                print(f"answered {job.session.name} {message.id}", flush=True)
                if args.exit_after and replies >= args.exit_after:
                    done.set()

        options = agentwire.WorkerOptions("python-agents", args.pattern)
        worker = await agentwire.Worker.start(client, options)
        print(f"serving {args.pattern} at {url} as {worker.name}", flush=True)
        serving = asyncio.ensure_future(worker.run(answer))
        stop = asyncio.ensure_future(done.wait())
        await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
        serving.cancel()
        stop.cancel()


if __name__ == "__main__":
    asyncio.run(main())
