// The demo chat end to end: Debian's Chromium driven by playwright-core against a real
// `agentwire dev` and real demo agents.
import assert from "node:assert/strict"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { after, before, test } from "node:test"
import { chromium } from "playwright-core"

const root = new URL("../../../", import.meta.url).pathname
const bin = process.env.AGENTWIRE_BIN ?? join(root, "target/debug/agentwire")
const artifacts = join(root, "artifacts")
const children = []
let dataDir, url, browser, viewer, writer

/** Starts a child and resolves with it once a stdout line matches `ready`. */
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

function token(...args) {
  return execFileSync(bin, ["token", "--data-dir", dataDir, ...args]).toString().trim()
}

async function agent(session, { rate = 25, tokens = 150 } = {}) {
  await start(
    ["demo-agent", "--session", session, "--url", url, "--token", writer, "--rate", String(rate), "--tokens", String(tokens)],
    /answering/,
  )
}

async function tab(session, context) {
  context ??= await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await context.newPage()
  await page.goto(`${url}/?session=${session}&token=${viewer}`)
  await page.waitForSelector('[data-testid="conn-state"]:text-is("open")')
  return page
}

const reply = '[data-testid="message"][data-role="assistant"]'

async function replyText(page) {
  return page.$eval(`${reply} [data-testid="message-text"]`, (el) => el.textContent)
}

async function replyStatus(page) {
  return page.$eval(reply, (el) => el.dataset.status)
}

/** Waits until the tab's reply has at least `chars` characters. */
async function replyLonger(page, chars) {
  await page.waitForFunction(
    ([selector, chars]) => (document.querySelector(`${selector} [data-testid="message-text"]`)?.textContent ?? "").length >= chars,
    [reply, chars],
  )
}

async function replyEnded(page) {
  await page.waitForSelector(`${reply}:not([data-status="streaming"])`, { timeout: 30_000 })
}

async function send(page, text) {
  await page.fill('[data-testid="input"]', text)
  await page.press('[data-testid="input"]', "Enter")
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-browser-"))
  const server = await start(
    ["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--web-dir", join(root, "clients/demo/dist"), "--no-demo-agent"],
    /^demo chat:/,
  )
  url = server.seen[0].replace("agentwire dev listening on ", "")
  viewer = token("--session", "*", "--role", "controller", "--user", "tester")
  writer = token("--session", "*", "--role", "writer", "--user", "demo-agent")
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  })
  mkdirSync(artifacts, { recursive: true })
})

after(async () => {
  await browser?.close()
  for (const child of children) child.kill("SIGKILL")
  rmSync(dataDir, { recursive: true, force: true })
})

test("two tabs on one session show the same streamed reply", async () => {
  await agent("two-tabs")
  const a = await tab("two-tabs")
  const b = await tab("two-tabs")
  await send(a, "Hello from tab A")
  await replyLonger(b, 40)
  await a.screenshot({ path: join(artifacts, "demo-mid-reply.png") })
  assert.equal(await replyStatus(b), "streaming", "tab B follows the reply live")
  await Promise.all([replyEnded(a), replyEnded(b)])
  const [textA, textB] = [await replyText(a), await replyText(b)]
  assert.ok(textA.startsWith("You said: “Hello from tab A”."), textA)
  assert.equal(textB, textA)
  assert.equal(await b.$eval('[data-testid="message"][data-role="user"] [data-testid="message-text"]', (el) => el.textContent), "Hello from tab A")
  const agents = await b.$$eval('[data-testid="agent"] .path', (els) => els.map((el) => el.textContent))
  assert.deepEqual(agents, ["demo", "demo/research"], "the sub-agents view shows the agent tree")
})

test("a tab that goes offline mid-reply ends with the same transcript", async () => {
  await agent("offline", { rate: 25, tokens: 160 })
  const a = await tab("offline")
  const b = await tab("offline")
  await send(a, "Keep talking")
  await replyLonger(a, 40)
  await a.context().setOffline(true)
  const states = new Set()
  for (let i = 0; i < 30; i++) {
    states.add(await a.textContent('[data-testid="conn-state"]'))
    await a.waitForTimeout(100)
  }
  const during = await replyText(a)
  assert.ok(states.has("offline"), `the tab noticed it was offline: ${[...states]}`)
  await a.context().setOffline(false)
  await a.waitForSelector('[data-testid="conn-state"]:text-is("open")')
  await Promise.all([replyEnded(a), replyEnded(b)])
  const [textA, textB] = [await replyText(a), await replyText(b)]
  assert.ok(textA.length > during.length, "the reply kept coming after the network came back")
  assert.equal(textA, textB, "no text duplicated or missing")
  const transcript = async (page) => page.$$eval('[data-testid="message-text"]', (els) => els.map((el) => el.textContent))
  assert.deepEqual(await transcript(a), await transcript(b))
})

test("a tab reloaded mid-reply shows the reply so far and continues live", async () => {
  await agent("reload", { rate: 25, tokens: 160 })
  const a = await tab("reload")
  const b = await tab("reload")
  await send(a, "Survive a reload")
  await replyLonger(a, 60)
  const before = await replyText(a)
  await a.reload()
  await a.waitForSelector(reply)
  const afterReload = await replyText(a)
  assert.ok(afterReload.length >= Math.min(before.length, 30), `the reply so far is there at once (${afterReload.length} chars)`)
  await a.waitForSelector('[data-testid="conn-state"]:text-is("open")')
  assert.equal(await replyStatus(a), "streaming", "and it continues live")
  await Promise.all([replyEnded(a), replyEnded(b)])
  const final = await replyText(a)
  assert.ok(final.startsWith(before), "nothing before the reload was lost")
  assert.equal(final, await replyText(b))
})

test("stop in one tab stops the agent for every tab at the same point", async () => {
  await agent("stop", { rate: 25, tokens: 400 })
  const a = await tab("stop")
  const b = await tab("stop")
  await send(a, "Tell me a long story")
  await replyLonger(b, 40)
  await b.click('[data-testid="stop"]')
  await Promise.all([a.waitForSelector('[data-testid="stopped"]'), b.waitForSelector('[data-testid="stopped"]')])
  const [textA, textB] = [await replyText(a), await replyText(b)]
  assert.equal(textA, textB, "both tabs cut at the same point")
  assert.ok(textA.length < 400 * 4, "the reply was cut short")
  await a.waitForTimeout(1500)
  assert.equal(await replyText(a), textA, "the agent emitted nothing more")

  const events = await (await fetch(`${url}/v1/stream/stop?offset=-1`, { headers: { authorization: `Bearer ${viewer}` } })).json()
  const ack = events.findIndex((e) => e.type === "control.ack")
  assert.ok(ack > 0, "the agent acknowledged the cancel")
  const replyId = events.find((e) => e.type === "message.start" && e.role === "assistant").id
  assert.ok(events.slice(ack).every((e) => e.id !== replyId), "no event of the reply after the ack")
})

test("a pool worker killed mid-reply: the tab marks the reply lost and shows another worker's answer", async () => {
  const worker = (name, rate, tokens) =>
    start(
      ["demo-agent", "--pattern", "lost-*", "--pool", "lost-pool", "--lease-ttl-ms", "1500", "--worker-name", name,
        "--url", url, "--token", writer, "--rate", String(rate), "--tokens", String(tokens)],
      /serving/,
    )
  const slow = await worker("slow", 20, 400)
  // Pool workers serve sessions, they do not make them: the app does.
  const made = await fetch(`${url}/v1/stream/lost-1`, {
    method: "PUT",
    headers: { authorization: `Bearer ${writer}`, "content-type": "application/json" },
  })
  assert.equal(made.status, 201)
  const page = await tab("lost-1")
  await send(page, "Are you there?")
  await replyLonger(page, 30)
  slow.child.kill("SIGKILL")
  await worker("rescuer", 200, 20)
  await page.waitForSelector('[data-testid="lost"]', { timeout: 10_000 })
  await page.waitForFunction(
    (selector) => [...document.querySelectorAll(selector)].some((el) => el.dataset.status === "done"),
    reply,
    { timeout: 20_000 },
  )
  const statuses = await page.$$eval(reply, (els) => els.map((el) => el.dataset.status))
  assert.deepEqual(statuses, ["lost", "done"], "the lost reply, then one answer")
  await page.screenshot({ path: join(artifacts, "demo-agent-lost.png") })
})

