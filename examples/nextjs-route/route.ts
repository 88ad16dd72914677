// app/api/agentwire/route.ts in a Next.js (App Router) app: the agent behind an AI SDK chat
// whose replies live in agentwire sessions. agentwire wakes this route through a webhook
// subscription when a user writes in a `chat-*` session; the route answers at once and the
// reply streams into the session, where every tab (AgentwireChatTransport) reads it and
// stop() in any of them aborts `streamText` here.
import { openai } from "@ai-sdk/openai";
import { after } from "next/server";
import { handleWake, streamTextIntoSession } from "agentwire-clients/server";

export const runtime = "nodejs";
// The reply streams after the response: keep the function alive for it.
export const maxDuration = 300;

export async function POST(request: Request): Promise<Response> {
  return handleWake(request, {
    baseUrl: process.env.AGENTWIRE_URL ?? "http://127.0.0.1:8787",
    token: process.env.AGENTWIRE_TOKEN, // a writer token for `chat-*`; none under `agentwire dev --insecure`
    waitUntil: after,
    answer: ({ session, message, messages }) =>
      streamTextIntoSession({
        session,
        parent: message.id,
        model: openai("gpt-4o-mini"),
        system: "You are a helpful assistant.",
        messages,
      }),
  });
}
