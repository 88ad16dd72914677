// The grading page: a grader signs in with a grader token, claims one trace at a time from a
// queue, reads it as a conversation and answers the rubric; an owner (`#owner`, admin token)
// sees each queue's progress and agreement. Every change to the answers is kept on this
// device at once and on the server shortly after, so a reload or a dropped network loses
// nothing. The API is the page's own origin (the token is never sent anywhere else).

// ---------- types (what the HTTP API sends; every field treated as possibly missing) ----------

type Obj = Record<string, unknown>;

interface Claims {
  t: string;
  s: string;
  r: string;
  u?: string;
  exp: number;
}

type Scale =
  | { kind: "pass_fail" }
  | { kind: "ordinal"; anchors: string[] }
  | { kind: "categorical"; labels: string[] };

interface Criterion {
  key: string;
  title: string;
  guidance?: string;
  scale: Scale;
  justification_required?: boolean;
}

interface Rubric {
  name: string;
  version: number;
  title?: string;
  criteria: Criterion[];
}

interface Claim {
  queue: string;
  item: { trace_id: string; session?: string; position?: number; slots?: number };
  grader?: string;
  slot?: number;
  lease_until_ms?: number;
}

interface Progress {
  done?: number;
  total?: number;
}

interface Flag {
  start: number;
  end: number;
  label?: string;
}

interface Conversation {
  messages?: Array<{ role?: string; text?: string; flagged?: Flag[] }>;
  tool_calls?: Array<{ name?: string; arguments?: unknown; result?: unknown; error?: unknown }>;
  passages?: Array<{ source?: string; text?: string; flagged?: Flag[] }>;
}

interface Answer {
  value?: string;
  justification?: string;
}

/** The draft as this page writes it (locally and as the server draft's body). */
interface DraftBody {
  v: 1;
  rubric: { name: string; version: number };
  answers: Record<string, Answer>;
  /** The criterion the grader was on. */
  current?: number;
  /** This device's clock, unix ms: the newer of the local and the server draft wins. */
  saved_ms: number;
}

interface Option {
  value: string;
  label: string;
  detail?: string;
}

// ---------- small helpers ----------

const $ = <T extends HTMLElement = HTMLElement>(id: string, root: ParentNode = document) =>
  root.querySelector(`[data-testid="${id}"]`) as T;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Array<Node | string | null | undefined>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const svgNs = "http://www.w3.org/2000/svg";
function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(svgNs, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);
const num = (x: unknown): number | undefined => (typeof x === "number" && Number.isFinite(x) ? x : undefined);
const str = (x: unknown): string | undefined => (typeof x === "string" ? x : undefined);
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

function show(view: "signin" | "notice" | "grade" | "owner"): void {
  for (const name of ["signin", "notice", "grade", "owner"]) {
    $(`${name}-view`).hidden = name !== view;
  }
}

// ---------- sign-in ----------

const TOKEN_KEY = "agentwire-grading:token";
const hash = new URLSearchParams(location.hash.slice(1));
const ownerMode = hash.has("owner");
let token = "";
let claims: Claims | null = null;
let queue = "";

/** The claims of an `aw1.<claims>.<mac>` token, or null when it is not one. */
function decodeClaims(value: string): Claims | null {
  const parts = value.split(".");
  if (parts.length !== 3 || parts[0] !== "aw1") return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const parsed = JSON.parse(json) as Partial<Claims>;
    if (typeof parsed.t !== "string" || typeof parsed.s !== "string" || typeof parsed.r !== "string") return null;
    return { t: parsed.t, s: parsed.s, r: parsed.r, u: parsed.u, exp: Number(parsed.exp) };
  } catch {
    return null;
  }
}

/** Why this token cannot be used here, or null when it can. */
function tokenProblem(c: Claims | null): string | null {
  if (!c) return "That is not a sign-in code. Copy the whole code from your invitation link (it starts with “aw1.”).";
  if (c.exp * 1000 < Date.now()) return "This sign-in code has expired. Ask the queue owner for a new link.";
  if (ownerMode && c.r !== "admin") return "The owner's page needs an admin sign-in code.";
  if (!ownerMode && c.r !== "grader" && c.r !== "admin") return `This code is for the ${c.r} role, not for grading. Ask the queue owner for a grading link.`;
  return null;
}

/** The queue the link names, else the one the token's scope names (when it is not a prefix). */
function queueFor(c: Claims, typed?: string): string {
  const named = (typed ?? "").trim() || hash.get("queue") || "";
  if (named) return named;
  return c.s.endsWith("*") ? "" : c.s;
}

function rememberLink(): void {
  // The token leaves the address bar (it stays in this tab's session storage), so the
  // link on screen can be shown or shared without handing out the sign-in.
  const next = new URLSearchParams();
  if (ownerMode) next.set("owner", "");
  else if (queue) next.set("queue", queue);
  history.replaceState(null, "", `${location.pathname}${location.search}#${next.toString().replace(/=(&|$)/g, "$1")}`);
}

function signIn(value: string, typedQueue?: string): string | null {
  // Pasted codes may carry line breaks or spaces; a token has none.
  const given = value.replace(/\s+/g, "");
  const c = decodeClaims(given);
  const problem = tokenProblem(c);
  if (problem || !c) return problem;
  token = given;
  claims = c;
  queue = ownerMode ? "" : queueFor(c, typedQueue);
  if (!ownerMode && !queue) return "Your code covers several queues: type the queue's name from your invitation.";
  sessionStorage.setItem(TOKEN_KEY, token);
  rememberLink();
  $("who").textContent = c.u ? `Signed in as ${c.u}` : `Signed in (${c.r})`;
  $("sign-out").hidden = false;
  const tag = $("queue-name");
  tag.textContent = ownerMode ? "queue owner" : queue;
  tag.hidden = false;
  return null;
}

function showSignIn(message?: string): void {
  show("signin");
  $("progress").hidden = true;
  const error = $("signin-error");
  error.textContent = message ?? "";
  error.hidden = !message;
  ($("queue-input") as HTMLInputElement).value = hash.get("queue") ?? "";
  $("token-input").focus();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget as HTMLFormElement;
  const data = new FormData(form);
  const problem = signIn(String(data.get("token") ?? ""), String(data.get("queue") ?? ""));
  if (problem) return showSignIn(problem);
  void start();
});

// A sign-in code is one line: Enter signs in (pasting one with a line break is fine too).
$("token-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $<HTMLFormElement>("signin-form").requestSubmit();
  }
});

$("sign-out").addEventListener("click", () => {
  void flushDraft();
  sessionStorage.removeItem(TOKEN_KEY);
  token = "";
  claims = null;
  location.hash = "";
  location.reload();
});

// ---------- the API ----------

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function api<T = unknown>(method: string, path: string, body?: unknown, keepalive = false): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive,
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check your connection; your answers are kept on this device.");
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, data));
  return data as T;
}

/** The server's message (written for people), or a plain one for the status. */
function errorMessage(status: number, data: unknown): string {
  const message = isObj(data) ? str(data.error) ?? str(data.message) : typeof data === "string" ? data.trim() : undefined;
  if (message) return message;
  if (status === 401) return "Your sign-in has expired or is not valid. Ask the queue owner for a new link.";
  if (status === 403) return "You do not have access to this.";
  if (status === 404) return "Not found.";
  if (status === 409) return "Someone else changed this at the same time. Reload the page.";
  if (status >= 500) return "The server had a problem. Try again in a moment; your answers are kept on this device.";
  return `The request failed (${status}).`;
}

const enc = encodeURIComponent;

// ---------- notices (no form on screen) ----------

function notice(title: string, message: string, actions: Array<{ label: string; run: () => void; testid?: string }> = [], hint = ""): void {
  show("notice");
  $("notice-title").textContent = title;
  $("notice").textContent = message;
  $("notice-hint").textContent = hint;
  $("notice-hint").hidden = !hint;
  const box = $("notice-actions");
  box.replaceChildren(
    ...actions.map((a) => {
      const button = el("button", { type: "button", class: "primary", "data-testid": a.testid ?? "notice-action", text: a.label });
      button.addEventListener("click", a.run);
      return button;
    }),
  );
  (box.querySelector("button") as HTMLButtonElement | null)?.focus();
}

function failed(error: unknown, retry: () => void): void {
  const e = error instanceof ApiError ? error : new ApiError(0, String(error));
  if (e.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(e.message);
  }
  const title = e.status === 403 ? "No access" : e.status === 404 ? "Not found" : e.status === 409 ? "Not available now" : "Something went wrong";
  const hint = e.status === 403 ? "Check that you opened the link from your invitation for this queue, or ask the queue's owner to add you." : "";
  notice(title, e.message, e.status === 403 ? [] : [{ label: "Try again", run: retry, testid: "retry" }], hint);
}

// ---------- grading ----------

/** How often, at most, a grader's activity renews their lease (leases last 30 minutes unless the queue says otherwise). */
const RENEW_EVERY_MS = 5 * 60 * 1000;
let claim: Claim | null = null;
let rubric: Rubric | null = null;
let progress: Progress = {};
let current = 0;
let submitting = false;

const DRAFT_PREFIX = "agentwire-grading:draft:";
/** Drafts on this device older than this are dropped at start (their items were long since graded or lost). */
const DRAFT_KEEP_MS = 30 * 24 * 3600 * 1000;

function draftKey(traceId: string): string {
  return `${DRAFT_PREFIX}${claims?.t ?? ""}/${queue}/${traceId}/${claims?.u ?? ""}`;
}

function pruneDrafts(): void {
  let keys: string[] = [];
  try {
    keys = Object.keys(localStorage).filter((k) => k.startsWith(DRAFT_PREFIX));
  } catch {
    return; // storage unavailable: nothing to prune
  }
  for (const key of keys) {
    let saved = NaN;
    try {
      saved = Number(JSON.parse(localStorage.getItem(key) ?? "null")?.saved_ms);
    } catch {
      // not a draft of ours: dropped below
    }
    if (!(saved > Date.now() - DRAFT_KEEP_MS)) localStorage.removeItem(key);
  }
}

async function nextItem(): Promise<void> {
  notice("Loading", "Getting the next conversation to grade…");
  try {
    const data = await api<Obj>("POST", `/v1/queues/${enc(queue)}/claim`);
    progress = isObj(data?.progress) ? (data.progress as Progress) : {};
    claim = isObj(data?.claim) ? (data.claim as unknown as Claim) : null;
    if (!claim) return finished();
    renewedAt = Date.now();
    await openItem(claim);
  } catch (error) {
    failed(error, () => void nextItem());
  }
}

function finished(): void {
  rubric = null;
  renderProgress(true);
  const total = progress.total;
  notice(
    "All done",
    total ? `You have graded all ${total} conversations given to you in this queue. Thank you!` : "There is nothing left for you to grade in this queue. Thank you!",
    [{ label: "Check again", run: () => void nextItem(), testid: "check-again" }],
  );
}

async function openItem(c: Claim): Promise<void> {
  const data = await api<Obj>("GET", `/v1/queues/${enc(queue)}/items/${enc(c.item.trace_id)}`);
  const r = data.rubric as Rubric | undefined;
  if (!r || !Array.isArray(r.criteria)) throw new ApiError(0, "The server sent this item without its rubric.");
  rubric = r;
  renderConversation(data.conversation as Conversation | undefined, data.blind === true, data);
  renderRubric(r);
  const local = readLocalDraft(c.item.trace_id);
  const remote = isDraft(data.draft) ? data.draft : null;
  const draft = local && (!remote || local.saved_ms >= remote.saved_ms) ? local : remote;
  if (draft) applyDraft(draft);
  // Which copy came back (for the curious, and for the tests).
  form.dataset.draftSource = draft ? (draft === local ? "device" : "server") : "none";
  // A local draft newer than the server's (saved offline, or just before a reload) goes up now.
  if (local && draft === local && (!remote || local.saved_ms > remote.saved_ms)) scheduleServerSave(0);
  setSaveState(draft ? "Your earlier answers are back." : "");
  renderProgress(false);
  $("grade-view").dataset.trace = c.item.trace_id;
  show("grade");
  form.scrollTop = 0;
  focusCriterion(draft?.current ?? 0, false);
  window.scrollTo(0, 0);
}

function renderProgress(done: boolean): void {
  const total = progress.total ?? 0;
  const finishedCount = progress.done ?? 0;
  const box = $("progress");
  box.hidden = !total;
  if (!total) return;
  const at = done ? finishedCount : Math.min(finishedCount + 1, total);
  $("progress-text").textContent = done ? `${finishedCount} of ${total} done` : `${at} of ${total}`;
  box.setAttribute("aria-label", done ? `${finishedCount} of ${total} graded` : `Conversation ${at} of ${total}; ${finishedCount} graded`);
  $("progress-fill").style.width = `${Math.round((finishedCount / total) * 100)}%`;
}

// ----- the conversation -----

/** `text` as nodes with the characters of each flag (code points, as the scorers count) in <mark>. */
function highlighted(text: string, flags: Flag[] | undefined, show: boolean): Node[] {
  const chars = Array.from(text);
  const spans = (show ? flags ?? [] : [])
    .filter((f) => num(f?.start) !== undefined && num(f?.end) !== undefined && f.end > f.start)
    .map((f) => ({ start: Math.max(0, f.start), end: Math.min(chars.length, f.end), label: f.label }))
    .sort((a, b) => a.start - b.start);
  const out: Node[] = [];
  let at = 0;
  for (const span of spans) {
    if (span.start < at) continue; // overlapping flags: the first one shown
    if (span.start > at) out.push(document.createTextNode(chars.slice(at, span.start).join("")));
    out.push(
      el("mark", { title: span.label ? `Flagged: ${span.label}` : "Flagged by a scorer", "data-testid": "flag", "data-label": span.label }, chars.slice(span.start, span.end).join("")),
    );
    at = span.end;
  }
  if (at < chars.length) out.push(document.createTextNode(chars.slice(at).join("")));
  return out;
}

function pretty(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

function renderConversation(conversation: Conversation | undefined, blind: boolean, data: Obj): void {
  const box = $("conversation");
  const messages = arr(conversation?.messages).filter(isObj) as NonNullable<Conversation["messages"]>;
  const tools = arr(conversation?.tool_calls).filter(isObj) as NonNullable<Conversation["tool_calls"]>;
  const passages = arr(conversation?.passages).filter(isObj) as NonNullable<Conversation["passages"]>;
  const nodes: Node[] = [el("h2", { class: "visually-hidden", text: "Conversation" })];

  const messageNode = (m: (typeof messages)[number]) => {
    const role = m.role === "user" ? "user" : m.role === "assistant" ? "assistant" : m.role ?? "system";
    const who = role === "user" ? "User" : role === "assistant" ? "Assistant" : role.charAt(0).toUpperCase() + role.slice(1);
    return el(
      "div",
      { class: `message ${role}`, "data-testid": "message", "data-role": role },
      el("div", { class: "who", text: who }),
      el("div", { class: "text", "data-testid": "message-text" }, ...highlighted(m.text ?? "", m.flagged, !blind)),
    );
  };
  const toolsNode = () =>
    el(
      "div",
      { class: "tools", "data-testid": "tool-calls" },
      ...tools.map((t) =>
        el(
          "details",
          { class: t.error ? "tool failed" : "tool", "data-testid": "tool-call" },
          el("summary", {}, el("span", { class: "tool-name", text: `Tool: ${t.name ?? "unnamed"}` }), t.error ? el("span", { class: "badge bad", text: "error" }) : null),
          el("div", { class: "tool-label", text: "Arguments" }),
          el("pre", { text: pretty(t.arguments) || "(none)" }),
          el("div", { class: "tool-label", text: t.error ? "Error" : "Result" }),
          el("pre", { text: pretty(t.error ?? t.result) || "(none)" }),
        ),
      ),
    );

  // Tool calls come between the question and the final answer: they are shown folded just
  // before the last assistant message.
  let lastAssistant = -1;
  messages.forEach((m, i) => {
    if (m.role === "assistant") lastAssistant = i;
  });
  messages.forEach((m, i) => {
    if (i === lastAssistant && tools.length) nodes.push(toolsNode());
    nodes.push(messageNode(m));
  });
  if (lastAssistant < 0 && tools.length) nodes.push(toolsNode());
  if (!messages.length) nodes.push(el("p", { class: "muted", text: "This trace has no messages." }));

  if (passages.length) {
    nodes.push(
      el(
        "section",
        { class: "passages", "data-testid": "passages" },
        el("h3", { text: `Retrieved passages (${passages.length})` }),
        ...passages.map((p, i) =>
          el(
            "details",
            { class: "passage", "data-testid": "passage", open: i < 3 },
            el("summary", { text: p.source || `Passage ${i + 1}` }),
            el("div", { class: "text" }, ...highlighted(p.text ?? "", p.flagged, !blind)),
          ),
        ),
      ),
    );
  }

  if (!blind) {
    // Automated scorers' verdicts (labelled ones; human records are the grades below).
    const scores = arr(data.scores)
      .filter(isObj)
      .filter((s) => s.source !== "human" && typeof s.label === "string")
      .sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const grades = arr(data.grades).filter(isObj);
    if (scores.length || grades.length) {
      const list = el("ul", { class: "scores" });
      for (const s of scores) {
        const label = str(s.label) ?? "";
        list.append(el("li", { "data-testid": "score" }, el("span", { class: "score-name", text: str(s.name) ?? "score" }), el("span", { class: "badge", text: label })));
      }
      for (const g of grades) {
        const answers = isObj(g.answers) ? Object.entries(g.answers).map(([k, a]) => `${k}: ${isObj(a) ? str(a.value) ?? "" : ""}`) : [];
        list.append(el("li", { "data-testid": "other-grade" }, el("span", { class: "score-name", text: `Graded by ${str(g.grader) ?? "someone"}` }), el("span", { text: answers.join(", ") })));
      }
      nodes.push(el("details", { class: "scores-box", "data-testid": "scores-box" }, el("summary", { text: "What scorers and other graders said" }), list));
    }
  }
  box.replaceChildren(...nodes);
}

// ----- the rubric form -----

function options(c: Criterion): Option[] {
  const scale = c.scale;
  if (scale?.kind === "pass_fail") return [
    { value: "pass", label: "Pass" },
    { value: "fail", label: "Fail" },
  ];
  if (scale?.kind === "ordinal") return arr(scale.anchors).map((a, i) => ({ value: String(i + 1), label: String(i + 1), detail: String(a ?? "") }));
  if (scale?.kind === "categorical") return arr(scale.labels).map((l) => ({ value: String(l), label: String(l) }));
  return [];
}

/** The digit key that picks option `i` (1…9, then 0 for the tenth). */
const digitFor = (i: number) => (i < 9 ? String(i + 1) : i === 9 ? "0" : "");

function criterionNodes(): HTMLElement[] {
  return Array.from($("criteria").querySelectorAll<HTMLElement>('[data-testid="criterion"]'));
}

function renderRubric(r: Rubric): void {
  $("rubric-title").textContent = r.title || r.name;
  const box = $("criteria");
  box.replaceChildren(
    ...r.criteria.map((c, index) => {
      const id = `c${index}`;
      const required = c.justification_required === true;
      const opts = options(c);
      const fieldset = el(
        "fieldset",
        { class: "criterion", "data-testid": "criterion", "data-key": c.key, "data-index": String(index), "aria-describedby": c.guidance ? `${id}-guidance` : undefined },
        el("legend", {}, el("span", { class: "number", text: `${index + 1}` }), el("span", { text: c.title || c.key })),
        c.guidance ? el("p", { class: "guidance", id: `${id}-guidance`, "data-testid": "guidance", text: c.guidance }) : null,
        el(
          "div",
          { class: `choices ${c.scale?.kind ?? ""}`, role: "radiogroup", "aria-label": c.title || c.key },
          ...opts.map((o, i) =>
            el(
              "label",
              { class: "choice", "data-testid": "choice", "data-value": o.value },
              el("input", { type: "radio", name: `answer-${c.key}`, value: o.value, "data-testid": "radio", "aria-keyshortcuts": digitFor(i) || undefined }),
              digitFor(i) ? el("kbd", { "aria-hidden": "true", text: digitFor(i) }) : null,
              // An ordinal point's number is its key: shown once (the key), read once (the label).
              el("span", { class: o.label === digitFor(i) ? "choice-label visually-hidden" : "choice-label", text: o.label }),
              o.detail ? el("span", { class: "anchor", "data-testid": "anchor", text: o.detail }) : null,
            ),
          ),
        ),
        el(
          "label",
          { class: "justification-label", for: `${id}-why` },
          "Why? ",
          el("span", { class: required ? "required" : "muted", text: required ? "(required)" : "(optional)" }),
        ),
        el("textarea", {
          id: `${id}-why`,
          class: "justification",
          rows: "3",
          "data-testid": "justification",
          "aria-required": required ? "true" : undefined,
          required: required,
          placeholder: required ? "Explain your answer (required)" : "Add a note if it helps",
        }),
        el("p", { class: "field-error", role: "alert", "data-testid": "criterion-error", hidden: true }),
      );
      fieldset.addEventListener("focusin", () => setCurrent(index));
      fieldset.addEventListener("pointerdown", () => setCurrent(index));
      return fieldset;
    }),
  );
  $("form-error").hidden = true;
}

function setCurrent(index: number): void {
  current = index;
  criterionNodes().forEach((node, i) => node.classList.toggle("current", i === index));
}

/** Moves to criterion `index`: its chosen answer (or its first), without choosing anything. */
function focusCriterion(index: number, scroll = true): void {
  const nodes = criterionNodes();
  if (!nodes.length) return;
  const i = Math.max(0, Math.min(nodes.length - 1, index));
  setCurrent(i);
  const node = nodes[i];
  const target = node.querySelector<HTMLInputElement>('input[type="radio"]:checked') ?? node.querySelector<HTMLInputElement>('input[type="radio"]');
  (target ?? node).focus({ preventScroll: true });
  if (scroll) node.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function answers(): Record<string, Answer> {
  const out: Record<string, Answer> = {};
  for (const node of criterionNodes()) {
    const key = node.dataset.key ?? "";
    const checked = node.querySelector<HTMLInputElement>('input[type="radio"]:checked');
    const why = node.querySelector<HTMLTextAreaElement>("textarea")?.value ?? "";
    const answer: Answer = {};
    if (checked) answer.value = checked.value;
    if (why) answer.justification = why;
    if (checked || why) out[key] = answer;
  }
  return out;
}

function applyDraft(draft: DraftBody): void {
  for (const node of criterionNodes()) {
    const answer = draft.answers[node.dataset.key ?? ""];
    if (!answer) continue;
    const radio = Array.from(node.querySelectorAll<HTMLInputElement>('input[type="radio"]')).find((r) => r.value === answer.value);
    if (radio) radio.checked = true;
    const why = node.querySelector<HTMLTextAreaElement>("textarea");
    if (why && typeof answer.justification === "string") why.value = answer.justification;
  }
}

function choose(index: number, optionIndex: number): boolean {
  const node = criterionNodes()[index];
  const radios = node ? Array.from(node.querySelectorAll<HTMLInputElement>('input[type="radio"]')) : [];
  const radio = radios[optionIndex];
  if (!radio) return false;
  radio.checked = true;
  radio.focus({ preventScroll: true });
  clearCriterionError(node);
  changed();
  return true;
}

function clearCriterionError(node: HTMLElement): void {
  node.classList.remove("invalid");
  const error = $("criterion-error", node);
  error.hidden = true;
  error.textContent = "";
}

// ----- drafts -----

function isDraft(x: unknown): x is DraftBody {
  return isObj(x) && isObj(x.answers) && typeof x.saved_ms === "number";
}

function readLocalDraft(traceId: string): DraftBody | null {
  try {
    const parsed = JSON.parse(localStorage.getItem(draftKey(traceId)) ?? "null");
    return isDraft(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function currentDraft(): DraftBody | null {
  if (!rubric || !claim) return null;
  return { v: 1, rubric: { name: rubric.name, version: rubric.version }, answers: answers(), current, saved_ms: Date.now() };
}

let serverTimer: number | undefined;
let pendingServer = false;

function setSaveState(text: string, kind: "" | "ok" | "warn" = ""): void {
  const state = $("save-state");
  state.textContent = text;
  state.dataset.kind = kind;
}

/** Every change: kept on this device at once, on the server after a pause in typing. */
function changed(): void {
  const draft = currentDraft();
  if (!draft || !claim) return;
  try {
    localStorage.setItem(draftKey(claim.item.trace_id), JSON.stringify(draft));
    setSaveState("Saved on this device…");
  } catch {
    setSaveState("This device cannot keep a copy; saving to the server…", "warn");
  }
  scheduleServerSave(500);
  void renewLease();
}

let renewedAt = Date.now();

/** Claiming again renews the grader's own lease: done now and then while they work, so a
 * long read does not let the item go to someone else. */
async function renewLease(): Promise<void> {
  if (!claim || Date.now() - renewedAt < RENEW_EVERY_MS) return;
  renewedAt = Date.now();
  const held = claim.item.trace_id;
  try {
    const data = await api<Obj>("POST", `/v1/queues/${enc(queue)}/claim`);
    const again = isObj(data?.claim) ? (data.claim as unknown as Claim) : null;
    if (claim?.item.trace_id !== held) return;
    if (again?.item.trace_id !== held) {
      showFormError("This conversation was given to another grader while the page was idle. Your answers are still here, but the server may not accept them: submit to find out, or reload for the next one.");
    }
  } catch {
    // Renewal is best effort: the lease is checked again on submit.
  }
}

function scheduleServerSave(delay: number): void {
  pendingServer = true;
  window.clearTimeout(serverTimer);
  serverTimer = window.setTimeout(() => void saveToServer(), delay);
}

let inFlight: Promise<void> = Promise.resolve();

/** Sends the latest draft, one request at a time so an older one never lands last; a
 * page going away (`keepalive`) sends at once. */
function saveToServer(keepalive = false): Promise<void> {
  if (keepalive) return sendDraft(true);
  inFlight = inFlight.then(() => sendDraft(false)).catch(() => undefined);
  return inFlight;
}

async function sendDraft(keepalive: boolean): Promise<void> {
  if (!pendingServer || !claim) return;
  const draft = (claim && readLocalDraft(claim.item.trace_id)) ?? currentDraft();
  if (!draft) return;
  const item = claim.item.trace_id;
  pendingServer = false;
  try {
    await api("PUT", `/v1/queues/${enc(queue)}/items/${enc(item)}/draft`, draft, keepalive);
    if (claim?.item.trace_id === item && !pendingServer) setSaveState("All changes saved", "ok");
  } catch (error) {
    if (claim?.item.trace_id !== item) return;
    const e = error as ApiError;
    setSaveState(`Saved on this device only. ${e.message}${e.status === 0 || e.status >= 500 ? " Retrying…" : ""}`, "warn");
    if (e.status === 0 || e.status >= 500) {
      pendingServer = true;
      window.clearTimeout(serverTimer);
      serverTimer = window.setTimeout(() => void saveToServer(), 3000);
    }
  }
}

function flushDraft(): Promise<void> {
  window.clearTimeout(serverTimer);
  return saveToServer(true);
}

addEventListener("pagehide", () => void flushDraft());
addEventListener("online", () => {
  if (claim) scheduleServerSave(0);
});

const form = $<HTMLFormElement>("rubric-form");
form.addEventListener("input", () => changed());
form.addEventListener("change", (event) => {
  const node = (event.target as HTMLElement).closest<HTMLElement>('[data-testid="criterion"]');
  if (node) clearCriterionError(node);
});

// ----- submit -----

/** Client-side checks first, naming the question; the server checks again and has the last word. */
function check(r: Rubric, given: Record<string, Answer>): { index: number; message: string } | null {
  for (const [index, c] of r.criteria.entries()) {
    const a = given[c.key];
    const name = `“${c.title || c.key}”`;
    if (!a?.value) return { index, message: `Choose an answer for ${name}.` };
    if (c.justification_required && !(a.justification ?? "").trim()) return { index, message: `${name} needs a written reason: say why you chose “${a.value}”.` };
  }
  return null;
}

function showFormError(message: string, index?: number): void {
  const error = $("form-error");
  error.textContent = message;
  error.hidden = false;
  if (index === undefined) return;
  const node = criterionNodes()[index];
  if (!node) return;
  node.classList.add("invalid");
  const inline = $("criterion-error", node);
  inline.textContent = message;
  inline.hidden = false;
  const hasValue = node.querySelector('input[type="radio"]:checked');
  if (hasValue) {
    setCurrent(index);
    node.querySelector("textarea")?.focus();
    node.scrollIntoView({ block: "nearest", behavior: "smooth" });
  } else focusCriterion(index);
}

async function submit(): Promise<void> {
  if (submitting || !claim || !rubric) return;
  const given = answers();
  const problem = check(rubric, given);
  if (problem) return showFormError(problem.message, problem.index);
  $("form-error").hidden = true;
  submitting = true;
  const button = $<HTMLButtonElement>("submit");
  button.disabled = true;
  button.textContent = "Submitting…";
  const trace = claim.item.trace_id;
  try {
    const body = {
      rubric: { name: rubric.name, version: rubric.version },
      answers: Object.fromEntries(
        rubric.criteria.map((c) => {
          const a = given[c.key];
          const why = (a.justification ?? "").trim();
          return [c.key, why ? { value: a.value, justification: why } : { value: a.value }];
        }),
      ),
    };
    window.clearTimeout(serverTimer);
    pendingServer = false;
    await api("POST", `/v1/queues/${enc(queue)}/items/${enc(trace)}/grade`, body);
    localStorage.removeItem(draftKey(trace));
    claim = null;
    await nextItem();
  } catch (error) {
    const e = error as ApiError;
    if (e.status === 401) return failed(e, () => void submit());
    const key = /answers\.([A-Za-z0-9_.-]+?)\.(value|justification)/.exec(e.message)?.[1];
    const index = key ? rubric.criteria.findIndex((c) => c.key === key) : -1;
    const hint = e.status === 409 ? " Your answers are still here; reload the page to get a fresh item." : "";
    showFormError(`Not submitted: ${e.message}${hint}`, index >= 0 ? index : undefined);
    if (e.status === 0 || e.status >= 500) scheduleServerSave(0);
  } finally {
    submitting = false;
    button.disabled = false;
    button.textContent = "Submit grade";
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void submit();
});

// ----- keyboard -----

const shortcuts = $<HTMLDialogElement>("shortcuts");
function toggleShortcuts(): void {
  if (shortcuts.open) shortcuts.close();
  else shortcuts.showModal();
}
$("help-button").addEventListener("click", toggleShortcuts);
// Closing the list puts the grader back on the question they were on. The close event
// comes a task after the dialog has closed and given focus back: a grader who has moved on
// in the form by then (Esc, then a key straight away) keeps their place.
shortcuts.addEventListener("close", () => {
  if ($("grade-view").hidden || !rubric || form.contains(document.activeElement)) return;
  focusCriterion(current, false);
});

function typing(target: EventTarget | null): boolean {
  const node = target as HTMLElement | null;
  if (!node) return false;
  if (node instanceof HTMLTextAreaElement) return true;
  if (node instanceof HTMLInputElement) return !["radio", "checkbox", "button", "submit"].includes(node.type);
  return node.isContentEditable;
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.isComposing) return;
  const target = event.target as HTMLElement | null;
  const grading = !$("grade-view").hidden && rubric !== null;
  if (shortcuts.open) {
    if (event.key === "?") {
      event.preventDefault();
      shortcuts.close();
    }
    return;
  }
  if (typing(target)) {
    if (!grading || !(target instanceof HTMLTextAreaElement) || !form.contains(target)) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void submit();
    } else if (event.key === "Escape") {
      event.preventDefault();
      focusCriterion(current);
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "?") {
    event.preventDefault();
    return toggleShortcuts();
  }
  if (!grading) return;
  const key = event.key;
  // Arrows move between questions only inside the form: elsewhere they scroll the page.
  const inForm = target !== null && form.contains(target);
  if (key === "j" || (key === "ArrowDown" && inForm)) {
    event.preventDefault();
    return focusCriterion(current + 1);
  }
  if (key === "k" || (key === "ArrowUp" && inForm)) {
    event.preventDefault();
    return focusCriterion(current - 1);
  }
  if (/^[0-9]$/.test(key)) {
    const index = key === "0" ? 9 : Number(key) - 1;
    if (choose(current, index)) event.preventDefault();
    return;
  }
  const c = rubric?.criteria[current];
  if ((key === "p" || key === "f") && c?.scale?.kind === "pass_fail") {
    event.preventDefault();
    choose(current, key === "p" ? 0 : 1);
    return;
  }
  if (key === "Enter" && target && form.contains(target) && !(target instanceof HTMLButtonElement)) {
    event.preventDefault();
    void submit();
  }
});

// ---------- the owner's view ----------

interface Estimate {
  value?: number;
  low?: number;
  high?: number;
  level?: number;
  reason?: string;
}

/** An estimate from any of the shapes a statistic may come in: a number, or `{value, ci: {low, high}}`. */
function estimate(x: unknown): Estimate {
  if (typeof x === "number") return { value: num(x) };
  if (!isObj(x)) return {};
  const ci = isObj(x.ci) ? x.ci : isObj(x.interval) ? x.interval : undefined;
  const pair = Array.isArray(x.ci) ? x.ci : Array.isArray(x.interval) ? x.interval : undefined;
  return {
    value: num(x.value) ?? num(x.estimate),
    low: num(ci?.low) ?? num(pair?.[0]) ?? num(x.low),
    high: num(ci?.high) ?? num(pair?.[1]) ?? num(x.high),
    level: num(ci?.level),
    reason: str(x.reason),
  };
}

const reasons: Record<string, string> = {
  no_pairable_items: "no item has two grades yet",
  no_variation: "everyone gave the same answer, so agreement beyond chance cannot be measured",
  too_few_items: "too few items",
};

function fmt(x: number | undefined): string {
  if (x === undefined) return "—";
  const text = x.toFixed(3);
  return text === "-0.000" ? "0.000" : text;
}

/** A cell showing an estimate, its exact value in data attributes. */
function estimateNode(e: Estimate, testid: string): HTMLElement {
  const node = el("span", { class: "estimate", "data-testid": testid });
  if (e.value === undefined) {
    node.textContent = "—";
    node.title = e.reason ? `Not defined: ${reasons[e.reason] ?? e.reason.replace(/_/g, " ")}` : "Not available";
    node.dataset.undefined = e.reason ?? "missing";
    return node;
  }
  node.dataset.value = String(e.value);
  node.append(el("span", { class: "value", text: fmt(e.value) }));
  if (e.low !== undefined && e.high !== undefined) {
    node.dataset.low = String(e.low);
    node.dataset.high = String(e.high);
    node.append(el("span", { class: "ci muted", text: ` [${fmt(e.low)}, ${fmt(e.high)}]` }));
    node.title = `${Math.round((e.level ?? 0.95) * 100)}% bootstrap interval ${fmt(e.low)} to ${fmt(e.high)}`;
  }
  return node;
}

function criteriaOf(agreement: unknown): Obj[] {
  if (Array.isArray(agreement)) return agreement.filter(isObj);
  if (!isObj(agreement)) return [];
  for (const key of ["criteria", "agreement", "per_criterion"]) {
    const inner = agreement[key];
    if (Array.isArray(inner)) return inner.filter(isObj);
    if (isObj(inner)) return criteriaOf(inner);
  }
  // Keyed by criterion.
  const values = Object.entries(agreement).filter(([, v]) => isObj(v));
  return values.map(([k, v]) => ({ criterion: k, ...(v as Obj) }));
}

/**
 * Whether a scorer (a judge version) may stand in for a grader: the server's verdict from
 * the fair leave-one-out comparison, in words so it does not rest on colour. None when the
 * comparison is undefined.
 */
function trustBadge(s: Obj): HTMLElement | null {
  if (typeof s.trusted !== "boolean") return null;
  const figures = ` (κ with the other graders' consensus: ${fmt(estimate(s.scorer_vs_others_mean).value)}, the graders' own: ${fmt(estimate(s.graders_vs_others_mean).value)})`;
  return s.trusted
    ? el("span", { class: "badge", "data-testid": "trusted", title: `Trusted: agrees with the graders at least as well as they agree with each other${figures}`, text: "trusted" })
    : el("span", { class: "badge bad", "data-testid": "not-trusted", title: `Not trusted: agrees with the graders less than they agree with each other${figures}`, text: "not trusted" });
}

function agreementTable(rows: Obj[]): HTMLElement {
  const head = el(
    "tr",
    {},
    ...["Criterion", "Items", "Graders", "Krippendorff's α (95% CI)", "Fleiss' κ", "Cohen's κ, each pair", "Scorers vs the graders' consensus"].map((h) => el("th", { scope: "col", text: h })),
  );
  const body = rows.map((row) => {
    const name = str(row.criterion) ?? str(row.key) ?? "";
    const pairs = arr(row.pairwise).filter(isObj);
    const scorers = arr(row.scorers).filter(isObj);
    return el(
      "tr",
      { "data-testid": "agreement-row", "data-criterion": name },
      el("th", { scope: "row", text: name }),
      el("td", { "data-testid": "items", text: num(row.items) !== undefined ? String(row.items) : "—" }),
      el("td", { "data-testid": "graders", text: num(row.graders) !== undefined ? String(row.graders) : arr(row.grader_names).length ? String(arr(row.grader_names).length) : "—" }),
      el("td", {}, estimateNode(estimate(row.krippendorff_alpha), "alpha")),
      el("td", {}, estimateNode(estimate(row.fleiss_kappa), "fleiss")),
      el(
        "td",
        {},
        pairs.length
          ? el(
              "ul",
              { class: "pairs" },
              ...pairs.map((p) =>
                el(
                  "li",
                  { "data-testid": "pair", "data-a": str(p.a) ?? "", "data-b": str(p.b) ?? "" },
                  `${str(p.a) ?? "?"} & ${str(p.b) ?? "?"}: `,
                  estimateNode(estimate(p.kappa ?? p.value), "pair-kappa"),
                ),
              ),
            )
          : "—",
      ),
      el(
        "td",
        {},
        scorers.length
          ? el(
              "ul",
              { class: "pairs" },
              ...scorers.map((s) =>
                el(
                  "li",
                  { "data-testid": "scorer", "data-scorer": str(s.scorer) ?? str(s.name) ?? "" },
                  `${str(s.scorer) ?? str(s.name) ?? "scorer"}: κ `,
                  estimateNode(estimate(s.vs_consensus ?? s.kappa), "scorer-kappa"),
                  el("span", { class: "muted", text: " · graders' κ " }),
                  estimateNode(estimate(s.graders_mean_pairwise_kappa ?? row.mean_pairwise_kappa), "graders-kappa"),
                  trustBadge(s),
                ),
              ),
            )
          : el("span", { class: "muted", text: "none linked" }),
      ),
    );
  });
  return el("table", { class: "agreement", "data-testid": "agreement-table" }, el("thead", {}, head), el("tbody", {}, ...body));
}

/** Bars on a −1…1 axis (agreement statistics can be negative), with interval whiskers. */
function agreementChart(rows: Obj[]): SVGElement | null {
  const bars: Array<{ group: string; label: string; e: Estimate; kind: string }> = [];
  for (const row of rows) {
    const name = str(row.criterion) ?? "";
    bars.push({ group: name, label: "α graders", e: estimate(row.krippendorff_alpha), kind: "alpha" });
    bars.push({ group: name, label: "Fleiss' κ", e: estimate(row.fleiss_kappa), kind: "fleiss" });
    for (const s of arr(row.scorers).filter(isObj)) {
      bars.push({ group: name, label: `${str(s.scorer) ?? "scorer"} κ`, e: estimate(s.vs_consensus), kind: "scorer" });
    }
  }
  if (!bars.length) return null;
  const rowH = 26;
  const labelW = 260;
  const plotW = 420;
  const top = 24;
  const height = top + bars.length * rowH + 10;
  const x = (v: number) => labelW + ((Math.max(-1, Math.min(1, v)) + 1) / 2) * plotW;
  const chart = svg("svg", { viewBox: `0 0 ${labelW + plotW + 60} ${height}`, role: "img", class: "chart", "data-testid": "agreement-chart" });
  chart.append(svg("title", {}, "Agreement per criterion: Krippendorff's alpha and Fleiss' kappa of the graders, and each scorer's kappa with their consensus"));
  for (const tick of [-1, -0.5, 0, 0.5, 1]) {
    chart.append(svg("line", { x1: x(tick), x2: x(tick), y1: top - 6, y2: height - 6, class: tick === 0 ? "axis zero" : "axis" }));
    chart.append(svg("text", { x: x(tick), y: top - 10, "text-anchor": "middle", class: "tick" }, String(tick)));
  }
  bars.forEach((bar, i) => {
    const y = top + i * rowH;
    chart.append(svg("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end", class: "bar-label" }, `${bar.group} · ${bar.label}`));
    if (bar.e.value === undefined) {
      chart.append(svg("text", { x: x(0) + 6, y: y + rowH / 2 + 4, class: "tick" }, "not defined"));
      return;
    }
    const from = x(Math.min(0, bar.e.value));
    const to = x(Math.max(0, bar.e.value));
    const rect = svg("rect", { x: from, y: y + 5, width: Math.max(1, to - from), height: rowH - 10, rx: 3, class: `chart-bar ${bar.kind}`, "data-value": bar.e.value });
    rect.append(svg("title", {}, `${bar.group} ${bar.label}: ${fmt(bar.e.value)}`));
    chart.append(rect);
    if (bar.e.low !== undefined && bar.e.high !== undefined) {
      chart.append(svg("line", { x1: x(bar.e.low), x2: x(bar.e.high), y1: y + rowH / 2, y2: y + rowH / 2, class: "whisker" }));
    }
    chart.append(svg("text", { x: x(1) + 6, y: y + rowH / 2 + 4, class: "bar-value" }, fmt(bar.e.value)));
  });
  return chart;
}

function progressNode(detail: Obj): HTMLElement {
  const p = isObj(detail.progress) ? detail.progress : detail;
  const slots = num(p.slots) ?? num(p.total);
  const done = num(p.done) ?? 0;
  const held = num(p.held);
  const items = num(p.items);
  const perGrader = isObj(p.per_grader) ? p.per_grader : isObj(p.graders) ? p.graders : isObj(p.by_grader) ? p.by_grader : null;
  const pct = slots ? Math.round((done / slots) * 100) : 0;
  const summary = [
    items !== undefined ? `${items} ${items === 1 ? "item" : "items"}` : "",
    slots !== undefined ? `${done} of ${slots} grades done` : `${done} grades done`,
    held ? `${held} being graded now` : "",
  ].filter(Boolean);
  return el(
    "div",
    { class: "queue-progress", "data-testid": "queue-progress", "data-done": String(done), "data-slots": slots !== undefined ? String(slots) : undefined },
    el("div", { class: "bar wide", "aria-hidden": "true" }, el("span", { class: "fill", style: `width:${pct}%` })),
    el("p", { text: summary.join(" · ") }),
    perGrader
      ? el(
          "ul",
          { class: "graders" },
          ...Object.entries(perGrader).map(([g, n]) => el("li", { "data-testid": "grader-done", "data-grader": g }, el("strong", { text: g }), `: ${num(n) ?? (isObj(n) ? num(n.done) ?? "?" : "?")} done`)),
        )
      : null,
  );
}

async function ownerView(): Promise<void> {
  show("owner");
  const box = $("owner-view");
  box.replaceChildren(el("h1", { text: "Queues" }), el("p", { class: "muted", text: "Loading…" }));
  try {
    const listing = await api<unknown>("GET", "/v1/queues");
    const queues = (Array.isArray(listing) ? listing : isObj(listing) ? arr(listing.queues) : []).filter(isObj);
    const cards: HTMLElement[] = [];
    for (const q of queues) {
      const spec = isObj(q.queue) ? q.queue : isObj(q.spec) ? q.spec : q;
      const name = str(spec.name) ?? "";
      if (!name) continue;
      const card = el("section", { class: "card queue", "data-testid": "owner-queue", "data-queue": name });
      cards.push(card);
      const [detail, agreement] = await Promise.allSettled([api<Obj>("GET", `/v1/queues/${enc(name)}`), api<unknown>("GET", `/v1/queues/${enc(name)}/agreement`)]);
      const rubricRef = isObj(spec.rubric) ? `${str(spec.rubric.name) ?? ""} version ${num(spec.rubric.version) ?? "?"}` : "";
      card.append(
        el("h2", {}, str(spec.title) || name, str(spec.title) ? el("span", { class: "muted", text: ` (${name})` }) : null),
        el("p", { class: "muted", text: [rubricRef && `Rubric ${rubricRef}`, arr(spec.graders).length ? `graders: ${arr(spec.graders).join(", ")}` : "", spec.blind ? "blind" : ""].filter(Boolean).join(" · ") }),
      );
      if (detail.status === "fulfilled" && isObj(detail.value)) card.append(progressNode(detail.value));
      else card.append(el("p", { class: "error", text: (detail as PromiseRejectedResult).reason?.message ?? "Progress unavailable" }));
      card.append(el("h3", { text: "Agreement" }));
      if (agreement.status === "fulfilled") {
        const rows = criteriaOf(agreement.value);
        const measured = rows.some((r) => estimate(r.krippendorff_alpha).value !== undefined || estimate(r.fleiss_kappa).value !== undefined);
        if (!rows.length || !measured)
          card.append(el("p", { class: "muted", "data-testid": "no-agreement", text: "Not measured yet: agreement needs items graded by at least two graders." }));
        else {
          card.append(agreementTable(rows));
          const chart = agreementChart(rows);
          if (chart) card.append(el("figure", { class: "chart-box" }, chart, el("figcaption", { class: "muted", text: "−1 is systematic disagreement, 0 is chance, 1 is perfect agreement; lines show the 95% intervals." })));
        }
      } else card.append(el("p", { class: "error", "data-testid": "agreement-error", text: (agreement.reason as Error)?.message ?? "Agreement unavailable" }));
    }
    box.replaceChildren(
      el("h1", { text: "Queues" }),
      ...(cards.length ? cards : [el("p", { class: "muted", "data-testid": "no-queues", text: "There are no queues yet." })]),
    );
    box.dataset.loaded = "true";
  } catch (error) {
    failed(error, () => void ownerView());
  }
}

// ---------- start ----------

async function start(): Promise<void> {
  if (ownerMode) return ownerView();
  pruneDrafts();
  return nextItem();
}

{
  const given = hash.get("token") ?? sessionStorage.getItem(TOKEN_KEY) ?? "";
  const problem = given ? signIn(given) : null;
  if (!given || problem) showSignIn(problem ?? undefined);
  else void start();
}
