// The server module (js/dist/server.js) against a real `agentwire dev`, with the AI SDK's
// own streamText and mock language model: replies, coalescing, exactly-once retries,
// cancel, tool calls and webhook wakes.
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import http from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { after, before, test } from "node:test"
import { jsonSchema, simulateReadableStream, tool } from "ai"
import { MockLanguageModelV2 } from "ai/test"

import { advance, MessagesView, toUIMessages } from "../dist/agentwire.js"
import { handleWake, openSession, streamTextIntoSession, writeUIMessageStream } from "../dist/server.js"

const root = new URL("../../../", import.meta.url).pathname
const bin = process.env.AGENTWIRE_BIN ?? join(root, "target/debug/agentwire")
let dev, dataDir, url

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-server-"))
  dev = spawn(bin, ["dev", "--insecure", "--no-demo-agent", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, RUST_LOG: "warn" },
  })
  url = await new Promise((resolve, reject) => {
    dev.once("exit", (code) => reject(new Error(`agentwire dev exited with ${code}`)))
    createInterface({ input: dev.stdout }).on("line", (line) => {
      const match = /^agentwire dev listening on (\S+)/.exec(line)
      if (match) resolve(match[1])
    })
  })
})

after(() => {
  dev?.kill("SIGKILL")
  rmSync(dataDir, { recursive: true, force: true })
})

const words = (n) => Array.from({ length: n }, (_, i) => `w${i} `)

/** A mock model streaming `tokens` as text deltas, `delayMs` apart; `seen` records its calls. */
function model(tokens, { delayMs = 5, initialDelayMs = 0 } = {}) {
  const seen = { calls: 0, abortSignal: undefined, prompt: undefined }
  const mock = new MockLanguageModelV2({
    doStream: async (options) => {
      seen.calls += 1
      seen.abortSignal = options.abortSignal
      seen.prompt = options.prompt
      return {
        stream: simulateReadableStream({
          initialDelayInMs: initialDelayMs,
          chunkDelayInMs: delayMs,
          chunks: [
            { type: "stream-start", warnings: [] },
            { type: "text-start", id: "t" },
            ...tokens.map((delta) => ({ type: "text-delta", id: "t", delta })),
            { type: "text-end", id: "t" },
            { type: "finish", finishReason: "stop", usage: { inputTokens: 3, outputTokens: tokens.length, totalTokens: 3 + tokens.length } },
          ],
        }),
      }
    },
  })
  return { mock, seen }
}

async function events(session) {
  const response = await fetch(`${url}/v1/stream/${session}?offset=-1`)
  assert.equal(response.status, 200)
  return response.json()
}

async function post(session, ...body) {
  const response = await fetch(`${url}/v1/stream/${session}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
  assert.ok(response.ok, `append: ${response.status}`)
  return response.headers.get("stream-next-offset")
}

const userMessage = (id, text) => [
  { type: "message.start", id, role: "user" },
  { type: "message.delta", id, data: { text } },
  { type: "message.end", id, role: "user" },
]

async function until(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await fn()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

test("a streamText reply lands as message.start(parent), coalesced deltas and message.end", async () => {
  const session = await openSession("reply-1", { baseUrl: url })
  await post("reply-1", ...userMessage("u1", "count"))
  const tokens = words(60)
  const { mock, seen } = model(tokens, { delayMs: 5 })
  const { id, done } = streamTextIntoSession({ session, parent: "u1", model: mock, prompt: "count" })
  assert.match(id, /^m_[0-9a-f]{16}$/, "returns at once with the reply's id")
  const outcome = await done
  const log = await events("reply-1")
  const reply = log.filter((e) => e.id === id)
  assert.deepEqual(reply[0], { type: "message.start", id, role: "assistant", parent: "u1" })
  assert.deepEqual(reply.at(-1), { type: "message.end", id })
  const deltas = reply.filter((e) => e.type === "message.delta")
  assert.equal(deltas.map((d) => d.data.text).join(""), tokens.join(""))
  assert.ok(deltas.length < tokens.length / 4, `${tokens.length} tokens in ${deltas.length} appends`)
  assert.equal(seen.calls, 1)
  assert.equal(outcome.finishReason, "stop")
  assert.equal(outcome.stopped, false)
  const lastDelta = log.lastIndexOf(deltas.at(-1))
  assert.equal(outcome.cut, advance("0000000000000000_0000000000000000", lastDelta + 1), "cut: right after the last delta")
  assert.equal(outcome.tail, advance(outcome.cut, 1))
  session.close()
})

test("a delta batch is cut at maxBytes even inside the linger", async () => {
  const session = await openSession("reply-bytes", { baseUrl: url })
  const chunks = [{ type: "start" }, ...Array.from({ length: 10 }, () => ({ type: "text-delta", id: "t", delta: "x".repeat(100) })), { type: "finish" }]
  const stream = simulateReadableStream({ chunks, chunkDelayInMs: null, initialDelayInMs: null })
  const outcome = await writeUIMessageStream(stream, session, { coalesce: { lingerMs: 10_000, maxBytes: 300 } })
  const deltas = (await events("reply-bytes")).filter((e) => e.type === "message.delta")
  assert.deepEqual(deltas.map((d) => d.data.text.length), [300, 300, 300, 100])
  assert.equal(outcome.stopped, false)
  session.close()
})

/**
 * A proxy to agentwire dev that answers the `dropAt`-th append (counting from 1) only to
 * the server, dropping the response (the connection is destroyed), and fails the
 * `failAt`-th with a 503 without forwarding it.
 */
async function flakyProxy({ dropAt, failAt }) {
  const appends = []
  const server = http.createServer(async (req, res) => {
    const chunks = []
    for await (const chunk of req) chunks.push(chunk)
    const n = req.method === "POST" ? appends.push(req.headers["producer-seq"]) : 0
    if (n === failAt) {
      res.writeHead(503).end("try again")
      return
    }
    // The writer's long-poll passes through too: drop it upstream when the writer does.
    const gone = new AbortController()
    res.on("close", () => gone.abort())
    try {
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks)
      const upstream = await fetch(`${url}${req.url}`, { method: req.method, headers: req.headers, body, signal: gone.signal })
      const answer = Buffer.from(await upstream.arrayBuffer())
      if (n === dropAt) {
        req.socket.destroy()
        return
      }
      res.writeHead(upstream.status, Object.fromEntries(upstream.headers))
      res.end(answer)
    } catch {
      req.socket.destroy()
    }
  })
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, appends, close: () => server.close() }
}

test("a lost append response and a 503 are retried with the same sequence: the text appears once", async () => {
  const proxy = await flakyProxy({ dropAt: 3, failAt: 5 })
  const session = await openSession("retry-1", { baseUrl: proxy.url })
  const tokens = words(50)
  const { mock } = model(tokens, { delayMs: 10 })
  const { id, done } = streamTextIntoSession({ session, parent: "u1", model: mock, prompt: "go" })
  const outcome = await done
  const log = await events("retry-1")
  assert.equal(log.filter((e) => e.type === "message.start").length, 1)
  assert.equal(log.filter((e) => e.type === "message.end").length, 1)
  const text = log.filter((e) => e.type === "message.delta" && e.id === id).map((e) => e.data.text).join("")
  assert.equal(text, tokens.join(""), "every token once, in order")
  assert.equal(proxy.appends[2], proxy.appends[3], "the dropped append was sent again with its sequence number")
  assert.equal(proxy.appends[4], proxy.appends[5], "so was the one refused with 503")
  assert.equal(outcome.tail, advance("0000000000000000_0000000000000000", log.length))
  session.close()
  proxy.close()
})

test("a control.cancel appended over HTTP aborts the model and ends the reply stopped, acked at the exact cut", async () => {
  const session = await openSession("cancel-1", { baseUrl: url })
  await post("cancel-1", ...userMessage("u1", "talk"))
  const { mock, seen } = model(words(300), { delayMs: 10 })
  const { id, done } = streamTextIntoSession({ session, parent: "u1", model: mock, prompt: "talk" })
  await until("some deltas", async () => (await events("cancel-1")).filter((e) => e.type === "message.delta").length >= 3)
  const cancelAt = await post("cancel-1", { type: "control.cancel", data: { message_id: id } })
  const outcome = await done
  assert.equal(seen.abortSignal.aborted, true, "the model's abortSignal fired")
  const log = await events("cancel-1")
  const cancel = log.findIndex((e) => e.type === "control.cancel")
  const ack = log.findIndex((e) => e.type === "control.ack")
  const end = log.findIndex((e) => e.type === "message.end" && e.id === id)
  assert.deepEqual(log[end], { type: "message.end", id, data: { stopped: true } })
  assert.equal(ack, end + 1, "the ack goes in the same append as the end")
  const lastDelta = log.findLastIndex((e) => e.type === "message.delta" && e.id === id)
  const cut = advance("0000000000000000_0000000000000000", lastDelta + 1)
  assert.deepEqual(log[ack].data, { ref: advance(cancelAt, -1), kind: "cancel", cut })
  assert.ok(lastDelta < end && log.slice(end + 1).every((e) => e.id !== id), "nothing of the reply after its end")
  assert.ok(cancel >= 0)
  assert.equal(outcome.cut, cut)
  assert.equal(outcome.stopped, true)
  assert.equal(outcome.cancelledBy.offset, advance(cancelAt, -1))
  const text = log.filter((e) => e.type === "message.delta" && e.id === id).map((e) => e.data.text).join("")
  assert.ok(text.length < words(300).join("").length, "the reply was cut short")
  await new Promise((r) => setTimeout(r, 300))
  assert.equal((await events("cancel-1")).length, log.length, "and nothing more came")
  session.close()
})

test("a cancel reaches a model that has not said anything yet (the control follower)", async () => {
  const session = await openSession("cancel-silent", { baseUrl: url })
  // A model thinking: it says nothing until its request is aborted, as a provider's fetch is.
  const seen = {}
  const mock = new MockLanguageModelV2({
    doStream: async ({ abortSignal }) => {
      seen.abortSignal = abortSignal
      const stream = new ReadableStream({
        start(controller) {
          controller.enqueue({ type: "stream-start", warnings: [] })
          abortSignal.addEventListener("abort", () => controller.error(abortSignal.reason))
        },
      })
      return { stream }
    },
  })
  const started = Date.now()
  const { done } = streamTextIntoSession({ session, model: mock, prompt: "think" })
  await until("the reply's start", async () => (await events("cancel-silent")).some((e) => e.type === "message.start"))
  await post("cancel-silent", { type: "control.cancel", data: {} }) // no message_id: every reply
  const outcome = await done
  assert.ok(Date.now() - started < 2000, `stopped in ${Date.now() - started} ms`)
  assert.equal(seen.abortSignal.aborted, true)
  assert.equal(outcome.stopped, true)
  const log = await events("cancel-silent")
  assert.deepEqual(log.map((e) => e.type), ["message.start", "control.cancel", "message.end", "control.ack"])
  assert.equal(log[3].data.cut, advance("0000000000000000_0000000000000000", 1), "cut right after message.start: no output")
  session.close()
})

test("a cancel for another reply, or one from before the reply started, is not for it", async () => {
  const session = await openSession("cancel-other", { baseUrl: url })
  await post("cancel-other", { type: "control.cancel", data: {} }) // an old stop, before this reply
  const { mock, seen } = model(words(20), { delayMs: 10 })
  const { id, done } = streamTextIntoSession({ session, model: mock, prompt: "x" })
  await until("a delta", async () => (await events("cancel-other")).some((e) => e.type === "message.delta"))
  await post("cancel-other", { type: "control.cancel", data: { message_id: "m_someone_else" } })
  const outcome = await done
  assert.equal(seen.abortSignal.aborted, false)
  assert.equal(outcome.stopped, false)
  const log = await events("cancel-other")
  assert.deepEqual(log.at(-1), { type: "message.end", id })
  assert.ok(!log.some((e) => e.type === "control.ack"))
  session.close()
})

test("tool calls, tool results and errors map to tool.call, tool.result and message.end data.error", async () => {
  const session = await openSession("tools-1", { baseUrl: url })
  const calls = [
    [
      { type: "stream-start", warnings: [] },
      { type: "tool-call", toolCallId: "c1", toolName: "weather", input: JSON.stringify({ city: "Oslo" }) },
      { type: "finish", finishReason: "tool-calls", usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } },
    ],
    [
      { type: "stream-start", warnings: [] },
      { type: "text-start", id: "t" },
      { type: "text-delta", id: "t", delta: "Sunny in Oslo." },
      { type: "text-end", id: "t" },
      { type: "finish", finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } },
    ],
  ]
  let call = 0
  const mock = new MockLanguageModelV2({ doStream: async () => ({ stream: simulateReadableStream({ chunks: calls[call++] }) }) })
  const weather = tool({
    description: "the weather in a city",
    inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
    execute: async ({ city }) => ({ city, sky: "sunny" }),
  })
  const { stepCountIs } = await import("ai")
  const { id, done } = streamTextIntoSession({ session, model: mock, prompt: "weather?", tools: { weather }, stopWhen: stepCountIs(3) })
  await done
  const log = await events("tools-1")
  assert.deepEqual(
    log.filter((e) => e.type.startsWith("tool.")),
    [
      { type: "tool.call", id: "c1", parent: id, data: { tool: "weather", arguments: { city: "Oslo" } } },
      { type: "tool.result", id: "c1", parent: id, data: { result: { city: "Oslo", sky: "sunny" } } },
    ],
  )
  assert.equal(log.filter((e) => e.type === "message.delta").map((e) => e.data.text).join(""), "Sunny in Oslo.")

  // An error chunk (what toUIMessageStream sends when the model fails) ends the message with it.
  const failing = simulateReadableStream({ chunks: [{ type: "start" }, { type: "text-delta", id: "t", delta: "Half" }, { type: "error", errorText: "model overloaded" }, { type: "finish" }] })
  const outcome = await writeUIMessageStream(failing, session, { id: "m_err" })
  assert.equal(outcome.error, "model overloaded")
  assert.deepEqual((await events("tools-1")).at(-1), { type: "message.end", id: "m_err", data: { error: "model overloaded" } })
  session.close()
})

test("toUIMessages gives the chat as the session holds it, as AI SDK messages", async () => {
  const view = new MessagesView()
  const log = await events("cancel-1")
  log.forEach((event, i) => view.apply({ session: "cancel-1", offset: advance("0000000000000000_0000000000000000", i), event }))
  const messages = toUIMessages(view.messages)
  assert.deepEqual(messages.map((m) => [m.role, m.metadata.status]), [["user", "done"], ["assistant", "stopped"]])
  assert.equal(messages[0].parts[0].text, "talk")
})

test("a webhook wake is verified, answered at once, replied to in the session and acked past the reply; chats do not wait for each other", async () => {
  const answered = []
  const work = []
  const wakes = []
  const { mock, seen } = model(words(20), { delayMs: 5 })
  const slow = model(words(40), { delayMs: 20 }).mock
  const route = http.createServer(async (req, res) => {
    const chunks = []
    for await (const chunk of req) chunks.push(chunk)
    wakes.push(JSON.parse(Buffer.concat(chunks).toString() || "{}").subscription_id)
    const request = new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers: req.headers, body: Buffer.concat(chunks) })
    const response = await handleWake(request, {
      baseUrl: url,
      answer: ({ session, message, messages }) => {
        const turn = { id: message.id, session: session.name, messages, startedAt: Date.now() }
        answered.push(turn)
        const reply = streamTextIntoSession({ session, parent: message.id, model: session.name.startsWith("hook-slow") ? slow : mock, messages })
        reply.done.then(() => (turn.endedAt = Date.now()))
        return reply
      },
      waitUntil: (promise) => work.push(promise),
    })
    res.writeHead(response.status, { "content-type": "application/json" }).end(await response.text())
  })
  await new Promise((resolve) => route.listen(0, "127.0.0.1", resolve))
  const subscription = `${url}/v1/stream/__ds/subscriptions/hook-test`
  const made = await fetch(subscription, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "webhook", pattern: "hook-*", lease_scope: "stream", webhook: { url: `http://127.0.0.1:${route.address().port}/` } }),
  })
  assert.equal(made.status, 201)
  try {
    const create = await fetch(`${url}/v1/stream/hook-1`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(userMessage("u1", "hello hook")) })
    assert.equal(create.status, 201)
    const log = await until("the reply's end", async () => {
      const log = await events("hook-1")
      return log.some((e) => e.type === "message.end" && e.role !== "user") && log
    })
    assert.deepEqual(answered.map((a) => a.id), ["u1"])
    assert.deepEqual(answered[0].messages, [{ role: "user", content: "hello hook" }])
    assert.deepEqual(seen.prompt.at(-1).content, [{ type: "text", text: "hello hook" }], "the model got the chat")
    const reply = log.find((e) => e.type === "message.start" && e.role === "assistant")
    assert.equal(reply.parent, "u1")
    await Promise.all(work)
    const tail = advance("0000000000000000_0000000000000000", log.length)
    // With lease_scope "stream" the session's wakes come from a subscription of its own.
    assert.match(wakes[0], /^hook-test:[0-9a-f]{16}$/)
    await until("the ack past the reply", async () => {
      const view = await (await fetch(`${url}/v1/stream/__ds/subscriptions/${wakes[0]}`)).json()
      return view.streams.find((s) => s.path === "hook-1")?.acked_offset === tail
    })
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(answered.length, 1, "its own reply did not wake it to answer again")

    // Two chats at once: each session has its own lease, so neither waits for the other.
    const open = (name) => fetch(`${url}/v1/stream/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(userMessage("u1", name)) })
    await Promise.all([open("hook-slow-1"), open("hook-slow-2")])
    const replied = (name) =>
      until(`${name}'s reply`, async () => (await events(name)).some((e) => e.type === "message.end" && e.role !== "user"))
    await Promise.all([replied("hook-slow-1"), replied("hook-slow-2")])
    await Promise.all(work) // each wake's work ends after its reply's `done`
    const [one, two] = answered.slice(1).sort((x, y) => x.startedAt - y.startedAt)
    assert.deepEqual([one.session, two.session].sort(), ["hook-slow-1", "hook-slow-2"])
    assert.ok(two.startedAt < one.endedAt, "the second chat's reply started while the first was still streaming")

    // A forged signature is refused.
    const forged = await fetch(`http://127.0.0.1:${route.address().port}/`, {
      method: "POST",
      headers: { "content-type": "application/json", "webhook-signature": `t=${Math.floor(Date.now() / 1000)},kid=nope,ed25519=AAAA` },
      body: "{}",
    })
    assert.equal(forged.status, 401)
  } finally {
    await fetch(subscription, { method: "DELETE" })
    route.close()
  }
})
