// The nightly report pages in Debian's Chromium (playwright-core), built from real data: a
// real `agentwire dev` ingests OTLP traces of four kinds of request (one kind answered from
// nothing the sources say), scores them as they arrive, two experts grade a queue, the demo
// agent answers two eval runs; then `agentwire job run clusters` clusters the night and
// writes the page, which `agentwire dev` serves at /reports behind the admin token.
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
let dataDir, url, admin, browser, server
const startedMs = Date.now() - 60_000
const day = new Date(startedMs).toISOString().slice(0, 10)

/** Four kinds of request, eight each; the answers to "warranty" invent what no source says. */
const kinds = {
  refund: (n) => [`I want a refund for order ${n}, it arrived broken`, "Refunds for broken items are paid within 5 days.", "Your refund for the broken item will be paid within 5 days."],
  flight: (n) => [`Please change my flight ${n} to next Tuesday morning`, "Flights can be changed up to 24 hours before departure.", "Flights can be changed up to 24 hours before departure, so Tuesday works."],
  invoice: (n) => [`Send me the VAT invoice for payment ${n}`, "VAT invoices are sent by email after each payment.", "VAT invoices are sent by email after each payment."],
  warranty: (n) => [`Is the warranty on blender ${n} still valid after two years`, "Store opening hours are 9 to 5 on weekdays.", "Yes, the blender warranty covers accidental damage for ten years in every country."],
}
const names = ["Ana", "Omar", "Li", "Sofia", "Raj", "Chen", "Maria", "Yusuf"]

function start(args, ready, env = {}) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn", ...env } })
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

async function dev() {
  const s = await start(["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--no-demo-agent"], /^agentwire dev listening on /)
  url = s.seen[0].replace("agentwire dev listening on ", "")
  return s
}

const token = (...args) => execFileSync(bin, ["token", "--data-dir", dataDir, ...args]).toString().trim()

async function call(method, path, body, bearer = admin, type = "application/json") {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { "content-type": type }) },
    body: body === undefined || typeof body === "string" ? body : JSON.stringify(body),
  })
  const text = await response.text()
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`)
  return JSON.parse(text)
}

async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await fn()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** One OTLP/JSON request: a retriever span and a chat span of one session. */
function otlp(i, session, [question, passage, answer]) {
  const text = (key, value) => ({ key, value: { stringValue: value } })
  const messages = (role, content) => JSON.stringify([{ role, parts: [{ type: "text", content }] }])
  const traceId = (0x5100 + i).toString(16).padStart(32, "0")
  const at = (ms) => String(BigInt(startedMs + i * 1000 + ms) * 1_000_000n)
  const span = (n, name, from, to, attributes) => ({ traceId, spanId: `${(i + 1).toString(16).padStart(4, "0")}00000000000${n}`, name, startTimeUnixNano: at(from), endTimeUnixNano: at(to), attributes })
  return {
    resourceSpans: [{
      resource: { attributes: [text("service.name", "report-test-agent")] },
      scopeSpans: [{ spans: [
        span(1, "retrieve", 0, 100, [text("openinference.span.kind", "RETRIEVER"), text("gen_ai.conversation.id", session), text("input.value", question), text("retrieval.documents.0.document.content", passage)]),
        span(2, "chat gpt-4o", 200, 900, [text("gen_ai.operation.name", "chat"), text("gen_ai.conversation.id", session), text("gen_ai.input.messages", messages("user", question)), text("gen_ai.output.messages", messages("assistant", answer))]),
      ] }],
    }],
  }
}

async function evalRun(agentArgs) {
  const agent = await start(
    ["demo-agent", "--url", url, "--pattern", "eval-*", "--pool", "evals", "--tokens", "20", "--rate", "2000", ...agentArgs],
    /serving eval-\*/,
    { AGENTWIRE_TOKEN: admin },
  )
  const { run } = await call("POST", "/v1/evals/runs", { dataset: "fruit", pattern: "eval-*", timeout_ms: 30000 })
  await until("the eval run", async () => (await call("GET", `/v1/evals/runs/${run.spec.id}`)).run.status === "finished", 60_000)
  agent.child.kill("SIGKILL")
  return run.spec.id
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-site-"))
  server = await dev()
  admin = token("--session", "*", "--role", "admin", "--user", "owner")
  const ingest = token("--session", "*", "--role", "ingest")
  let i = 0
  for (const [kind, make] of Object.entries(kinds)) {
    for (let k = 0; k < 8; k++, i++) {
      const [question, passage, answer] = make(1000 + 37 * i)
      const asked = k % 2 ? `${question}. Regards, ${names[k]}` : question
      const response = await fetch(`${url}/v1/traces`, {
        method: "POST",
        headers: { authorization: `Bearer ${ingest}`, "content-type": "application/json" },
        body: JSON.stringify(otlp(i, `${kind}-${k}`, [asked, passage, answer])),
      })
      assert.equal(response.status, 200, await response.text())
    }
  }
  const records = await until("the traces to be scored", async () => {
    const { scores } = await call("GET", "/v1/scores?name=groundedness&limit=100")
    return scores?.length === i ? scores : null
  })

  // Two experts grade six traces on whether the answer is supported (they disagree once).
  const rubric = { name: "supported", version: 1, title: "Supported?", criteria: [{ key: "grounded", title: "Supported by the sources", scale: { kind: "pass_fail" }, scorers: [{ name: "groundedness", threshold: 0.5 }] }] }
  await call("PUT", "/v1/rubrics/supported/1", rubric)
  const graded = ["refund-0", "refund-1", "flight-0", "warranty-0", "warranty-1", "warranty-2"].map((s) => records.find((r) => r.session === s).trace_id)
  await call("POST", "/v1/queues", { queue: { name: "answers", title: "Answers", rubric: { name: "supported", version: 1 }, graders: ["ann", "bob"], per_item: 2 }, traces: graded })
  for (const who of ["ann", "bob"]) {
    const bearer = token("--session", "answers", "--role", "grader", "--user", who)
    for (;;) {
      const { claim } = await call("POST", "/v1/queues/answers/claim", undefined, bearer)
      if (!claim) break
      const session = records.find((r) => r.trace_id === claim.item.trace_id).session
      const value = session.startsWith("warranty") && !(who === "bob" && session === "warranty-2") ? "fail" : "pass"
      await call("POST", `/v1/queues/answers/items/${claim.item.trace_id}/grade`, { rubric: { name: "supported", version: 1 }, answers: { grounded: { value, justification: `${who} read the sources` } } }, bearer)
    }
  }

  // Two eval runs of one dataset, the second answering the tricky items worse.
  const fruits = ["apples", "pears", "plums", "figs"]
  await call("PUT", "/v1/evals/datasets/fruit", fruits.map((f, n) => JSON.stringify({ id: `q${n}`, input: `Tell me about ${f}${n % 2 ? " (tricky)" : ""}`, expected: { facts: [f] } })).join("\n"), admin, "application/jsonl")
  await evalRun([])
  await evalRun(["--worse-on", "tricky"])

  // The night: the server stops, the job runs over its data directory, the server starts again.
  server.child.kill("SIGINT")
  await new Promise((r) => server.child.once("exit", r))
  const job = execFileSync(bin, ["job", "run", "clusters", "--data-dir", dataDir, "--day", day]).toString()
  assert.match(job, new RegExp(`clustered ${day} of tenant "local"`), job)
  server = await dev()

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
  if (dataDir) rmSync(dataDir, { recursive: true, force: true })
})

test("the reports need the admin token", async () => {
  assert.equal((await fetch(`${url}/reports`)).status, 401)
  const grader = token("--session", "answers", "--role", "grader", "--user", "ann")
  assert.equal((await fetch(`${url}/reports/${day}?token=${grader}`)).status, 403)
  assert.equal((await fetch(`${url}/reports/not-a-day?token=${admin}`)).status, 400)
})

test("every section of the night's report renders real figures, on a laptop and on a phone", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  const errors = []
  page.on("pageerror", (e) => errors.push(e.message))
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()))
  await page.goto(`${url}/reports?token=${admin}`)
  await page.getByRole("link", { name: day }).click()
  await page.waitForURL(new RegExp(`/reports/${day}`))
  assert.equal(await page.locator("h1").textContent(), `Agent report for ${day}`)
  const headings = await page.locator("h2").allTextContents()
  assert.deepEqual(headings, ["Scores over time", "Clusters", "Agreement", "Evals"])

  // Scores: groundedness was scored on all 32 traces and failed on the 8 invented answers.
  const ground = page.locator('[aria-label^="Scorers on"] tbody tr', { has: page.locator("th", { hasText: /^groundedness$/ }) })
  const cells = await ground.locator("td").allTextContents()
  assert.equal(cells[0], "32")
  assert.equal(cells[2], "25.0 %")
  assert.match(cells[4], /warranty-\d/, "the worst traces are the invented answers")
  assert.ok((await page.locator('figure svg[role="img"][aria-label^="Daily mean"]').count()) === 1)

  // Clusters: the four kinds of request, each new tonight, the warranty one failing.
  const rows = page.locator('[aria-label="What people asked for: clusters"] tbody tr')
  assert.ok((await rows.count()) >= 4, `${await rows.count()} clusters`)
  const labels = await rows.locator("th").allTextContents()
  // Each kind by a word of its own (the eval runs' sessions are traces of the night too).
  for (const word of ["broken", "flight", "invoice", "blender"]) assert.ok(labels.some((l) => l.includes(word)), `a cluster labelled ${word}: ${labels}`)
  assert.equal(await rows.locator(".badge", { hasText: "new" }).count(), await rows.count())
  const warranty = rows.filter({ has: page.locator("th", { hasText: "blender" }) }).first()
  assert.equal((await warranty.locator("td").allTextContents())[2], "100.0 %")
  const refunds = rows.filter({ has: page.locator("th", { hasText: "broken" }) }).first()
  assert.equal((await refunds.locator("td").allTextContents())[2], "0.0 %", "latency is a measurement, not a failure")
  const map = page.locator('section[aria-labelledby="clusters-requests"] figure svg[aria-label^="Map of "]')
  assert.equal(await map.count(), 1)
  assert.ok((await map.locator("circle").count()) >= 32)
  await page.locator("details summary").first().click()
  assert.ok((await page.locator("details[open] blockquote").count()) >= 1, "example conversations open")

  // Agreement: the two experts and the groundedness scorer, each with a figure.
  const agreement = page.locator('[aria-label="Agreement per criterion"] tbody tr')
  assert.equal(await agreement.count(), 2)
  const graders = await agreement.nth(0).locator("td, th").allTextContents()
  assert.equal(graders[2], "2 graders")
  assert.match(graders[4], /^-?\d\.\d{3}$/, `alpha ${graders[4]}`)
  assert.match((await agreement.nth(1).locator("th").textContent()), /groundedness/)

  // Evals: both runs, and the latest against the one before it.
  assert.equal(await page.locator('[aria-label="Latest eval runs"] tbody tr').count(), 2)
  const facts = page.locator('[aria-label="Comparison of the latest runs"] tbody tr', { has: page.locator("th", { hasText: "reference.facts" }) })
  const compared = await facts.locator("td").allTextContents()
  assert.equal(compared[0], "1.000")
  assert.equal(compared[4], "2", "the two tricky items got worse")

  await page.screenshot({ path: join(artifacts, "report-laptop.png"), fullPage: true })

  // A phone: nothing but the tables' own scrolling regions is wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 })
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth))
  for (const svg of await page.locator("figure svg").all()) {
    const box = await svg.boundingBox()
    assert.ok(box.x + box.width <= 391, `a plot fits: ${JSON.stringify(box)}`)
  }
  // From the top, the keyboard reaches the sections' links, follows one, and goes on to
  // every table's scrolling region.
  await page.reload()
  await page.keyboard.press("Tab")
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Scores over time")
  await page.keyboard.press("Enter")
  await page.waitForURL(/#scores$/)
  const regions = await page.locator('.scroll[role="region"]').evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")))
  const reached = new Set()
  for (let n = 0; n < 200 && reached.size < regions.length; n++) {
    await page.keyboard.press("Tab")
    const label = await page.evaluate(() => (document.activeElement?.matches(".scroll") ? document.activeElement.getAttribute("aria-label") : null))
    if (label) reached.add(label)
  }
  assert.deepEqual([...reached].sort(), [...regions].sort())
  await page.screenshot({ path: join(artifacts, "report-phone.png"), fullPage: true })
  assert.deepEqual(errors, [])
  await context.close()
})
