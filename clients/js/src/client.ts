import { advance, START } from "./offsets.js";
import { Ordering } from "./ordering.js";
import type { ControlKind } from "./events.js";
import type { ConnectionState, EventBody, Member, SessionEvent } from "./types.js";

/**
 * A token covering the sessions a client follows, or a provider of fresh ones. A provider is
 * called before the first connection, shortly before each token's `exp` (30 s or a tenth of
 * its lifetime before, whichever is less), and whenever the server says the token expired;
 * the client then reconnects at once and resumes every subscription from its last offset.
 * A plain string cannot be renewed: when it expires the client stops in state `expired`
 * (see {@link AgentwireClient.setToken}).
 */
export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** agentwire's base URL, e.g. `http://127.0.0.1:8787` (default: this page's origin). */
  url?: string;
  /** A token, or a provider of fresh tokens (see {@link TokenSource}). */
  token?: TokenSource;
  /** Where resume offsets survive page reloads (default: `localStorage` when present). */
  storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
  /** Reconnect backoff: the first delay and the cap, in ms (full jitter in between). */
  backoff?: { minMs: number; maxMs: number };
  /** Reconnect proactively after this long (API Gateway closes sockets at 2 h). */
  maxConnectionAgeMs?: number;
  /**
   * Ping this often; a socket silent for two intervals is replaced, and a session whose
   * tail in two pongs in a row is beyond the last event seen is resubscribed.
   */
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
  /** The session's tail at the last pong, when it was beyond what this subscription had seen. */
  behindAt?: string;
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
/** Close codes agentwire sends (locally; API Gateway cannot, so there the frames tell). */
const CLOSE_TOKEN_EXPIRED = 4001;
const CLOSE_BEHIND = 4002;
/** Renew a provider's token this long before its `exp`, at most (else a tenth of its lifetime). */
const RENEW_BEFORE_MS = 30_000;
/** Never renew more often than this, even if a provider keeps handing out stale tokens. */
const MIN_RENEW_DELAY_MS = 1_000;

/**
 * A connection to agentwire's WebSocket API that survives everything a network does:
 * subscriptions resume from their last offset after any reconnect (jittered backoff, also
 * before API Gateway's 2 h limit, and across reloads with `storage`), events come out in
 * order and once, and gaps are filled over HTTP.
 */
export class AgentwireClient {
  private readonly url: string;
  private tokenSource?: TokenSource;
  /** The token in use (a provider's latest). */
  private token?: string;
  /** When the provider gave `token` (ms): its lifetime sets how early it is renewed. */
  private tokenFetchedAt = 0;
  private readonly storage: ClientOptions["storage"];
  private readonly backoff: { minMs: number; maxMs: number };
  private readonly maxAgeMs: number;
  private readonly heartbeatMs: number;
  private readonly WS: typeof WebSocket;
  private readonly fetcher: typeof fetch;

  private socket?: WebSocket;
  /** Bumped by every open and stop: a token fetch that finishes late knows it is stale. */
  private generation = 0;
  /** A token is being fetched for the next socket. */
  private opening = false;
  /** Immediate reconnects (renewal, "behind") since the server last answered; past the first, back off. */
  private quick = 0;
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
  private errorListeners = new Set<(error: AgentwireError) => void>();
  private _state: ConnectionState = "closed";

  constructor(options: ClientOptions = {}) {
    const origin = typeof location !== "undefined" ? location.origin : "http://127.0.0.1:8787";
    this.url = (options.url ?? origin).replace(/\/$/, "");
    this.tokenSource = options.token;
    if (typeof options.token === "string") this.token = options.token;
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
        if (this.closedByUser || this._state === "expired") return;
        const socket = this.socket;
        this.socket = undefined;
        this.generation += 1;
        this.opening = false;
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

  /**
   * Calls `listener` with errors that are not the answer to a request: `token_expired` (a
   * plain token expired; the state is then `expired`) and `token_provider_failed` (the
   * provider threw; the client retries with backoff). Returns an unsubscribe.
   */
  onError(listener: (error: AgentwireError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /**
   * Replaces the token (or provider) and, if connected or `expired`, reconnects with it at
   * once; subscriptions resume from their last offsets.
   */
  setToken(token: TokenSource): void {
    this.tokenSource = token;
    this.token = typeof token === "string" ? token : undefined;
    if (this.closedByUser) return;
    if (this._state === "expired") {
      this.attempts = 0;
      this.open();
    } else if (this.socket || this.opening) {
      this.reconnectNow();
    }
  }

  /**
   * Opens the connection (subscriptions made before or after are kept across reconnects).
   * Does nothing while `expired`: give it a new token with {@link setToken}.
   */
  connect(): void {
    this.closedByUser = false;
    if (!this.socket && !this.opening && this._state !== "expired") this.open();
  }

  /** Closes for good. Nothing is cancelled: agents keep running. */
  close(): void {
    this.closedByUser = true;
    this.generation += 1;
    this.opening = false;
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
    const token = await this.currentToken(false);
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
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

  private emitError(error: AgentwireError): void {
    for (const listener of this.errorListeners) listener(error);
  }

  /** Gets a token (from the provider when `renew`, when there is none yet, or it expires soon), then opens a socket. */
  private open(renew = false): void {
    this.clearTimers();
    this.setState(this.attempts === 0 ? "connecting" : "reconnecting");
    const generation = ++this.generation;
    this.opening = true;
    const token = withTimeout(this.currentToken(renew), REQUEST_TIMEOUT_MS, "no token within 15 s");
    token.then(
      (token) => {
        if (generation !== this.generation || this.closedByUser) return;
        this.opening = false;
        // A plain token past its `exp` can only be refused (an upgrade refusal looks like
        // any network failure), so stop instead of retrying forever.
        const exp = token !== undefined ? tokenExpiry(token) : undefined;
        if (typeof this.tokenSource === "string" && exp !== undefined && exp * 1000 <= Date.now()) {
          return this.expire(`token expired at ${exp} (Unix seconds): give the client a fresh token`);
        }
        this.openSocket(token);
      },
      (error: unknown) => {
        if (generation !== this.generation || this.closedByUser) return;
        this.opening = false;
        const reason = error instanceof Error ? error.message : String(error);
        this.emitError(new AgentwireError("token_provider_failed", `token provider failed: ${reason}`));
        this.scheduleReconnect();
      },
    );
  }

  private openSocket(token: string | undefined): void {
    const ws = this.url.replace(/^http/, "ws");
    const url = `${ws}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    const socket = new this.WS(url);
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempts = 0;
      this.lastHeard = Date.now();
      this.setState("open");
      this.subscribing.clear();
      for (const state of this.subs) {
        state.behindAt = undefined;
        this.sendSubscribe(state);
      }
      const renewIn = this.renewDelay();
      this.later(() => this.reconnectNow(), Math.min(this.maxAgeMs, renewIn ?? Infinity));
      this.heartbeat(socket);
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      this.onFrame(JSON.parse(String(message.data)));
    };
    socket.onclose = (event?: CloseEvent) => {
      if (socket !== this.socket) return;
      this.socket = undefined;
      if (this.closedByUser) return this.failPending(new Error("connection lost"));
      if (event?.code === CLOSE_TOKEN_EXPIRED) return this.tokenExpired(event.reason);
      // Fell behind: what was not delivered is still in the log, from our last offsets.
      if (event?.code === CLOSE_BEHIND) return this.reconnectQuickly(false);
      this.failPending(new Error("connection lost"));
      this.scheduleReconnect();
    };
    socket.onerror = () => socket.close();
  }

  /** The token to present: a plain token as is, a provider's when fresh enough, else a new one. */
  private async currentToken(renew: boolean): Promise<string | undefined> {
    const source = this.tokenSource;
    if (typeof source !== "function") return source;
    if (renew || this.token === undefined || this.expiresSoon()) {
      const token = await source();
      if (typeof token !== "string" || token === "") throw new Error("the provider returned no token");
      this.token = token;
      this.tokenFetchedAt = Date.now();
    }
    return this.token;
  }

  /** ms until a provider's token should be renewed (undefined: a plain token, or no `exp`). */
  private renewDelay(): number | undefined {
    if (typeof this.tokenSource !== "function" || this.token === undefined) return undefined;
    const exp = tokenExpiry(this.token);
    if (exp === undefined) return undefined;
    const expMs = exp * 1000;
    const margin = Math.min(RENEW_BEFORE_MS, (expMs - this.tokenFetchedAt) / 10);
    return Math.max(MIN_RENEW_DELAY_MS, expMs - margin - Date.now());
  }

  private expiresSoon(): boolean {
    const delay = this.renewDelay();
    return delay !== undefined && delay <= MIN_RENEW_DELAY_MS;
  }

  /** The server says the token expired: renew it through the provider, or stop in `expired`. */
  private tokenExpired(message?: string): void {
    if (typeof this.tokenSource === "function") {
      this.token = undefined;
      return this.reconnectQuickly(true);
    }
    this.expire(message || "token expired: give the client a fresh token");
  }

  /** A plain token expired: stop reconnecting until `setToken`. */
  private expire(message: string): void {
    const error = new AgentwireError("token_expired", message);
    const socket = this.socket;
    this.socket = undefined;
    this.generation += 1;
    this.opening = false;
    socket?.close();
    this.clearTimers();
    this.failPending(error);
    this.setState("expired");
    this.emitError(error);
  }

  /**
   * Reconnects at once (renewal, "behind"); a second one before the server answered anything
   * on the new socket takes the usual backoff instead, so nothing can make it spin.
   */
  private reconnectQuickly(renew: boolean): void {
    if (this.closedByUser) return;
    const old = this.socket;
    this.socket = undefined;
    old?.close();
    this.failPending(new Error("reconnecting"));
    this.quick += 1;
    if (this.quick > 1) return this.scheduleReconnect(renew);
    this.attempts = 0;
    this.open(renew);
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

  private scheduleReconnect(renew = false): void {
    const cap = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** this.attempts);
    const delay = Math.random() * cap;
    this.attempts += 1;
    this.clearTimers();
    this.setState(typeof navigator !== "undefined" && navigator.onLine === false ? "offline" : "reconnecting");
    this.later(() => this.open(renew), delay);
  }

  /** Drops the socket and reconnects at once; subscriptions resume by offset. */
  reconnectNow(): void {
    if (this.closedByUser || this._state === "expired") return;
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

  /**
   * Sends a request and waits for its answer. One refused because the token expired was not
   * applied: with a provider it is sent again, once, on the renewed connection.
   */
  private async request(frame: Record<string, unknown>): Promise<any> {
    try {
      return await this.requestOnce(frame);
    } catch (error) {
      const renewable = typeof this.tokenSource === "function";
      if (!(renewable && error instanceof AgentwireError && error.code === "token_expired")) throw error;
      return this.requestOnce(frame);
    }
  }

  private async requestOnce(frame: Record<string, unknown>): Promise<any> {
    if (this._state === "expired") throw new AgentwireError("token_expired", "token expired: give the client a fresh token");
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
    const expired = frame.type === "error" && isExpiry(frame.code, frame.message);
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const pending = this.pending.get(frame.id)!;
      this.pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(new AgentwireError(expired ? "token_expired" : frame.code, frame.message));
      else {
        this.quick = 0;
        pending.resolve(frame);
      }
      if (expired) this.tokenExpired(frame.message);
      return;
    }
    if (frame.id !== undefined && this.subscribing.has(frame.id)) {
      const state = this.subscribing.get(frame.id)!;
      this.subscribing.delete(frame.id);
      if (frame.type === "subscribed") this.quick = 0;
      if (frame.type === "subscribed" && !state.ordering) {
        state.ordering = new Ordering(frame.from);
        for (const events of state.early.splice(0)) this.deliver(state, events);
      }
      if (expired) this.tokenExpired(frame.message);
      return;
    }
    // Sent before a close for expiry or falling behind (on AWS the close carries no code).
    if (expired) return this.tokenExpired(frame.message);
    if (frame.type === "error" && frame.code === "behind") return this.reconnectQuickly(false);
    if (frame.type === "pong") {
      this.quick = 0;
      if (frame.tails && typeof frame.tails === "object") this.checkTails(frame.tails);
      return;
    }
    for (const state of this.subs) {
      if (state.session !== frame.session) continue;
      if (frame.type === "events") this.deliver(state, frame.events);
      // Too big for a frame: treat it as a gap of one event and fetch it.
      if (frame.type === "oversize") this.deliver(state, [], { from: frame.offset, to: frame.next });
    }
  }

  /**
   * Gap detection at the tail (a lost last push, e.g. a `message.end`, would otherwise go
   * unnoticed until the next event): when a pong's tail for a session is beyond what its
   * subscription has seen, and at the next pong it still has not seen up to that tail (pushes
   * in flight had a heartbeat to arrive), resubscribe from its last offset. Offsets compare
   * as strings, in stream order.
   */
  private checkTails(tails: Record<string, unknown>): void {
    const resynced = new Set<string>();
    for (const state of this.subs) {
      const tail = tails[state.session];
      if (!state.ordering || typeof tail !== "string") continue;
      const next = state.ordering.next;
      const stillMissing = state.behindAt !== undefined && next < state.behindAt;
      state.behindAt = tail > next ? tail : undefined;
      if (!stillMissing || resynced.has(state.session)) continue;
      // The replay reaches every subscription of the session on this socket; Ordering
      // drops what each has already handed out.
      resynced.add(state.session);
      state.behindAt = undefined;
      this.sendSubscribe(state);
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

/** `promise`, or a rejection with `message` after `ms` (the timer does not hold Node open). */
function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms) as ReturnType<typeof setTimeout> & { unref?: () => void };
    timer.unref?.();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Whether an error frame says the token expired (`unauthorized` + "expired" on old servers). */
function isExpiry(code: unknown, message: unknown): boolean {
  return code === "token_expired" || (code === "unauthorized" && typeof message === "string" && /expired/i.test(message));
}

/**
 * The `exp` (Unix seconds) of an agentwire token, `aw1.<base64url JSON claims>.<mac>`;
 * undefined for anything else (the server stays the judge of validity).
 */
export function tokenExpiry(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== "aw1") return undefined;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "=")));
    return typeof claims?.exp === "number" && Number.isFinite(claims.exp) ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}
