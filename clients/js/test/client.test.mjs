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

test("agent.lost marks the reply its worker was writing, and only a reply still streaming", () => {
  const view = new MessagesView()
  const apply = (n, event) => view.apply({ session: "s", offset: offsetAt(n), event })
  apply(0, { type: "message.start", id: "a", role: "assistant" })
  apply(1, { type: "message.delta", id: "a", data: { text: "Half a" } })
  apply(2, { type: "message.start", id: "b", role: "assistant" })
  apply(3, { type: "message.end", id: "b" })
  const lost = { worker: "w1", subscription: "agents:00", generation: 2 }
  assert.equal(apply(4, { type: "agent.lost", id: "a", data: lost }).status, "lost")
  assert.equal(apply(5, { type: "agent.lost", id: "b", data: lost }).status, "done")
  assert.equal(apply(6, { type: "agent.lost", data: lost }), undefined)
  assert.deepEqual(view.messages.map((m) => m.status), ["lost", "done"])
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

/** An agentwire-shaped token expiring at `exp` (Unix seconds); the fake server does not check MACs. */
const awToken = (exp, n = 0) => `aw1.${Buffer.from(JSON.stringify({ exp, n })).toString("base64url")}.mac`
const subscribeOffsets = (server) => server.received.filter((r) => r.action === "subscribe").map((r) => r.offset)
/** A reconnect backoff no test waits out: a reconnect inside a test's wait was immediate. */
const NO_BACKOFF = { backoff: { minMs: 2_000_000_000, maxMs: 2_000_000_000 } }

test("close 4001 asks the token provider again and reconnects at once, resuming from the last offset", async () => {
  const server = new FakeServer()
  let calls = 0
  const c = client(server, { ...NO_BACKOFF, token: async () => `t${++calls}` })
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  await until(() => c.state === "open")
  server.append("s", ev(0), ev(1))
  await until(() => seen.length === 2)
  server.closeAll(4001, "token expired")
  server.append("s", ev(2)) // while nobody is connected
  await until(() => seen.length === 3, 1000)
  assert.deepEqual(seen, ["0", "1", "2"])
  assert.equal(calls, 2, "a fresh token for the new connection")
  assert.deepEqual(server.tokens, ["t1", "t2"])
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(2)])
  c.close()
})

test("a token_expired frame, or an old server's unauthorized 'expired', renews the token (and resends the refused request)", async () => {
  const server = new FakeServer()
  let calls = 0
  const c = client(server, { ...NO_BACKOFF, token: () => `t${++calls}` })
  c.subscribe("s", () => {})
  await until(() => c.state === "open")
  server.pushAll({ type: "error", code: "token_expired", message: "token expired at 5 (Unix seconds)" })
  await until(() => server.tokens.length === 2 && c.state === "open", 1000)
  server.refuse = { code: "unauthorized", message: "token expired at 5 (Unix seconds)" }
  const ack = await c.send("s", "hi") // refused (so not applied), then sent again on a fresh token
  assert.equal(ack.offset, offsetAt(0))
  assert.deepEqual(server.tokens, ["t1", "t2", "t3"])
  assert.equal(server.log("s").length, 3, "the message went in once")
  c.close()
})

test("a plain token that expires stops in state expired, with an error, until setToken", async () => {
  const server = new FakeServer()
  const c = client(server, { backoff: { minMs: 1, maxMs: 2 } })
  const errors = []
  c.onError((e) => errors.push(e.code))
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  await until(() => c.state === "open")
  server.append("s", ev(0))
  await until(() => seen.length === 1)
  server.pushAll({ type: "error", code: "token_expired", message: "token expired at 5 (Unix seconds)" })
  server.closeAll(4001, "token expired")
  await until(() => c.state === "expired")
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(server.connections, 1, "no reconnect loop on a token that cannot be renewed")
  assert.deepEqual(errors, ["token_expired"])
  await assert.rejects(c.send("s", "x"), (e) => e instanceof AgentwireError && e.code === "token_expired")
  server.append("s", ev(1))
  c.setToken("t2")
  await until(() => seen.length === 2)
  assert.deepEqual(server.tokens, ["t", "t2"])
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(1)], "resumes from the last offset")
  c.close()

  // A plain token already past its exp never connects (its upgrade would only be refused).
  const stale = client(server, { token: awToken(Math.floor(Date.now() / 1000) - 10) })
  stale.subscribe("s", () => {})
  await until(() => stale.state === "expired")
  assert.equal(server.connections, 2)
  stale.close()
})

test("a provider's token is renewed shortly before its exp", async () => {
  const server = new FakeServer()
  let calls = 0
  const c = client(server, { token: () => awToken(Math.floor(Date.now() / 1000) + 2, ++calls) })
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  server.append("s", ev(0))
  await until(() => seen.length === 1)
  await until(() => server.tokens.length === 2 && c.state === "open", 3000)
  assert.equal(calls, 2)
  assert.notEqual(server.tokens[0], server.tokens[1])
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(1)])
  c.close()
})

test("close 4002 or a behind frame reconnects at once and resumes from the last offset", async () => {
  const server = new FakeServer()
  const c = client(server, NO_BACKOFF)
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.data.text))
  await until(() => c.state === "open")
  server.append("s", ev(0))
  await until(() => seen.length === 1)
  server.closeAll(4002, "behind")
  server.append("s", ev(1), ev(2))
  await until(() => seen.length === 3, 1000)
  assert.deepEqual(seen, ["0", "1", "2"])
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(1)])
  assert.deepEqual(server.tokens, ["t", "t"], "the same plain token")
  // On AWS: a `behind` frame, then the connection just goes (no close code).
  await until(() => c.state === "open")
  server.pushAll({ type: "error", code: "behind", message: "frames could not be delivered fast enough" })
  server.dropAll()
  server.append("s", ev(3))
  await until(() => seen.length === 4, 1000)
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(1), offsetAt(3)])
  c.close()
})

test("a pong whose tail stays beyond the last event seen resubscribes from the last offset", async () => {
  const server = new FakeServer()
  server.pongTails = true
  const c = client(server, { heartbeatMs: 50 })
  const seen = []
  c.subscribe("s", ({ event }) => seen.push(event.type))
  await until(() => c.state === "open")
  server.dropPushes.add(offsetAt(1))
  server.append("s", { type: "message.delta", id: "m", data: { text: "x" } })
  server.append("s", { type: "message.end", id: "m" }) // its push is lost: nothing follows it
  await until(() => seen.length === 2, 1000)
  assert.deepEqual(seen, ["message.delta", "message.end"])
  assert.deepEqual(subscribeOffsets(server), ["-1", offsetAt(1)])
  assert.equal(server.connections, 1, "resubscribed on the same socket, not reconnected")
  await new Promise((r) => setTimeout(r, 200)) // several caught-up pongs
  assert.equal(subscribeOffsets(server).length, 2, "no resubscribe once caught up")
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
