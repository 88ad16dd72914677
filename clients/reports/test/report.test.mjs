// An eval run's report page in Debian's Chromium (playwright-core): a real `agentwire dev`,
// the demo agent serving `eval-*` through dispatch, a dataset run twice (the second time
// with the agent answering a known subset worse), and the second run's report read on a
// tablet and with the keyboard alone.
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
let dataDir, url, admin, browser
const runs = []
const fruits = ["apples", "pears", "plums", "figs", "dates", "limes", "kiwis", "mangos"]
const tricky = fruits.map((_, i) => `q${i}`).filter((_, i) => i % 3 === 1)

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

async function call(method, path, body, type = "application/json") {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { "content-type": type }) },
    body,
  })
  const text = await response.text()
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`)
  return JSON.parse(text)
}

async function evalRun(agentArgs) {
  const agent = await start(
    ["demo-agent", "--url", url, "--pattern", "eval-*", "--pool", "evals", "--tokens", "30", "--rate", "2000", ...agentArgs],
    /serving eval-\*/,
    { AGENTWIRE_TOKEN: admin },
  )
  const created = await call("POST", "/v1/evals/runs", JSON.stringify({ dataset: "fruit", pattern: "eval-*", timeout_ms: 30000 }))
  const id = created.run.spec.id
  const deadline = Date.now() + 60_000
  for (;;) {
    const { run } = await call("GET", `/v1/evals/runs/${id}`)
    if (run.status === "finished") break
    assert.notEqual(run.status, "failed", run.error)
    assert.ok(Date.now() < deadline, "the run did not finish")
    await new Promise((r) => setTimeout(r, 200))
  }
  agent.child.kill("SIGKILL")
  runs.push(id)
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-report-"))
  const server = await start(["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--no-demo-agent"], /^agentwire dev listening on /)
  url = server.seen[0].replace("agentwire dev listening on ", "")
  admin = execFileSync(bin, ["token", "--data-dir", dataDir, "--session", "*", "--role", "admin"]).toString().trim()
  const lines = fruits
    .map((fruit, i) => JSON.stringify({ id: `q${i}`, input: `Tell me about ${fruit}${tricky.includes(`q${i}`) ? " (tricky)" : ""}`, expected: { facts: [fruit] } }))
    .join("\n")
  await call("PUT", "/v1/evals/datasets/fruit", lines, "application/jsonl")
  await evalRun([])
  await evalRun(["--worse-on", "tricky"])
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

test("the report shows the regressions against the previous run, with plots, on a tablet and by keyboard", async () => {
  const context = await browser.newContext({
    viewport: { width: 768, height: 1024 },
    hasTouch: true,
    isMobile: true,
    extraHTTPHeaders: { authorization: `Bearer ${admin}` },
  })
  const page = await context.newPage()
  const errors = []
  page.on("pageerror", (e) => errors.push(e.message))
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()))
  const response = await page.goto(`${url}/v1/evals/runs/${runs[1]}/report`)
  assert.equal(response.status(), 200)
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/)

  assert.equal(await page.locator("h1").textContent(), `Eval run ${runs[1]}`)
  assert.match(await page.locator("p.meta").textContent(), new RegExp(`previous finished run of this dataset, ${runs[0]}`))
  const worse = page.locator("h2#worse")
  assert.equal(await worse.textContent(), `Items that got worse (${tricky.length})`)
  const regressed = await page.locator('[aria-label="Items that got worse"] tbody th').allTextContents()
  assert.deepEqual(regressed.sort(), [...tricky].sort())

  // Two plots, each an image with a name a screen reader reads, drawn inside the page.
  const plots = page.locator('svg[role="img"]')
  assert.equal(await plots.count(), 2)
  assert.match(await plots.first().getAttribute("aria-label"), /reference\.facts/)
  for (const i of [0, 1]) {
    const box = await plots.nth(i).boundingBox()
    assert.ok(box.width > 300 && box.x + box.width <= 768 + 1, `plot ${i} fits: ${JSON.stringify(box)}`)
  }
  // Nothing but the tables' own scrolling areas is wider than a tablet.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth))

  // The keyboard reaches every table's scrolling region, named, in order, and scrolls it.
  const regions = await page.locator('.scroll[role="region"]').evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")))
  const reached = []
  for (let i = 0; i < regions.length; i++) {
    await page.keyboard.press("Tab")
    reached.push(await page.evaluate(() => document.activeElement?.getAttribute("aria-label")))
  }
  assert.deepEqual(reached, regions)
  const items = page.locator('[aria-label="Every item"]')
  await items.focus()
  // On a tablet the items table (ids, outcome, measures, session, trace) is wider than the page.
  assert.ok(await items.evaluate((e) => e.scrollWidth > e.clientWidth), "the items table scrolls")
  await page.keyboard.press("ArrowRight")
  await page.waitForFunction(() => document.querySelector('[aria-label="Every item"]').scrollLeft > 0)
  await page.screenshot({ path: join(artifacts, "eval-report-tablet.png"), fullPage: true })
  assert.deepEqual(errors, [])
  await context.close()
})
