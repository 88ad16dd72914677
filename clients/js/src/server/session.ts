// The agent side of a session, for server code (Node 20, fetch-based): appends that apply
// exactly once, and control (cancel, steer, ...) learned from append responses and from a
// long-poll follower. The same wire protocol as the Rust SDK's `Session`.
import { controlKind } from "../events.js";
import type { EventBody } from "../events.js";
import { MessagesView } from "../messages.js";
import type { ChatMessage } from "../messages.js";
import { advance, START } from "../offsets.js";

export interface SessionOptions {
  /** agentwire's base URL, e.g. `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** A `writer` token covering the session; none under `agentwire dev --insecure`. */
  token?: string;
  /** Stamped on events that have no `agent` (a sub-agent's path, e.g. `planner/search-1`). */
  agent?: string;
  /** For tests and runtimes without a global `fetch`. */
  fetch?: typeof fetch;
}

/** A control event an agent must act on. */
export interface ControlEvent {
  /** Where it sits in the session: a `control.ack` names it as `ref`. */
  offset: string;
  /** `cancel`, `steer`, `pause`, `resume`, or a kind appended over HTTP. */
  kind: string;
  /** Its `data` (`{}` when it has none); a cancel's `message_id` names the reply it stops. */
  data: Record<string, unknown>;
}

/** Events read over HTTP, each with its offset, and where to read on from. */
export interface Page {
  events: Array<{ offset: string; event: EventBody }>;
  next: string;
}

/** The chat so far, and the user messages still waiting for an answer. */
export interface Conversation {
  /** Every message in the order it started (see `MessagesView`). */
  messages: ChatMessage[];
  /** Ended user messages without a finished reply (a reply whose writer died counts as none). */
  unanswered: ChatMessage[];
  /** The offset after the last event read. */
  next: string;
}

/** A refused request: `status` is the HTTP status, `message` the server's text. */
export class SessionError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "SessionError";
  }
}

/** Retries of one append on network errors and 5xx; the producer headers make them safe. */
const RETRIES = 8;
const REQUEST_TIMEOUT_MS = 30_000;
/** A long-poll answers within the server's timeout (20 s by default); wait a little longer. */
const LONG_POLL_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `n` random bytes as hex. */
export function randomHex(bytes: number): string {
  const buffer = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(buffer, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Opens (creating if needed) a JSON session for an agent to write into. */
export function openSession(name: string, options: SessionOptions): Promise<SessionWriter> {
  return SessionWriter.open(name, options);
}

/**
 * An agent's handle on a session. Appends go one at a time through one idempotent producer
 * (`Producer-Id`/`-Epoch`/`-Seq`): a retry after a lost response reuses its sequence
 * number, so the server applies each append exactly once.
 */
export class SessionWriter {
  readonly name: string;
  private readonly options: SessionOptions;
  private readonly fetcher: typeof fetch;
  private producerId = `js-${randomHex(8)}`;
  private seq = 0;
  /** The tail after this writer's last append (or at open): control is asked for since then. */
  private seen: string;
  /** Appends run one after another: the sequence numbers must reach the server in order. */
  private queue: Promise<unknown> = Promise.resolve();
  private listeners = new Set<(control: ControlEvent) => void>();
  /** Control offsets already handed out, whichever path (append response, follower) brought them. */
  private published = new Set<string>();
  private watchers = 0;
  private follower?: AbortController;

  private constructor(name: string, options: SessionOptions) {
    this.name = name;
    this.options = { ...options, baseUrl: options.baseUrl.replace(/\/+$/, "") };
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
    this.seen = START;
  }

  /** Opens (creating if needed) the session; see {@link openSession}. */
  static async open(name: string, options: SessionOptions): Promise<SessionWriter> {
    const session = new SessionWriter(name, options);
    const response = await session.request("PUT", "", { headers: { "content-type": "application/json" } });
    await refuseUnlessOk(response);
    session.seen = nextOffset(response);
    return session;
  }

  /** The session's tail after this writer's last append (or at open). */
  get position(): string {
    return this.seen;
  }

  /** Appends events exactly once; events without an `agent` get this writer's. */
  append(events: EventBody[]): Promise<{ tail: string }> {
    const agent = this.options.agent;
    const body = JSON.stringify(agent ? events.map((e) => (e.agent === undefined ? { ...e, agent } : e)) : events);
    const run = this.queue.then(() => this.appendNow(body));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async appendNow(body: string): Promise<{ tail: string }> {
    let response: Response | undefined;
    for (let attempt = 0; ; ) {
      let failure: unknown;
      try {
        response = await this.request("POST", "", {
          headers: {
            "content-type": "application/json",
            "producer-id": this.producerId,
            "producer-epoch": "0",
            "producer-seq": String(this.seq),
            "agentwire-control-since": this.seen,
          },
          body,
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch (error) {
        failure = error;
        response = undefined;
      }
      if (response && response.status < 500) break;
      if (attempt >= RETRIES) {
        // Its fate is unknown (the server may have applied it): its sequence number is never
        // reused for other events, which the server would take for its duplicate and drop.
        this.producerId = `js-${randomHex(8)}`;
        this.seq = 0;
        if (response) break;
        throw failure;
      }
      await response?.body?.cancel().catch(() => undefined);
      attempt += 1;
      await sleep(25 << Math.min(attempt, 6));
    }
    await refuseUnlessOk(response);
    const tail = nextOffset(response);
    this.seq += 1;
    this.seen = tail;
    // A 200 with `agentwire-control` lists the control that arrived since our last append;
    // a duplicate (204) or a plain 200 has no body worth reading.
    if (response.status === 200 && response.headers.has("agentwire-control")) {
      const body = (await response.json().catch(() => ({}))) as { control?: Array<{ offset?: unknown; event?: unknown }> };
      for (const item of body.control ?? []) {
        if (typeof item.offset === "string") this.publish(item.offset, item.event as EventBody);
      }
    } else {
      await response.body?.cancel().catch(() => undefined);
    }
    return { tail };
  }

  /** Acknowledges control: `cut` is the offset where this agent's output stopped. */
  ack(control: ControlEvent, cut: string): Promise<{ tail: string }> {
    return this.append([{ type: "control.ack", data: { ref: control.offset, kind: control.kind, cut } }]);
  }

  /** Reads one page from `from` (`-1` or an offset); `live` waits (long-poll) for events. */
  async read(from: string, options: { live?: boolean; signal?: AbortSignal } = {}): Promise<Page> {
    const query = `?offset=${encodeURIComponent(from)}${options.live ? "&live=long-poll" : ""}`;
    const timeout = AbortSignal.timeout(options.live ? LONG_POLL_TIMEOUT_MS : REQUEST_TIMEOUT_MS);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const response = await this.request("GET", query, { signal });
    await refuseUnlessOk(response);
    const next = nextOffset(response);
    const start = from === "-1" ? START : from;
    const bodies = response.status === 204 ? [] : ((await response.json()) as EventBody[]);
    return { events: bodies.map((event, i) => ({ offset: advance(start, i), event })), next };
  }

  /** Reads every event from `from` to the current tail. */
  async readAll(from = "-1"): Promise<Page> {
    const events: Page["events"] = [];
    for (;;) {
      const page = await this.read(from);
      events.push(...page.events);
      if (page.events.length === 0 || page.next === from) return { events, next: page.next };
      from = page.next;
    }
  }

  /** The chat so far and what is unanswered (read from the start of the session). */
  async conversation(): Promise<Conversation> {
    const { events, next } = await this.readAll();
    return { ...conversationOf(events.map((e) => ({ session: this.name, ...e }))), next };
  }

  /** Calls `listener` with each control event once, as it arrives. */
  onControl(listener: (control: ControlEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Follows the session (long-poll) so control arrives while this writer is not appending
   * (a model thinking before its first token). Counted: the follower stops when every
   * caller has called the returned function.
   */
  watchControl(): () => void {
    this.watchers += 1;
    if (!this.follower) {
      this.follower = new AbortController();
      void this.follow(this.follower.signal);
    }
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      this.watchers -= 1;
      if (this.watchers === 0) {
        this.follower?.abort();
        this.follower = undefined;
      }
    };
  }

  /** Stops the control follower, whoever asked for it. */
  close(): void {
    this.watchers = 0;
    this.follower?.abort();
    this.follower = undefined;
  }

  private async follow(signal: AbortSignal): Promise<void> {
    let at = this.seen;
    while (!signal.aborted) {
      try {
        const page = await this.read(at, { live: true, signal });
        for (const { offset, event } of page.events) this.publish(offset, event);
        at = page.next;
      } catch (error) {
        if (signal.aborted || (error instanceof SessionError && error.status === 404)) return;
        await sleep(200);
      }
    }
  }

  private publish(offset: string, event: EventBody | undefined): void {
    if (!event || typeof event.type !== "string") return;
    const kind = controlKind(event.type);
    if (kind === undefined || this.published.has(offset)) return;
    this.published.add(offset);
    const data = typeof event.data === "object" && event.data !== null && !Array.isArray(event.data) ? event.data : {};
    for (const listener of [...this.listeners]) listener({ offset, kind, data });
  }

  private request(method: string, query: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.options.token) headers.set("authorization", `Bearer ${this.options.token}`);
    const url = `${this.options.baseUrl}/v1/stream/${encodeURIComponent(this.name)}${query}`;
    return this.fetcher(url, { ...init, method, headers });
  }
}

/**
 * The messages in `events` (a session from its start) and the user messages among them that
 * ended and have no finished reply (a `message.start` naming them as `parent`, then its
 * `message.end`): a reply a dead writer left unfinished is answered again, a finished one
 * never twice.
 */
export function conversationOf(events: Array<{ session: string; offset: string; event: EventBody }>): Omit<Conversation, "next"> {
  const view = new MessagesView();
  for (const event of events) view.apply(event);
  const messages = view.messages;
  const answered = new Set(
    messages.filter((m) => m.role !== "user" && (m.status === "done" || m.status === "stopped") && m.parent).map((m) => m.parent),
  );
  const unanswered = messages.filter((m) => m.role === "user" && m.status === "done" && !answered.has(m.id));
  return { messages, unanswered };
}

/**
 * The chat as AI SDK model messages (`streamText({ messages })`), up to and including the
 * message `upTo` (default: all): finished text messages only, replies of sub-agents left out.
 */
export function modelMessages(messages: ChatMessage[], upTo?: string): Array<{ role: "user" | "assistant"; content: string }> {
  const end = upTo === undefined ? messages.length : messages.findIndex((m) => m.id === upTo) + 1;
  return messages
    .slice(0, end > 0 ? end : messages.length)
    .filter((m) => m.status === "done" || m.status === "stopped")
    .filter((m) => m.role === "user" || (m.role === "assistant" && !m.agent?.includes("/")))
    .filter((m) => m.text.length > 0)
    .map((m) => ({ role: m.role === "user" ? "user" : "assistant", content: m.text }));
}

async function refuseUnlessOk(response: Response): Promise<void> {
  if (response.ok) return;
  const message = (await response.text().catch(() => "")).trim();
  throw new SessionError(response.status, message || `HTTP ${response.status}`);
}

function nextOffset(response: Response): string {
  const next = response.headers.get("stream-next-offset");
  if (!next) throw new SessionError(response.status, "a response without Stream-Next-Offset");
  return next;
}
