// The grading page end to end: Debian's Chromium driven by playwright-core against a real
// `agentwire dev` serving the page at /grade/, with traces sent over OTLP, scored by the
// built-in scorers, put in queues over the HTTP API and graded with the keyboard alone.
import assert from "node:assert/strict"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { after, before, test } from "node:test"
import { chromium } from "playwright-core"

const root = new URL("../../../", import.meta.url).pathname
const bin = process.env.AGENTWIRE_BIN ?? join(root, "target/debug/agentwire")
const artifacts = join(root, "artifacts")
const children = []
let dataDir, url, browser, admin
const traces = [] // trace ids, in the order of `conversations`

/** What the agent was asked, what it retrieved and what it answered. */
const conversations = [
  {
    question: "When did Apollo 11 land on the Moon?",
    passage: "Apollo 11 landed on the Moon on July 20, 1969, with Neil Armstrong and Buzz Aldrin aboard the lunar module Eagle.",
    answer: "Apollo 11 landed on the Moon on July 20, 1969.",
  },
  {
    question: "How tall is the Eiffel Tower?",
    passage: "The Eiffel Tower in Paris is 330 metres tall and was completed in 1889 for the World's Fair.",
    answer: "The Eiffel Tower is 330 metres tall. It was painted gold in 1925 by the sculptor Auguste Rodin.",
  },
  {
    question: "At what temperature does water boil at sea level?",
    passage: "At sea level, pure water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
    answer: "At sea level, water boils at 100 degrees Celsius.",
  },
  {
    question: "Who wrote Pride and Prejudice?",
    passage: "Pride and Prejudice is an 1813 novel of manners written by Jane Austen.",
    answer: "Pride and Prejudice was written by Charlotte Brontë and published in 1847 in Edinburgh.",
  },
  {
    question: "What is the capital of Australia?",
    passage: "Canberra is the capital city of Australia, located in the Australian Capital Territory.",
    answer: "The capital of Australia is Canberra. About twelve million people live there, most of them in the old harbour district.",
  },
]

const rubric = {
  name: "rag-answer",
  version: 1,
  title: "Is the answer right?",
  criteria: [
    {
      key: "grounded",
      title: "Supported by the sources",
      guidance: "Pass only if every claim in the answer is backed by a retrieved passage.",
      scale: { kind: "pass_fail" },
      justification_required: true,
      scorers: [{ name: "groundedness", threshold: 0.654 }],
    },
    {
      key: "helpful",
      title: "Helpfulness",
      guidance: "How well the answer serves the person who asked.",
      scale: { kind: "ordinal", anchors: ["Useless", "Poor", "Adequate", "Good", "Excellent"] },
    },
    {
      key: "tone",
      title: "Tone",
      scale: { kind: "categorical", labels: ["neutral", "friendly", "curt"] },
    },
  ],
}

/** Each grader's answers, by item: grounded, helpful (1–5), tone (a label). */
const plans = {
  ann: [
    ["pass", "5", "neutral"],
    ["fail", "2", "neutral"],
    ["pass", "4", "friendly"],
    ["fail", "1", "curt"],
    ["fail", "3", "neutral"],
  ],
  bob: [
    ["pass", "4", "neutral"],
    ["fail", "2", "friendly"],
    ["pass", "4", "friendly"],
    ["fail", "2", "curt"],
    ["pass", "2", "neutral"],
  ],
}

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

const grader = (queue, user) => token("--session", queue, "--role", "grader", "--user", user)

async function call(method, path, body, bearer = admin) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : null }
}

async function ok(method, path, body, bearer) {
  const r = await call(method, path, body, bearer)
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

/** One OTLP/JSON request: a retriever span and a chat span of session `grading-<i>`. */
function otlp(i, c) {
  const text = (key, value) => ({ key, value: { stringValue: value } })
  const messages = (role, content) => JSON.stringify([{ role, parts: [{ type: "text", content }] }])
  const traceId = (0xabc0 + i).toString(16).padStart(32, "0")
  const at = (ms) => String(BigInt(Date.now() - 60_000 + ms) * 1_000_000n)
  return {
    resourceSpans: [
      {
        resource: { attributes: [text("service.name", "grading-test-agent")] },
        scopeSpans: [
          {
            spans: [
              {
                traceId,
                spanId: `${(i + 1).toString(16).padStart(2, "0")}00000000000001`,
                name: "retrieve",
                startTimeUnixNano: at(0),
                endTimeUnixNano: at(100),
                attributes: [
                  text("openinference.span.kind", "RETRIEVER"),
                  text("gen_ai.conversation.id", `grading-${i}`),
                  text("input.value", c.question),
                  text("retrieval.documents.0.document.content", c.passage),
                ],
              },
              {
                traceId,
                spanId: `${(i + 1).toString(16).padStart(2, "0")}00000000000002`,
                name: "chat gpt-4o",
                startTimeUnixNano: at(200),
                endTimeUnixNano: at(900),
                attributes: [
                  text("gen_ai.operation.name", "chat"),
                  text("gen_ai.conversation.id", `grading-${i}`),
                  text("gen_ai.input.messages", messages("user", c.question)),
                  text("gen_ai.output.messages", messages("assistant", c.answer)),
                ],
              },
            ],
          },
        ],
      },
    ],
  }
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

async function queue(name, traceIds, graders, extra = {}) {
  const spec = { name, title: `Queue ${name}`, rubric: { name: rubric.name, version: rubric.version }, graders, per_item: graders.length, ...extra }
  const created = await ok("POST", "/v1/queues", { queue: spec, traces: traceIds })
  assert.equal(created.items, traceIds.length)
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "agentwire-grading-"))
  const server = await start(
    [
      "dev",
      "--listen",
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
      "--web-dir",
      join(root, "clients/demo/dist"),
      "--grading-dir",
      join(root, "clients/grading/dist"),
      "--no-demo-agent",
    ],
    /^agentwire dev listening on /,
  )
  url = server.seen[0].replace("agentwire dev listening on ", "")
  admin = token("--session", "*", "--role", "admin", "--user", "owner")
  const ingest = token("--session", "*", "--role", "ingest")

  for (const [i, c] of conversations.entries()) {
    const response = await fetch(`${url}/v1/traces`, {
      method: "POST",
      headers: { authorization: `Bearer ${ingest}`, "content-type": "application/json" },
      body: JSON.stringify(otlp(i, c)),
    })
    assert.equal(response.status, 200, await response.text())
  }
  // Scored as they are written; the score records name each trace's id and session.
  const records = await until("the traces to be scored", async () => {
    const { body } = await call("GET", "/v1/scores?name=groundedness&limit=50")
    return body?.scores?.length === conversations.length ? body.scores : null
  })
  for (const i of conversations.keys()) traces.push(records.find((r) => r.session === `grading-${i}`).trace_id)
  const eiffel = records.find((r) => r.session === "grading-1")
  assert.equal(eiffel.label, "ungrounded", "the invented sentence is flagged")

  await ok("PUT", `/v1/rubrics/${rubric.name}/${rubric.version}`, rubric)
  await queue("answers", traces, ["ann", "bob"])
  await queue("reload", [traces[1]], ["dana"])
  await queue("tablet", [traces[1]], ["eve"], { blind: true })
  await queue("private", [traces[2]], ["carol"])
  await queue("flags", [traces[1]], ["fay"])

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

const view = (name) => `[data-testid="${name}-view"]:not([hidden])`

async function open(context, hash) {
  const page = await context.newPage()
  const errors = []
  page.on("pageerror", (e) => errors.push(e.message))
  page.errors = errors
  await page.goto(`${url}/grade/#${hash}`)
  return page
}

/** Waits for an item other than `previous` (or the end of the queue); its trace id, or null. */
async function nextItem(page, previous) {
  await page.waitForFunction(
    (previous) => {
      const grade = document.querySelector('[data-testid="grade-view"]')
      if (grade && !grade.hidden && grade.dataset.trace && grade.dataset.trace !== previous) return true
      const notice = document.querySelector('[data-testid="notice-view"]')
      return notice && !notice.hidden && document.querySelector('[data-testid="notice-title"]').textContent === "All done"
    },
    previous,
    { timeout: 15_000 },
  )
  return page.$eval('[data-testid="grade-view"]', (el) => (el.hidden ? null : el.dataset.trace))
}

const focused = (page) =>
  page.evaluate(() => {
    const el = document.activeElement
    const criterion = el?.closest('[data-testid="criterion"]')
    return { tag: el?.tagName, type: el?.type, key: criterion?.dataset.key ?? null, value: el?.value }
  })

const digit = (criterion, value) => {
  const c = rubric.criteria.find((c) => c.key === criterion)
  if (c.scale.kind === "pass_fail") return value === "pass" ? "1" : "2"
  if (c.scale.kind === "ordinal") return value
  return String(c.scale.labels.indexOf(value) + 1)
}

/** Grades the item on screen with keys only; odd items move with j/arrows, even ones with Tab. */
async function gradeByKeyboard(page, index, [grounded, helpful, tone], who) {
  const keys = page.keyboard
  assert.equal((await focused(page)).key, "grounded", "the first question has the focus")
  if (index === 3) await keys.press(grounded === "pass" ? "p" : "f")
  else await keys.press(digit("grounded", grounded))
  await keys.press("Tab")
  assert.equal((await focused(page)).tag, "TEXTAREA", "Tab goes to the justification box")
  await keys.type(`${who}: item ${index} is ${grounded}`)
  if (index % 2 === 1) {
    await keys.press("Escape")
    assert.equal((await focused(page)).key, "grounded", "Esc leaves the box for its question")
    await keys.press(index === 1 ? "j" : "ArrowDown")
    assert.equal((await focused(page)).key, "helpful")
    await keys.press(digit("helpful", helpful))
    await keys.press("j")
    await keys.press("k")
    await keys.press("ArrowDown")
  } else {
    await keys.press("Tab")
    assert.equal((await focused(page)).key, "helpful", "Tab goes on to the next question")
    await keys.press(digit("helpful", helpful))
    await keys.press("Tab") // its optional justification
    await keys.press("Tab")
  }
  assert.equal((await focused(page)).key, "tone")
  await keys.press(digit("tone", tone))
  const chosen = await page.$$eval('[data-testid="criterion"]', (nodes) =>
    nodes.map((n) => n.querySelector("input:checked")?.value ?? null),
  )
  assert.deepEqual(chosen, [grounded, helpful, tone], "the keys chose the answers")
  await keys.press("Enter")
}

test("two graders each grade a 5-item queue with the keyboard alone", async () => {
  for (const who of ["ann", "bob"]) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await open(context, `queue=answers&token=${grader("answers", who)}`)
    let trace = await nextItem(page, null)
    const seen = []
    while (trace) {
      const index = traces.indexOf(trace)
      assert.ok(index >= 0, `an item of the queue: ${trace}`)
      assert.equal(await page.textContent('[data-testid="progress-text"]'), `${seen.length + 1} of 5`)
      const c = conversations[index]
      const texts = await page.$$eval('[data-testid="message"]', (els) => els.map((e) => [e.dataset.role, e.querySelector('[data-testid="message-text"]').textContent]))
      assert.deepEqual(texts, [["user", c.question], ["assistant", c.answer]], "the trace as a conversation")
      assert.equal(await page.textContent('[data-testid="passage"] .text'), c.passage, "the retrieved passage")
      assert.equal(await page.$eval('[data-testid="tool-call"]', (d) => d.open), false, "tool calls are folded")
      if (index === 1 && who === "ann") {
        assert.ok(await page.isVisible('[data-testid="submit"]'), "Submit is on screen at 1280×800")
        await page.screenshot({ path: join(artifacts, "grading-item.png") })
      }
      if (index === 2 && who === "ann") {
        await page.keyboard.press("?")
        assert.ok(await page.isVisible('[data-testid="shortcuts"]'), "? shows the shortcuts")
        await page.keyboard.press("Escape")
        assert.equal(await page.isVisible('[data-testid="shortcuts"]'), false)
        // Opened from the button, the list gives the focus back to the question, not the button.
        await page.click('[data-testid="help-button"]')
        await page.keyboard.press("Escape")
        await page.waitForFunction(() => document.activeElement?.closest('[data-testid="criterion"]')?.dataset.key === "grounded")
        // The close event comes a task after the close: focus that has moved on in the form by
        // then stays where the grader put it.
        const kept = await page.evaluate(
          () =>
            new Promise((resolve) => {
              const dialog = document.querySelector('[data-testid="shortcuts"]')
              const why = document.querySelector('[data-testid="criterion"][data-key="grounded"] textarea')
              dialog.addEventListener("close", () => setTimeout(() => resolve(document.activeElement === why)), { once: true })
              dialog.showModal()
              dialog.close()
              why.focus()
            }),
        )
        assert.ok(kept, "a late close event leaves the focus in the justification box")
        await page.keyboard.press("Escape") // back to the question, as a grader would
      }
      await gradeByKeyboard(page, index, plans[who][index], who)
      seen.push(index)
      trace = await nextItem(page, trace)
    }
    assert.deepEqual(seen, [0, 1, 2, 3, 4], `${who} got every item once, in order`)
    assert.equal(await page.textContent('[data-testid="progress-text"]'), "5 of 5 done")
    assert.deepEqual(page.errors, [])
    await context.close()
  }

  const { grades } = await ok("GET", "/v1/queues/answers/grades")
  assert.equal(grades.length, 10)
  for (const g of grades) {
    const index = traces.indexOf(g.trace_id)
    const [grounded, helpful, tone] = plans[g.grader][index]
    assert.deepEqual(g.answers, {
      grounded: { value: grounded, justification: `${g.grader}: item ${index} is ${grounded}` },
      helpful: { value: helpful },
      tone: { value: tone },
    })
  }
  // The grades are score records of source human, in the trace's scores.
  const { scores } = await ok("GET", `/v1/traces/${traces[0]}/scores`)
  assert.ok(scores.some((s) => s.source === "human" && s.name === "rag-answer.grounded/ann" && s.label === "pass"), JSON.stringify(scores.map((s) => s.name)))
})

test("a reload mid-item keeps the draft, on this device and on the server", async () => {
  // Signed in through the form this time: the link names only the queue.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await open(context, "queue=reload")
  await page.waitForSelector(view("signin"))
  await page.fill('[data-testid="token-input"]', grader("reload", "dana"))
  await page.keyboard.press("Enter")
  const trace = await nextItem(page, null)
  assert.equal(trace, traces[1])
  assert.ok(!page.url().includes("token="), "the token is not left in the address bar")

  // The server does not get the draft (the network drops it): the copy on this device is
  // what brings it back.
  await page.route("**/draft", (route) => route.abort())
  await page.keyboard.press("2") // fail
  await page.keyboard.press("Tab")
  await page.keyboard.type("Rodin never painted the tower")
  await page.waitForSelector('[data-testid="save-state"]:has-text("Saved on this device only")')
  await page.reload()
  await nextItem(page, null)
  await page.unroute("**/draft")
  assert.equal(await page.$eval('[data-testid="rubric-form"]', (f) => f.dataset.draftSource), "device")
  assert.equal(await page.$eval('[data-testid="criterion"][data-key="grounded"] input:checked', (i) => i.value), "fail")
  assert.equal(await page.inputValue('[data-testid="criterion"][data-key="grounded"] textarea'), "Rodin never painted the tower")

  await page.keyboard.press("j")
  await page.keyboard.press("3")
  await page.waitForSelector('[data-testid="save-state"]:text-is("All changes saved")')
  // Another device (nothing stored locally): the server's draft brings it back.
  const other = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const second = await open(other, `queue=reload&token=${grader("reload", "dana")}`)
  assert.equal(await nextItem(second, null), traces[1], "the claim is resumed")
  const checked = await second.$$eval('[data-testid="criterion"]', (nodes) => nodes.map((n) => n.querySelector("input:checked")?.value ?? null))
  assert.deepEqual(checked, ["fail", "3", null])
  assert.equal(await second.inputValue('[data-testid="criterion"][data-key="grounded"] textarea'), "Rodin never painted the tower")
  assert.equal((await focused(second)).key, "helpful", "back on the question they were on")
  assert.equal(await second.$eval('[data-testid="rubric-form"]', (f) => f.dataset.draftSource), "server")

  // Submitting without every answer is refused on the page, naming the question.
  await second.keyboard.press("Enter")
  assert.match(await second.textContent('[data-testid="form-error"]'), /Tone/)
  assert.equal((await focused(second)).key, "tone", "the unanswered question gets the focus")
  await second.keyboard.press("1")
  await second.keyboard.press("Enter")
  assert.equal(await nextItem(second, traces[1]), null)
  const { grades } = await ok("GET", "/v1/queues/reload/grades")
  assert.deepEqual(grades.map((g) => g.answers.grounded.justification), ["Rodin never painted the tower"])

  // The first tab still shows the item; submitting other answers there now is refused by
  // the server (the same answers again would be taken as a retry of the kept grade), and
  // its message is shown beside the form, answers kept.
  await page.bringToFront()
  await page.keyboard.press("j")
  await page.keyboard.press("2")
  await page.keyboard.press("Enter")
  await page.waitForSelector('[data-testid="form-error"]:not([hidden])')
  const other_answers = { ...grades[0].answers, helpful: { value: grades[0].answers.helpful.value === "1" ? "2" : "1" } }
  const again = await call("POST", `/v1/queues/reload/items/${traces[1]}/grade`, { rubric: { name: rubric.name, version: 1 }, answers: other_answers }, grader("reload", "dana"))
  assert.equal(again.status, 409, JSON.stringify(again.body))
  assert.ok((await page.textContent('[data-testid="form-error"]')).includes(again.body.error), "the server's words, beside the form")
  assert.equal(await page.inputValue('[data-testid="criterion"][data-key="grounded"] textarea'), "Rodin never painted the tower", "nothing typed is lost")
  await context.close()
  await other.close()
})

test("works on a tablet by touch: targets of 44 px or more, nothing off the side, blind queues show no flags", async () => {
  const context = await browser.newContext({ viewport: { width: 768, height: 1024 }, hasTouch: true, isMobile: true })
  const page = await open(context, `token=${grader("tablet", "eve")}`) // the queue from the token's scope
  assert.equal(await nextItem(page, null), traces[1])
  assert.equal(await page.textContent('[data-testid="queue-name"]'), "tablet")
  assert.equal(await page.$$eval("mark", (m) => m.length), 0, "a blind queue shows no scorer flags")
  assert.equal(await page.$('[data-testid="score"]'), null, "nor scores")
  const small = await page.$$eval('[data-testid="choice"], button:not([hidden]), textarea:not([hidden]), summary', (els) =>
    els
      .filter((e) => e.offsetParent !== null)
      .map((e) => ({ what: e.dataset.testid ?? e.tagName, ...e.getBoundingClientRect().toJSON() }))
      .filter((r) => r.height < 44 || r.width < 44),
  )
  assert.deepEqual(small, [], "every touch target is at least 44×44 px")
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), "no sideways scrolling")
  await page.tap('[data-testid="criterion"][data-key="grounded"] [data-value="fail"]')
  await page.tap('[data-testid="criterion"][data-key="grounded"] textarea')
  await page.keyboard.type("Invented facts")
  await page.tap('[data-testid="criterion"][data-key="helpful"] [data-value="2"]')
  await page.tap('[data-testid="criterion"][data-key="tone"] [data-value="neutral"]')
  await page.waitForSelector('[data-testid="save-state"]:text-is("All changes saved")')
  await page.evaluate(() => scrollTo(0, 0))
  await page.screenshot({ path: join(artifacts, "grading-tablet.png") })
  await page.tap('[data-testid="submit"]')
  assert.equal(await nextItem(page, traces[1]), null)
  const { grades } = await ok("GET", "/v1/queues/tablet/grades")
  assert.deepEqual(grades[0].answers, { grounded: { value: "fail", justification: "Invented facts" }, helpful: { value: "2" }, tone: { value: "neutral" } })
  await context.close()
})

test("the scorers' flagged ranges are highlighted when the queue is not blind", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await open(context, `queue=flags&token=${grader("flags", "fay")}`)
  assert.equal(await nextItem(page, null), traces[1])
  const marks = await page.$$eval('[data-testid="message"][data-role="assistant"] mark', (els) => els.map((e) => [e.textContent, e.dataset.label]))
  assert.deepEqual(marks, [["It was painted gold in 1925 by the sculptor Auguste Rodin.", "groundedness"]], "the unsupported sentence, and only it")
  await page.click('[data-testid="scores-box"] summary')
  const verdicts = await page.$$eval('[data-testid="score"]', (els) => els.map((e) => e.textContent))
  assert.ok(verdicts.includes("groundednessungrounded"), `the scorers' verdicts: ${JSON.stringify(verdicts)}`)
  await context.close()
})

/** The agreement's criteria, whichever way the response wraps them. */
function criteriaOf(agreement) {
  if (Array.isArray(agreement)) return agreement
  for (const key of ["criteria", "agreement"]) if (agreement?.[key]) return criteriaOf(agreement[key])
  return Object.entries(agreement ?? {}).map(([criterion, v]) => ({ criterion, ...v }))
}

test("the owner's page shows the agreement the statistics code computed for those grades", async () => {
  const expected = criteriaOf(await ok("GET", "/v1/queues/answers/agreement"))
  assert.deepEqual(expected.map((c) => c.criterion).sort(), ["grounded", "helpful", "tone"])
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await open(context, `owner&token=${admin}`)
  await page.waitForSelector('[data-testid="owner-view"][data-loaded="true"]')
  const card = '[data-testid="owner-queue"][data-queue="answers"]'
  assert.equal(await page.$eval(`${card} [data-testid="queue-progress"]`, (p) => [p.dataset.done, p.dataset.slots].join("/")), "10/10")
  const shown = (row, testid) => page.$eval(`${row} [data-testid="${testid}"]`, (e) => ({ value: e.dataset.value, low: e.dataset.low, high: e.dataset.high, text: e.querySelector(".value")?.textContent }))
  const same = (got, estimate, what, defined = true) => {
    if (!defined && typeof estimate.value !== "number") return assert.equal(got.value, undefined, `${what} is shown as not defined`)
    assert.equal(typeof estimate.value, "number", `${what} is defined for these grades`)
    assert.equal(Number(got.value), estimate.value, what)
    assert.equal(got.text, estimate.value.toFixed(3), `${what} as shown`)
    if (estimate.ci) {
      assert.equal(Number(got.low), estimate.ci.low, `${what} interval`)
      assert.equal(Number(got.high), estimate.ci.high, `${what} interval`)
    }
  }
  for (const c of expected) {
    const row = `${card} [data-testid="agreement-row"][data-criterion="${c.criterion}"]`
    same(await shown(row, "alpha"), c.krippendorff_alpha, `${c.criterion}: Krippendorff's alpha`)
    same(await shown(row, "fleiss"), c.fleiss_kappa, `${c.criterion}: Fleiss' kappa`)
    assert.equal(c.pairwise.length, 1)
    same(await shown(`${row} [data-testid="pair"][data-a="${c.pairwise[0].a}"]`, "pair-kappa"), c.pairwise[0].kappa, `${c.criterion}: Cohen's kappa`)
    for (const s of c.scorers ?? []) {
      same(await shown(`${row} [data-testid="scorer"][data-scorer="${s.scorer}"]`, "scorer-kappa"), s.vs_consensus, `${c.criterion}: ${s.scorer} vs consensus`, false)
    }
  }
  // And they are what the statistics code gives for the grades typed in, run on its own
  // (`agentwire agreement`, from a JSON-lines file of those grades).
  for (const [scale, keys] of [["nominal", ["grounded", "tone"]], ["ordinal", ["helpful"]]]) {
    const file = join(dataDir, `grades-${scale}.jsonl`)
    const lines = []
    for (const [who, plan] of Object.entries(plans)) {
      for (const [index, answers] of plan.entries()) {
        for (const key of keys) {
          const value = answers[rubric.criteria.findIndex((c) => c.key === key)]
          lines.push(JSON.stringify({ item: traces[index], grader: who, criterion: key, value: scale === "ordinal" ? Number(value) : value }))
        }
      }
    }
    writeFileSync(file, `${lines.join("\n")}\n`)
    const computed = execFileSync(bin, ["agreement", "--grades", file, "--scale", scale, "--json"]).toString().trim().split("\n").map((l) => JSON.parse(l))
    for (const c of computed) {
      const row = `${card} [data-testid="agreement-row"][data-criterion="${c.criterion}"]`
      for (const [testid, value] of [["alpha", c.krippendorff_alpha], ["fleiss", c.fleiss_kappa], ["pair-kappa", c.pairwise[0].kappa]]) {
        const got = Number((await shown(row, testid)).value)
        assert.ok(Math.abs(got - value.value) < 1e-12, `${c.criterion} ${testid}: page ${got}, agentwire agreement ${value.value}`)
      }
    }
    assert.deepEqual(computed.map((c) => c.criterion).sort(), [...keys].sort())
  }

  const grounded = expected.find((c) => c.criterion === "grounded")
  assert.ok(grounded.scorers?.some((s) => s.scorer === "groundedness"), "the linked scorer is compared too")
  assert.ok(await page.isVisible(`${card} [data-testid="agreement-chart"]`), "and charted")
  await page.screenshot({ path: join(artifacts, "grading-owner.png"), fullPage: true })
  await context.close()
})

test("the owner's page says in words which judge versions are not trusted", async () => {
  // The real figures for the queue, with two judge versions added to the answer the page
  // gets: dev has no judge endpoint to write judge records with, so the page is shown
  // what the server sends once one has (`judge:<model>/<prompt>/<rubric>@<version>`).
  const real = await ok("GET", "/v1/queues/answers/agreement")
  const grounded = criteriaOf(real).find((c) => c.criterion === "grounded")
  const base = grounded.scorers.find((s) => s.scorer === "groundedness")
  const judges = [
    { ...base, scorer: "judge:gpt-4o-mini/judge-1/rag-answer@1", trusted: true },
    { ...base, scorer: "judge:gpt-4o-mini/judge-2/rag-answer@1", trusted: false },
    { ...base, scorer: "judge:gpt-4o-mini/judge-3/rag-answer@1", trusted: null },
  ]
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  await context.route("**/v1/queues/answers/agreement", async (route) => {
    const response = await route.fetch()
    const body = await response.json()
    criteriaOf(body).find((c) => c.criterion === "grounded").scorers.push(...judges)
    await route.fulfill({ response, json: body })
  })
  const page = await open(context, `owner&token=${admin}`)
  await page.waitForSelector('[data-testid="owner-view"][data-loaded="true"]')
  const row = '[data-testid="owner-queue"][data-queue="answers"] [data-testid="agreement-row"][data-criterion="grounded"]'
  const badges = (scorer) =>
    page.$$eval(`${row} [data-testid="scorer"][data-scorer="${scorer}"] .badge`, (nodes) =>
      nodes.map((n) => ({ testid: n.dataset.testid, text: n.textContent, title: n.title, visible: n.getBoundingClientRect().width > 0 })),
    )
  const [trusted] = await badges(judges[0].scorer)
  assert.deepEqual([trusted.testid, trusted.text, trusted.visible], ["trusted", "trusted", true])
  const shown = await badges(judges[1].scorer)
  assert.equal(shown.length, 1, JSON.stringify(shown))
  assert.deepEqual([shown[0].testid, shown[0].text, shown[0].visible], ["not-trusted", "not trusted", true])
  assert.match(shown[0].title, /agrees with the graders less than they agree with each other/)
  assert.deepEqual(await badges(judges[2].scorer), [], "no verdict when the comparison is undefined")
  // The linked code scorer gets the server's own verdict.
  const want = typeof base.trusted === "boolean" ? [base.trusted ? "trusted" : "not-trusted"] : []
  assert.deepEqual((await badges("groundedness")).map((b) => b.testid), want)
  assert.deepEqual(page.errors, [])
  await context.close()
})

test("a grader's token cannot open another queue: the page says so", async () => {
  const ann = grader("answers", "ann")
  for (const other of ["private", "no-such-queue"]) {
    const refused = await call("POST", `/v1/queues/${other}/claim`, undefined, ann)
    assert.equal(refused.status, 403, `${other}: ${JSON.stringify(refused.body)}`)
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await open(context, `queue=${other}&token=${ann}`)
    // The notice says "Loading" while the claim is out: wait for the answer's notice.
    await page.waitForFunction(() => {
      const notice = document.querySelector('[data-testid="notice-view"]')
      return notice && !notice.hidden && document.querySelector('[data-testid="notice-title"]').textContent !== "Loading"
    })
    assert.equal(await page.textContent('[data-testid="notice-title"]'), "No access")
    assert.equal(await page.textContent('[data-testid="notice"]'), refused.body.error, "the server's message, in plain words")
    assert.equal(await page.$('[data-testid="conversation"] [data-testid="message"]'), null, "nothing of the trace")
    await context.close()
  }
  // Nor can a grader's token read the owner's view.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await open(context, `owner&token=${ann}`)
  await page.waitForSelector(view("signin"))
  assert.match(await page.textContent('[data-testid="signin-error"]'), /admin/)
  await context.close()
})
