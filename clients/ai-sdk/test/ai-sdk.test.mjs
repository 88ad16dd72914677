// The AI SDK end to end, in Debian's Chromium (playwright-core) against a real
// `agentwire dev`: a route in this process, woken by a webhook subscription, answers with
// the AI SDK's streamText (a slow mock model) written into the session by
// `streamTextIntoSession`; a page on the AI SDK's own chat and AgentwireChatTransport,
// open in two tabs, shows the reply streaming, and stop() in one tab aborts the model.
import assert from "node:assert/strict"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import http from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { after, before, test } from "node:test"
import { simulateReadableStream } from "ai"
import { MockLanguageModelV2 } from "ai/test"
import { chromium } from "playwright-core"

import { handleWake, streamTextIntoSession } from "../../js/dist/server.js"

const root = new URL("../../../", import.meta.url).pathname
const bin = process.env.AGENTWIRE_BIN ?? join(root, "target/debug/agentwire")
const artifacts = join(root, "artifacts")
const children = []
let dataDir, url, browser, viewer, writer, route
/** What the route's model saw: one entry per streamText call. */
const calls = []

function start(args, ready) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } })
  children.push(child)
  const lines = createInterface({ input: child.stdout })
  return new Promise((resolve, reject) => {
    const seen = []
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}`)))
    lines.on("line", (line) => {
      seen.push(line)
      if (ready.test(line)) resolve({ child, seen })
    })
  })
}

const token = (...args) => execFileSync(bin, ["token", "--data-dir", dataDir, ...args]).toString().trim()

/** A slow model: 200 tokens, 30 ms apart (six seconds), that notes when it is aborted. */
function slowModel() {
  return new MockLanguageModelV2({
    doStream: async ({ abortSignal, prompt }) => {
      const call = { prompt, abortedAt: undefined }
      calls.push(call)
      abortSignal?.addEventListener("abort", () => (call.abortedAt = Date.now()))
      const tokens = Array.from({ length: 200 }, (_, i) => `word${i} `)
      return {
        stream: simulateReadableStream({
          chunkDelayInMs: 30,
          chunks: [
            { type: "stream-start", warnings: [] },
            { type: "text-start", id: "t" },
            ...tokens.map((delta) => ({ type: "text-delta", id: "t", delta })),
            { type: "text-end", id: "t" },
            { type: "finish", finishReason: "stop", usage: { inputTokens: 5, outputTokens: 200, totalTokens: 205 } },
          ],
        }),
      }
    },
  })
}

/** The Next.js-style route, served by node:http: a webhook handler that answers with streamText. */
async function startRoute() {
  const model = slowModel()
  const server = http.createServer(async (req, res) => {
    const chunks = []
    for await (const chunk of req) chunks.push(chunk)
    const request = new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers: req.headers, body: Buffer.concat(chunks) })
    const response = await handleWake(request, {
      baseUrl: url,
      token: writer,
      answer: ({ session, message, messages }) => streamTextIntoSession({ session, parent: message.id, model, messages }),
    })
    res.writeHead(response.status, { "content-type": "application/json" }).end(await response.text())
  })
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  return server
}

async function call(method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${writer}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`)
  return response
}

async function tab(session) {
  const context = await browser.newContext({ viewport: { width: 760, height: 720 } })
  const page = await context.newPage()
  page.on("pageerror", (error) => console.error("page error:", error))
  await page.goto(`${url}/?session=${session}&token=${viewer}`)
  await page.waitForSelector('[data-testid="conn-state"]:text-is("open")')
  return page
}

const reply = '[data-testid="message"][data-role="assistant"]'
const replyText = (page) => page.$eval(`${reply} [data-testid="message-text"]`, (el) => el.textContent)

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-ai-sdk-"))
  const server = await start(
    ["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--web-dir", join(root, "clients/ai-sdk/dist"), "--no-demo-agent"],
    /^demo chat:/,
  )
  url = server.seen[0].replace("agentwire dev listening on ", "")
  viewer = token("--session", "ai-*", "--role", "controller", "--user", "tester")
  writer = token("--session", "ai-*", "--role", "writer", "--user", "route")
  route = await startRoute()
  await call("PUT", "/v1/stream/__ds/subscriptions/ai-route", {
    type: "webhook",
    pattern: "ai-*",
    lease_scope: "stream",
    webhook: { url: `http://127.0.0.1:${route.address().port}/` },
  })
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  })
  mkdirSync(artifacts, { recursive: true })
})

after(async () => {
  await browser?.close()
  route?.close()
  for (const child of children) child.kill("SIGKILL")
  rmSync(dataDir, { recursive: true, force: true })
})

test("a streamText reply read in two tabs, stopped from one: the model is aborted and both tabs keep the same cut", async () => {
  const session = "ai-stop"
  await call("PUT", `/v1/stream/${session}`) // the app makes the session; the webhook links it
  const a = await tab(session)
  const b = await tab(session)
  await a.fill('[data-testid="input"]', "Tell me a long story")
  await a.click('[data-testid="send"]')

  // Both tabs stream the reply: A through sendMessages, B through the transport's resume.
  const longer = (page, chars) =>
    page.waitForFunction(
      ([selector, chars]) => (document.querySelector(`${selector} [data-testid="message-text"]`)?.textContent ?? "").length >= chars,
      [reply, chars],
      { timeout: 15_000 },
    )
  await Promise.all([longer(a, 60), longer(b, 60)])
  assert.equal(await b.$eval(reply, (el) => el.dataset.status), "streaming", "tab B follows the reply live")
  assert.equal(await b.textContent('[data-testid="chat-status"]'), "streaming", "through its own chat and the transport")
  assert.equal(calls.length, 1, "one model call for the one user message")
  assert.deepEqual(calls[0].prompt.at(-1).content, [{ type: "text", text: "Tell me a long story" }])

  const stoppedAt = Date.now()
  await a.click('[data-testid="stop"]')
  const stopped = `${reply}[data-status="stopped"]`
  await Promise.all([a.waitForSelector(stopped), b.waitForSelector(stopped)])
  assert.ok(calls[0].abortedAt >= stoppedAt, "the server's abortSignal fired")
  assert.ok(calls[0].abortedAt - stoppedAt < 2000, `within ${calls[0].abortedAt - stoppedAt} ms of stop()`)
  await Promise.all([a.waitForSelector('[data-testid="chat-status"]:text-is("ready")'), b.waitForSelector('[data-testid="chat-status"]:text-is("ready")')])

  // Both tabs hold the session's cut, which is short of the whole story.
  const events = await (await fetch(`${url}/v1/stream/${session}?offset=-1`, { headers: { authorization: `Bearer ${viewer}` } })).json()
  const replyId = events.find((e) => e.type === "message.start" && e.role === "assistant").id
  const kept = events.filter((e) => e.type === "message.delta" && e.id === replyId).map((e) => e.data.text).join("")
  await a.waitForFunction(
    ([selector, kept]) => document.querySelector(`${selector} [data-testid="message-text"]`)?.textContent === kept,
    [reply, kept],
  )
  const [textA, textB] = [await replyText(a), await replyText(b)]
  assert.equal(textA, kept, "tab A shows the session's cut")
  assert.equal(textB, kept, "tab B too")
  assert.ok(kept.length >= 60 && kept.length < 200 * 8, `cut short at ${kept.length} characters`)

  const end = events.findIndex((e) => e.type === "message.end" && e.id === replyId)
  assert.deepEqual(events[end].data, { stopped: true })
  const cancel = events.findIndex((e) => e.type === "control.cancel")
  assert.equal(events[cancel].data.message_id, replyId, "stop() cancelled this reply")
  const ack = events[end + 1]
  assert.equal(ack.type, "control.ack")
  const lastDelta = events.findLastIndex((e) => e.type === "message.delta" && e.id === replyId)
  assert.deepEqual(ack.data, { ref: offset(cancel), kind: "cancel", cut: offset(lastDelta + 1) })

  await a.waitForTimeout(500)
  assert.equal(await replyText(b), kept, "nothing more arrived")

  // One picture of both tabs side by side.
  const shots = await Promise.all([a, b].map(async (page) => (await page.screenshot()).toString("base64")))
  const board = await (await browser.newContext({ viewport: { width: 1540, height: 770 } })).newPage()
  const captions = ["tab A: pressed stop", "tab B: followed the reply"]
  await board.setContent(
    `<body style="margin:0;display:flex;gap:20px;background:#888;padding:10px;font:14px system-ui">${shots
      .map((s, i) => `<figure style="margin:0"><img src="data:image/png;base64,${s}" width="750"><figcaption style="color:#fff">${captions[i]}</figcaption></figure>`)
      .join("")}</body>`,
  )
  await board.screenshot({ path: join(artifacts, "ai-sdk-two-tabs.png") })
})

/** The offset of event `i` of a session. */
function offset(i) {
  return `0000000000000000_${String(i).padStart(16, "0")}`
}
