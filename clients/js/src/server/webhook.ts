// Routes woken by a webhook subscription: verify the wake, answer what is unanswered in
// each session, answer the HTTP request at once, and ack past the reply when it is done.
import type { ChatMessage } from "../messages.js";
import { modelMessages, openSession } from "./session.js";
import type { SessionOptions, SessionWriter } from "./session.js";

/** One linked stream of a wake, with this subscription's cursor and the tail when it was woken. */
export interface WakeStream {
  path: string;
  acked_offset: string;
  tail_offset: string;
  has_pending: boolean;
}

/** A webhook subscription's wake (the POST body agentwire signs). */
export interface Wake {
  subscription_id: string;
  wake_id: string;
  generation: number;
  streams: WakeStream[];
  callback_url: string;
  callback_token: string;
}

/** The signature, key or time of a wake does not check out: answer 401. */
export class WakeRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WakeRefused";
  }
}

/** A replay of an old wake is refused: five minutes either side. */
const WINDOW_SECONDS = 300;

const base64url = (text: string): Uint8Array<ArrayBuffer> =>
  Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=")), (c) =>
    c.charCodeAt(0),
  );

interface Jwk {
  kty?: string;
  crv?: string;
  kid?: string;
  x?: string;
}
/** Key sets by URL, fetched once and again when a wake names a key not in them. */
const keySets = new Map<string, Jwk[]>();

async function keys(options: SessionOptions, refresh: boolean): Promise<Jwk[]> {
  const url = `${options.baseUrl.replace(/\/+$/, "")}/v1/stream/__ds/jwks.json`;
  const cached = keySets.get(url);
  if (cached && !refresh) return cached;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const response = await (options.fetch ?? fetch)(url, { headers });
  if (!response.ok) throw new WakeRefused(`the key set could not be fetched: ${response.status}`);
  const set = (await response.json()) as { keys?: Jwk[] };
  keySets.set(url, set.keys ?? []);
  return set.keys ?? [];
}

/**
 * Checks a wake's `Webhook-Signature` (`t=<unix s>,kid=<key id>,ed25519=<signature>`, an
 * Ed25519 signature over `<t>.<raw body>`) against the server's key set, and returns the wake.
 */
export async function verifyWake(headers: Headers, body: string, options: SessionOptions & { now?: number }): Promise<Wake> {
  const header = headers.get("webhook-signature");
  if (!header) throw new WakeRefused("no Webhook-Signature header");
  const parts = new Map(header.split(",").map((part) => part.trim().split("=", 2) as [string, string]));
  const t = Number(parts.get("t"));
  const kid = parts.get("kid");
  const signature = parts.get("ed25519");
  if (!Number.isInteger(t) || !kid || !signature) throw new WakeRefused("a malformed Webhook-Signature header");
  if (Math.abs((options.now ?? Date.now() / 1000) - t) > WINDOW_SECONDS) throw new WakeRefused("the wake's time is outside the window");
  let key = (await keys(options, false)).find((k) => k.kid === kid);
  key ??= (await keys(options, true)).find((k) => k.kid === kid);
  if (!key || key.kty !== "OKP" || key.crv !== "Ed25519" || !key.x) throw new WakeRefused(`no Ed25519 key ${kid} in the key set`);
  const publicKey = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: key.x }, { name: "Ed25519" }, false, ["verify"]);
  const signed = new TextEncoder().encode(`${t}.${body}`);
  let valid = false;
  try {
    valid = await crypto.subtle.verify("Ed25519", publicKey, base64url(signature), signed);
  } catch {
    valid = false;
  }
  if (!valid) throw new WakeRefused("the signature does not verify");
  return JSON.parse(body) as Wake;
}

/**
 * Acks a wake through its callback: each stream's cursor moves to its offset; without
 * `done` it is a heartbeat that extends the lease (and names the reply being written, so
 * the session gets `agent.lost` if this process dies).
 */
export async function ackWake(
  wake: Wake,
  acks: Array<{ stream: string; offset: string }>,
  options: { done?: boolean; reply?: string; fetch?: typeof fetch } = {},
): Promise<{ ok: boolean; next_wake: boolean }> {
  const body: Record<string, unknown> = { wake_id: wake.wake_id, generation: wake.generation, acks, done: options.done ?? false };
  if (options.reply !== undefined && !options.done) body.reply = options.reply;
  const response = await (options.fetch ?? fetch)(wake.callback_url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${wake.callback_token}` },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`wake callback refused: ${response.status} ${text.trim()}`);
  return JSON.parse(text) as { ok: boolean; next_wake: boolean };
}

const isReply = (value: unknown): value is { id?: string; done: Promise<unknown> } =>
  typeof value === "object" && value !== null && "done" in value;

/** What a route's `answer` is given: one user message and the chat up to it. */
export interface Turn {
  session: SessionWriter;
  message: ChatMessage;
  /** The chat up to and including `message`, as AI SDK model messages. */
  messages: Array<{ role: "user" | "assistant"; content: string }>;
}

export interface HandleWakeOptions extends SessionOptions {
  /**
   * Starts the reply to one user message, e.g. `({ session, message, messages }) =>
   * streamTextIntoSession({ session, parent: message.id, model, messages })`; the work
   * continues until its `done` settles. Messages of a session are answered one at a time.
   */
  answer: (turn: Turn) => { id?: string; done: Promise<unknown> } | Promise<unknown>;
  /** Keeps the work alive after the response on serverless hosts (Next.js `after`, Vercel `waitUntil`). */
  waitUntil?: (work: Promise<unknown>) => void;
  /** Check the signature (default true; `false` only behind something that already did). */
  verify?: boolean;
  /** How often the lease is extended while replies run (default 10 s; leases last 30 s by default). */
  heartbeatMs?: number;
  /** Errors of the work after the response (default: `console.error`). */
  onError?: (error: unknown) => void;
}

/**
 * A webhook route: verifies the wake, starts answering every unanswered user message of
 * the woken sessions and answers `{}` at once (or `{"done": true}` when there was nothing
 * to answer). When the replies are done it acks each session past its own reply, so the
 * reply does not wake the route again while a message that arrived meanwhile still does.
 */
export async function handleWake(request: Request, options: HandleWakeOptions): Promise<Response> {
  const body = await request.text();
  let wake: Wake;
  try {
    wake = options.verify === false ? (JSON.parse(body) as Wake) : await verifyWake(request.headers, body, options);
  } catch (error) {
    if (error instanceof WakeRefused || error instanceof SyntaxError) return new Response(String(error.message), { status: 401 });
    throw error;
  }
  const work: Array<{ stream: WakeStream; session: SessionWriter; first: ChatMessage[] }> = [];
  for (const stream of wake.streams.filter((s) => s.has_pending)) {
    const session = await openSession(stream.path, options);
    const { unanswered } = await session.conversation();
    if (unanswered.length > 0) work.push({ stream, session, first: unanswered });
  }
  if (work.length === 0) return Response.json({ done: true });

  let current: string | undefined;
  const beat = () => void ackWake(wake, [], { reply: current, fetch: options.fetch }).catch(() => undefined);
  const heartbeat = setInterval(beat, options.heartbeatMs ?? 10_000);
  const serve = async ({ session, first }: (typeof work)[number]) => {
    // Answered once each, even if `answer` wrote no reply: never a loop on one message.
    const tried = new Set<string>();
    for (let pending = first; ; ) {
      const message = pending.find((m) => !tried.has(m.id));
      if (!message) return;
      tried.add(message.id);
      const { messages } = await session.conversation();
      const started = await Promise.resolve(options.answer({ session, message, messages: modelMessages(messages, message.id) }));
      const reply = isReply(started) ? started : undefined;
      if (reply?.id) {
        current = reply.id;
        beat();
      }
      await reply?.done;
      // What arrived while answering is answered too, before the ack moves past it.
      pending = (await session.conversation()).unanswered;
    }
  };
  const background = (async () => {
    try {
      await Promise.all(work.map(serve));
      const replied = new Map(work.map((w) => [w.stream.path, w.session.position]));
      const acks = wake.streams
        .filter((s) => s.has_pending)
        .map((s) => ({ stream: s.path, offset: replied.get(s.path) ?? s.tail_offset }));
      await ackWake(wake, acks, { done: true, fetch: options.fetch });
    } finally {
      clearInterval(heartbeat);
      for (const { session } of work) session.close();
    }
  })().catch(options.onError ?? ((error: unknown) => console.error("agentwire: answering a wake failed:", error)));
  options.waitUntil?.(background);
  return Response.json({});
}
