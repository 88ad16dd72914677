// route.ts, runnable with plain Node against `agentwire dev`, with the AI SDK's mock model
// instead of a provider (nothing to install beyond `npm ci --prefix clients`):
//
//   node examples/nextjs-route/example.mjs                 # serve: chat in the demo page
//   node examples/nextjs-route/example.mjs --once "hello"  # one question, print the reply, exit
//
// AGENTWIRE_URL (default http://127.0.0.1:8787), AGENTWIRE_TOKEN (a writer token for
// `chat-*`; none under --insecure), PORT (default 3000).
import http from "node:http"
import { createRequire } from "node:module"

import { handleWake, streamTextIntoSession } from "../../clients/js/dist/server.js"

// In an app `ai` is your own dependency; here it comes from clients/node_modules.
const require = createRequire(new URL("../../clients/package.json", import.meta.url))
const { MockLanguageModelV2, simulateReadableStream } = await import(require.resolve("ai/test"))

const baseUrl = process.env.AGENTWIRE_URL ?? "http://127.0.0.1:8787"
const token = process.env.AGENTWIRE_TOKEN
const port = Number(process.env.PORT ?? 3000)
const auth = token ? { authorization: `Bearer ${token}` } : {}

/** A fake model: answers with the question, word by word, 40 ms apart. */
const model = new MockLanguageModelV2({
  doStream: async ({ prompt }) => {
    const last = prompt.at(-1)?.content
    const question = Array.isArray(last) ? last.map((part) => part.text ?? "").join("") : String(last ?? "")
    const words = `You asked: “${question}”. This reply was written into the session by streamText, token by token, and lives there: reload the page, open a second tab, or press stop.`.split(/(?<= )/)
    return {
      stream: simulateReadableStream({
        chunkDelayInMs: 40,
        chunks: [
          { type: "stream-start", warnings: [] },
          { type: "text-start", id: "t" },
          ...words.map((delta) => ({ type: "text-delta", id: "t", delta })),
          { type: "text-end", id: "t" },
          { type: "finish", finishReason: "stop", usage: { inputTokens: 1, outputTokens: words.length, totalTokens: words.length + 1 } },
        ],
      }),
    }
  },
})

/** The same POST handler as route.ts. */
async function POST(request) {
  return handleWake(request, {
    baseUrl,
    token,
    answer: ({ session, message, messages }) => streamTextIntoSession({ session, parent: message.id, model, messages }),
  })
}

// node:http in front of the Web-standard handler (Next.js does this part in an app).
const server = http.createServer(async (req, res) => {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  const request = new Request(`http://127.0.0.1:${port}${req.url}`, { method: req.method, headers: req.headers, body: req.method === "POST" ? Buffer.concat(chunks) : undefined })
  const response = req.method === "POST" && req.url === "/api/agentwire" ? await POST(request) : new Response("not found", { status: 404 })
  res.writeHead(response.status, Object.fromEntries(response.headers)).end(Buffer.from(await response.arrayBuffer()))
})
await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve))

// agentwire calls the route when a `chat-*` session has new events.
const subscription = `${baseUrl}/v1/stream/__ds/subscriptions/nextjs-route`
const made = await fetch(subscription, {
  method: "PUT",
  headers: { ...auth, "content-type": "application/json" },
  body: JSON.stringify({ type: "webhook", pattern: "chat-*", lease_scope: "stream", webhook: { url: `http://127.0.0.1:${port}/api/agentwire` } }),
})
if (!made.ok) throw new Error(`the webhook subscription was refused: ${made.status} ${await made.text()}`)
const stop = async () => {
  await fetch(subscription, { method: "DELETE", headers: auth }).catch(() => undefined)
  server.close()
  process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)

const once = process.argv.indexOf("--once")
if (once === -1) {
  console.log(`route on http://127.0.0.1:${port}/api/agentwire, woken for chat-* sessions`)
  console.log(`chat: ${baseUrl}/?session=chat-1${token ? "&token=<a controller token>" : ""} (Ctrl-C stops)`)
} else {
  // What a browser's AgentwireChatTransport does on send, over HTTP: a user message.
  const session = `chat-example-${Date.now()}`
  const text = process.argv[once + 1] ?? "hello"
  const stream = `${baseUrl}/v1/stream/${session}`
  const user = [
    { type: "message.start", id: "u_1", role: "user" },
    { type: "message.delta", id: "u_1", data: { text } },
    { type: "message.end", id: "u_1", role: "user" },
  ]
  const put = await fetch(stream, { method: "PUT", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(user) })
  if (!put.ok) throw new Error(`could not make ${session}: ${put.status} ${await put.text()}`)
  const deadline = Date.now() + 20_000
  for (;;) {
    const events = await (await fetch(`${stream}?offset=-1`, { headers: auth })).json()
    const reply = events.find((e) => e.type === "message.start" && e.parent === "u_1")
    if (reply && events.some((e) => e.type === "message.end" && e.id === reply.id)) {
      const answer = events.filter((e) => e.type === "message.delta" && e.id === reply.id).map((e) => e.data.text).join("")
      console.log(`${session}: ${events.length} events; reply ${reply.id}:\n${answer}`)
      break
    }
    if (Date.now() > deadline) throw new Error(`no reply in ${session} after 20 s`)
    await new Promise((r) => setTimeout(r, 200))
  }
  await stop()
}
