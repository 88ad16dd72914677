import { advance, START } from "./offsets.js";
import { Ordering } from "./ordering.js";
import type { ControlKind } from "./events.js";
import type { ConnectionState, EventBody, Member, SessionEvent } from "./types.js";

export interface ClientOptions {
  /** agentwire's base URL, e.g. `http://127.0.0.1:8787` (default: this page's origin). */
  url?: string;
  /** A token covering the sessions this client follows. */
  token?: string;
  /** Where resume offsets survive page reloads (default: `localStorage` when present). */
  storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
  /** Reconnect backoff: the first delay and the cap, in ms (full jitter in between). */
  backoff?: { minMs: number; maxMs: number };
  /** Reconnect proactively after this long (API Gateway closes sockets at 2 h). */
  maxConnectionAgeMs?: number;
  /** Ping this often; a socket silent for two intervals is replaced. */
  heartbeatMs?: number;
  /** For tests and non-browser runtimes. */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

/** Where a subscription starts: `-1` (the beginning), `now`, an offset, or `stored`. */
export type From = string;

export interface Subscription {
  readonly session: string;
  /** The offset after the last event handed out: where a resume starts. */
  readonly next: string;
  unsubscribe(): void;
}

interface SubscriptionState {
  session: string;
  handler: (event: SessionEvent) => void;
  /** `undefined` until the server says where a `-1`/`now` subscription starts. */
  ordering?: Ordering;
  from: From;
  filling: boolean;
  persist: boolean;
  /** Frames pushed before the server said where the subscription starts. */
  early: Array<Array<{ offset: string; event: EventBody }>>;
}

interface Pending {
  resolve: (frame: any) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** An error frame from the server. */
export class AgentwireError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "AgentwireError";
  }
}

const REQUEST_TIMEOUT_MS = 15_000;

/**
 * A connection to agentwire's WebSocket API that survives everything a network does:
 * subscriptions resume from their last offset after any reconnect (jittered backoff, also
 * before API Gateway's 2 h limit, and across reloads with `storage`), events come out in
 * order and once, and gaps are filled over HTTP.
 */
export class AgentwireClient {
  private readonly url: string;
  private readonly token?: string;
  private readonly storage: ClientOptions["storage"];
  private readonly backoff: { minMs: number; maxMs: number };
  private readonly maxAgeMs: number;
  private readonly heartbeatMs: number;
  private readonly WS: typeof WebSocket;
  private readonly fetcher: typeof fetch;

  private socket?: WebSocket;
  private attempts = 0;
  private closedByUser = false;
  private lastHeard = 0;
  private timers: Array<ReturnType<typeof setTimeout>> = [];
  private requestId = 0;
  private pending = new Map<number, Pending>();
  private subs = new Set<SubscriptionState>();
  /** Subscribe requests in flight, by request id: their `subscribed` reply says where they start. */
  private subscribing = new Map<number, SubscriptionState>();
  private stateListeners = new Set<(state: ConnectionState) => void>();
  private _state: ConnectionState = "closed";

  constructor(options: ClientOptions = {}) {
    const origin = typeof location !== "undefined" ? location.origin : "http://127.0.0.1:8787";
    this.url = (options.url ?? origin).replace(/\/$/, "");
    this.token = options.token;
    this.storage =
      options.storage !== undefined ? options.storage : typeof localStorage !== "undefined" ? localStorage : null;
    this.backoff = options.backoff ?? { minMs: 250, maxMs: 10_000 };
    this.maxAgeMs = options.maxConnectionAgeMs ?? 110 * 60_000;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => this.reconnectNow());
      // Offline: the socket is as good as dead. Drop it now, so nothing is half-delivered,
      // and resume by offset when the network is back.
      window.addEventListener("offline", () => {
        const socket = this.socket;
        this.socket = undefined;
        socket?.close();
        this.failPending(new Error("offline"));
        this.clearTimers();
        this.setState("offline");
      });
    }
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Calls `listener` on every connection state change; returns an unsubscribe. */
  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this._state);
    return () => this.stateListeners.delete(listener);
  }

  /** Opens the connection (subscriptions made before or after are kept across reconnects). */
  connect(): void {
    this.closedByUser = false;
    if (!this.socket) this.open();
  }

  /** Closes for good. Nothing is cancelled: agents keep running. */
  close(): void {
    this.closedByUser = true;
    this.clearTimers();
    this.socket?.close(1000, "client closed");
    this.socket = undefined;
    this.failPending(new Error("client closed"));
    this.setState("closed");
  }

  /**
   * Follows `session` from `from` and hands every event to `handler` once, in order.
   * `stored` resumes from the offset saved by a previous page (or `-1` when none).
   */
  subscribe(session: string, handler: (event: SessionEvent) => void, from: From = "-1"): Subscription {
    const persist = from === "stored";
    if (persist) from = this.storage?.getItem(storageKey(session)) ?? "-1";
    const state: SubscriptionState = {
      session,
      handler,
      from,
      filling: false,
      persist,
      early: [],
      ordering: from !== "-1" && from !== "now" ? new Ordering(from) : undefined,
    };
    this.subs.add(state);
    if (this.socket?.readyState === this.WS.OPEN) this.sendSubscribe(state);
    this.connect();
    const client = this;
    return {
      session,
      get next() {
        return state.ordering?.next ?? state.from;
      },
      unsubscribe() {
        client.subs.delete(state);
        const others = [...client.subs].some((s) => s.session === session);
        if (!others) client.trySend({ action: "unsubscribe", session });
      },
    };
  }

  /** Sends a user message; resolves with the server's ack (`offset`, `message_id`). */
  send(session: string, text: string): Promise<{ offset: string; message_id: string }> {
    return this.request({ action: "send", session, text });
  }

  /** Sends control (`cancel`, `steer`, `pause`, `resume`); resolves with its offset. */
  control(session: string, kind: ControlKind, data: object = {}): Promise<{ offset: string }> {
    return this.request({ action: "control", session, kind, data });
  }

  /** Stops the agent's reply (all of them, or the one with `messageId`). */
  cancel(session: string, messageId?: string): Promise<{ offset: string }> {
    return this.control(session, "cancel", messageId ? { message_id: messageId } : {});
  }

  /** Redirects the agent mid-reply. */
  steer(session: string, instruction: string): Promise<{ offset: string }> {
    return this.control(session, "steer", { instruction });
  }

  /** Who follows `session` now. */
  async presence(session: string): Promise<Member[]> {
    const reply = await this.request({ action: "presence", session });
    return reply.members as Member[];
  }

  /** Reads events over HTTP from `from` (one page). */
  async read(session: string, from: string): Promise<{ events: Array<{ offset: string; event: EventBody }>; next: string }> {
    const headers: Record<string, string> = this.token ? { authorization: `Bearer ${this.token}` } : {};
    const response = await this.fetcher(`${this.url}/v1/stream/${encodeURIComponent(session)}?offset=${from}`, { headers });
    if (!response.ok) throw new AgentwireError(String(response.status), (await response.text()).trim());
    const next = response.headers.get("stream-next-offset") ?? from;
    const start = from === "-1" ? START : from;
    const bodies = (await response.json()) as EventBody[];
    return { events: bodies.map((event, i) => ({ offset: advance(start, i), event })), next };
  }

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    this._state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  private open(): void {
    this.clearTimers();
    this.setState(this.attempts === 0 ? "connecting" : "reconnecting");
    const ws = this.url.replace(/^http/, "ws");
    const url = `${ws}/ws${this.token ? `?token=${encodeURIComponent(this.token)}` : ""}`;
    const socket = new this.WS(url);
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempts = 0;
      this.lastHeard = Date.now();
      this.setState("open");
      this.subscribing.clear();
      for (const state of this.subs) this.sendSubscribe(state);
      this.later(() => this.reconnectNow(), this.maxAgeMs);
      this.heartbeat(socket);
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      this.onFrame(JSON.parse(String(message.data)));
    };
    socket.onclose = () => {
      if (socket !== this.socket) return;
      this.socket = undefined;
      this.failPending(new Error("connection lost"));
      if (this.closedByUser) return;
      this.scheduleReconnect();
    };
    socket.onerror = () => socket.close();
  }

  private heartbeat(socket: WebSocket): void {
    const beat = () => {
      if (socket !== this.socket) return;
      if (Date.now() - this.lastHeard > 2 * this.heartbeatMs) return this.reconnectNow();
      this.trySend({ action: "ping" });
      this.later(beat, this.heartbeatMs);
    };
    this.later(beat, this.heartbeatMs);
  }

  private scheduleReconnect(): void {
    const cap = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** this.attempts);
    const delay = Math.random() * cap;
    this.attempts += 1;
    this.setState(typeof navigator !== "undefined" && navigator.onLine === false ? "offline" : "reconnecting");
    this.later(() => this.open(), delay);
  }

  /** Drops the socket and reconnects at once; subscriptions resume by offset. */
  reconnectNow(): void {
    if (this.closedByUser) return;
    const old = this.socket;
    this.socket = undefined;
    old?.close();
    this.failPending(new Error("reconnecting"));
    this.attempts = 0;
    this.open();
  }

  /** Keeps a timer; in Node it must not hold the process open on its own. */
  private later(fn: () => void, ms: number): void {
    const timer = setTimeout(fn, ms) as ReturnType<typeof setTimeout> & { unref?: () => void };
    timer.unref?.();
    this.timers.push(timer);
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
  }

  private sendSubscribe(state: SubscriptionState): void {
    const from = state.ordering?.next ?? state.from;
    const id = ++this.requestId;
    this.subscribing.set(id, state);
    this.trySend({ action: "subscribe", session: state.session, offset: from, id });
  }

  private trySend(frame: object): boolean {
    if (this.socket?.readyState !== this.WS.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  private async request(frame: Record<string, unknown>): Promise<any> {
    this.connect();
    await this.whenOpen();
    const id = ++this.requestId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${frame.action} timed out`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      if (!this.trySend({ ...frame, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Error("not connected"));
      }
    });
  }

  private whenOpen(): Promise<void> {
    if (this.socket?.readyState === this.WS.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new Error("not connected"));
      }, REQUEST_TIMEOUT_MS);
      const stop = this.onState((state) => {
        if (state === "open") {
          clearTimeout(timer);
          queueMicrotask(() => stop());
          resolve();
        }
      });
    });
  }

  private failPending(error: Error): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
  }

  private onFrame(frame: any): void {
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const pending = this.pending.get(frame.id)!;
      this.pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(new AgentwireError(frame.code, frame.message));
      else pending.resolve(frame);
      return;
    }
    if (frame.id !== undefined && this.subscribing.has(frame.id)) {
      const state = this.subscribing.get(frame.id)!;
      this.subscribing.delete(frame.id);
      if (frame.type === "subscribed" && !state.ordering) {
        state.ordering = new Ordering(frame.from);
        for (const events of state.early.splice(0)) this.deliver(state, events);
      }
      return;
    }
    for (const state of this.subs) {
      if (state.session !== frame.session) continue;
      if (frame.type === "events") this.deliver(state, frame.events);
      // Too big for a frame: treat it as a gap of one event and fetch it.
      if (frame.type === "oversize") this.deliver(state, [], { from: frame.offset, to: frame.next });
    }
  }

  private deliver(
    state: SubscriptionState,
    events: Array<{ offset: string; event: EventBody }>,
    extraGap?: { from: string; to: string },
  ): void {
    if (!state.ordering) {
      state.early.push(events);
      return;
    }
    const absorbed = state.ordering.absorb(events);
    this.handOut(state, absorbed.events);
    const gap = absorbed.gap ?? (extraGap && extraGap.from >= state.ordering.next ? extraGap : undefined);
    if (gap && !state.filling) void this.fill(state, gap.to);
  }

  /** Fetches over HTTP until `until` is handed out (or the session ends). */
  private async fill(state: SubscriptionState, until: string): Promise<void> {
    state.filling = true;
    try {
      while (state.ordering && state.ordering.next < until && this.subs.has(state)) {
        const page = await this.read(state.session, state.ordering.next);
        if (page.events.length === 0) break;
        this.handOut(state, state.ordering.fill(page.events).events);
      }
    } catch {
      // The next frame or reconnect tries again.
    } finally {
      state.filling = false;
    }
  }

  private handOut(state: SubscriptionState, events: Array<{ offset: string; event: EventBody }>): void {
    for (const { offset, event } of events) {
      state.handler({ session: state.session, offset, event });
    }
    if (events.length > 0 && state.persist && state.ordering) {
      this.storage?.setItem(storageKey(state.session), state.ordering.next);
    }
  }
}

function storageKey(session: string): string {
  return `agentwire:next:${session}`;
}
