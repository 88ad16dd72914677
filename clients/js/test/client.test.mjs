import assert from "node:assert/strict"
import { test } from "node:test"
import { readUIMessageStream } from "ai"

import {
  advance,
  AgentwireChatTransport,
  AgentwireClient,
  AgentwireError,
  MessagesView,
  Ordering,
  position,
  START,
} from "../dist/agentwire.js"
import { FakeServer, offsetAt, until } from "./fake-server.mjs"

const ev = (n) => ({ type: "message.delta", id: "m", data: { text: String(n) } })

function client(server, options = {}) {
  return new AgentwireClient({
    url: "http://agentwire.test",
    token: "t",
    WebSocket: server.WebSocket,
    fetch: server.fetch,
    storage: null,
    backoff: { minMs: 1, maxMs: 5 },
    ...options,
  })
}

test("offsets advance and compare in stream order", () => {
  assert.equal(START, "0000000000000000_0000000000000000")
  assert.equal(advance(START, 42), "0000000000000000_0000000000000042")
  const big = advance("0000000000000000_9999999999999999")
  assert.equal(big, "0000000000000001_0000000000000000")
  assert.equal(position(big), 10n ** 16n)
  assert.ok("0000000000000000_9999999999999999" < big)
})

test("ordering drops duplicates and reports gaps", () => {
  const order = new Ordering(offsetAt(0))
  const item = (n) => ({ offset: offsetAt(n), event: ev(n) })
  assert.deepEqual(order.absorb([item(0), item(1)]).events.map((e) => e.event.data.text), ["0", "1"])
  assert.deepEqual(order.absorb([item(1)]).events, [], "a repeat is dropped")
  const gapped = order.absorb([item(3), item(4)])
  assert.deepEqual(gapped.events, [])
  assert.deepEqual(gapped.gap, { from: offsetAt(2), to: offsetAt(3) })
  const filled = order.fill([item(2), item(3)])
  assert.deepEqual(filled.events.map((e) => e.event.data.text), ["2", "3", "4"], "held events follow the fill")
  assert.equal(order.next, offsetAt(5))
})

test("messages assemble from start, deltas and end, by agent, and survive a snapshot", () => {
  const view = new MessagesView()
  const apply = (n, event) => view.apply({ session: "s", offset: offsetAt(n), event })
  apply(0, { type: "message.start", id: "u", role: "user" })
  apply(1, { type: "message.delta", id: "u", data: { text: "hi" } })
  apply(2, { type: "message.end", id: "u", role: "user" })
  apply(3, { type: "message.start", id: "a", role: "assistant", agent: "planner" })
  apply(4, { type: "message.start", id: "b", role: "assistant", agent: "planner/search-1", parent: "a" })
  apply(5, { type: "message.delta", id: "a", data: { text: "Hel" } })
  apply(6, { type: "message.delta", id: "b", data: { text: "found" } })
  apply(7, { type: "message.delta", id: "a", data: { text: "lo" } })
  apply(8, { type: "message.end", id: "a", data: { stopped: true } })
  apply(9, { type: "presence.join", data: { user: "x" } })
  const [user, a, b] = view.messages
  assert.deepEqual([user.text, user.status, user.role], ["hi", "done", "user"])
  assert.deepEqual([a.text, a.status, a.agent], ["Hello", "stopped", "planner"])
  assert.deepEqual([b.text, b.status, b.parent], ["found", "streaming", "a"])
  assert.deepEqual([...view.byAgent().keys()], ["planner", "planner/search-1"])
  const restored = MessagesView.restore(JSON.parse(JSON.stringify(view.snapshot())))
  assert.deepEqual(restored.messages, view.messages)
})

test("a dropped socket resumes from the last offset: nothing lost, nothing repeated", async () => {
  const server = new FakeServer()
  const c = client(server)
  const seen = []
  c.subscribe("s", ({ offset, event }) => seen.push([offset, event.data.text]))
  await until(() => c.state === "open")
  server.append("s", ev(0), ev(1), ev(2))
  await until(() => seen.length === 3)
  server.dropAll()
  server.append("s", ev(3), ev(4)) // while nobody is connected
  await until(() => seen.length === 5)
  server.append("s", ev(5))
  await until(() => seen.length === 6)
  assert.deepEqual(seen.map(([, t]) => t), ["0", "1", "2", "3", "4", "5"])
  assert.deepEqual(seen.map(([o]) => o), [0, 1, 2, 3, 4, 5].map(offsetAt))
  const resumed = server.received.filter((r) => r.action === "subscribe").map((r) => r.offset)
  assert.deepEqual(resumed, ["-1", offsetAt(3)], "the second subscribe resumes after the last event")
  assert.equal(server.connections, 2)
  c.close()
})

test("a missed push is filled over HTTP before later events are handed out", async () => {
  const server = new FakeServer()
  const c = client(server)
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  await until(() => c.state === "open")
  server.dropPushes.add(offsetAt(1))
  server.append("s", ev(0))
  server.append("s", ev(1)) // lost on the way
  server.append("s", ev(2))
  await until(() => seen.length === 3)
  assert.deepEqual(seen, ["0", "1", "2"])
  c.close()
})

test("resume offsets survive a page reload through storage", async () => {
  const server = new FakeServer()
  const memory = new Map()
  const storage = { getItem: (k) => memory.get(k) ?? null, setItem: (k, v) => memory.set(k, v), removeItem: (k) => memory.delete(k) }
  server.append("s", ev(0), ev(1))
  const first = client(server, { storage })
  const seen = []
  first.subscribe("s", ({ event }) => seen.push(event.data.text), "stored")
  await until(() => seen.length === 2)
  first.close()
  server.append("s", ev(2))
  const second = client(server, { storage })
  const after = []
  second.subscribe("s", ({ event }) => after.push(event.data.text), "stored")
  await until(() => after.length === 1)
  assert.deepEqual(after, ["2"], "the reloaded page continues where it was")
  second.close()
})

test("the connection is renewed before the gateway's age limit", async () => {
  const server = new FakeServer()
  const c = client(server, { maxConnectionAgeMs: 30 })
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  await until(() => server.connections >= 3)
  server.append("s", ev(0))
  await until(() => seen.length === 1)
  assert.deepEqual(seen, ["0"])
  c.close()
})

test("requests resolve with the server's ack or reject with its error", async () => {
  const server = new FakeServer()
  const c = client(server)
  const ack = await c.send("s", "hello")
  assert.equal(ack.offset, offsetAt(0))
  assert.equal(ack.message_id, "u_0")
  const cancel = await c.cancel("s", "m_1")
  assert.equal(cancel.offset, offsetAt(3))
  assert.deepEqual(server.log("s")[3], { type: "control.cancel", data: { message_id: "m_1" } })
  await assert.rejects(c.control("s", "explode"), (e) => e instanceof AgentwireError && e.code === "bad_request")
  c.close()
})

/** A fake agent: answers each user message with a streamed reply. */
function answerWith(server, words, { stopAfter } = {}) {
  server.onSend = (session, userId) => {
    const id = `r_${userId}`
    setTimeout(async () => {
      server.append(session, { type: "message.start", id, role: "assistant", parent: userId })
      for (const [i, word] of words.entries()) {
        if (stopAfter !== undefined && i === stopAfter) {
          await until(() => server.log(session).some((e) => e.type === "control.cancel"))
          server.append(session, { type: "message.end", id, data: { stopped: true } })
          return
        }
        server.append(session, { type: "message.delta", id, data: { text: word } })
        await new Promise((r) => setTimeout(r, 2))
      }
      server.append(session, { type: "message.end", id })
    }, 5)
  }
}

test("the AI SDK transport streams a reply as UI message chunks", async () => {
  const server = new FakeServer()
  answerWith(server, ["Hello", ", ", "world"])
  const c = client(server)
  const transport = new AgentwireChatTransport({ client: c, session: (chatId) => `chat-${chatId}` })
  const stream = await transport.sendMessages({
    trigger: "submit-message",
    chatId: "1",
    messageId: undefined,
    messages: [{ id: "x", role: "user", parts: [{ type: "text", text: "Say hello" }] }],
    abortSignal: undefined,
  })
  let last
  for await (const message of readUIMessageStream({ stream })) last = message
  assert.equal(last.role, "assistant")
  assert.deepEqual(last.parts.filter((p) => p.type === "text").map((p) => p.text), ["Hello, world"])
  assert.equal(server.log("chat-1")[1].data.text, "Say hello", "the user's message went into the session")
  c.close()
})

test("stop() on the transport sends a real cancel", async () => {
  const server = new FakeServer()
  answerWith(server, ["a", "b", "c", "d"], { stopAfter: 2 })
  const c = client(server)
  const transport = new AgentwireChatTransport({ client: c })
  const abort = new AbortController()
  const stream = await transport.sendMessages({
    trigger: "submit-message",
    chatId: "c",
    messageId: undefined,
    messages: [{ id: "x", role: "user", parts: [{ type: "text", text: "go" }] }],
    abortSignal: abort.signal,
  })
  const reader = stream.getReader()
  const chunks = []
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    chunks.push(value)
    if (chunks.filter((c) => c.type === "text-delta").length === 2) abort.abort()
  }
  assert.equal(chunks.at(-1).type, "abort")
  await until(() => server.log("c").some((e) => e.type === "control.cancel"))
  const cancel = server.log("c").find((e) => e.type === "control.cancel")
  assert.equal(cancel.data.message_id, "r_u_0", "the cancel names the reply")
  c.close()
})

test("after a reload the transport resumes a reply that is still streaming", async () => {
  const server = new FakeServer()
  server.append(
    "c",
    { type: "message.start", id: "u", role: "user" },
    { type: "message.end", id: "u", role: "user" },
    { type: "message.start", id: "r", role: "assistant", parent: "u" },
    { type: "message.delta", id: "r", data: { text: "so far " } },
  )
  const c = client(server)
  const transport = new AgentwireChatTransport({ client: c })
  const stream = await transport.reconnectToStream({ chatId: "c" })
  assert.ok(stream, "a reply is in flight")
  setTimeout(() => server.append("c", { type: "message.delta", id: "r", data: { text: "and more" } }, { type: "message.end", id: "r" }), 10)
  let last
  for await (const message of readUIMessageStream({ stream })) last = message
  assert.deepEqual(last.parts.filter((p) => p.type === "text").map((p) => p.text), ["so far and more"])
  server.append("d", { type: "message.start", id: "r", role: "assistant" }, { type: "message.end", id: "r" })
  assert.equal(await transport.reconnectToStream({ chatId: "d" }), null, "nothing to resume once the reply ended")
  c.close()
})
