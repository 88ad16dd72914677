/**
 * The session event envelope, in step with the Rust `Envelope` (`agentwire_session::events`).
 * `test/fixtures/envelopes.json` is generated from the Rust constructors; the tests check
 * these lists and shapes against it, and the type-level checks below keep the typed events
 * and the lists in step with each other.
 */

/** The envelope's own fields; any other field passes through untouched. */
export const ENVELOPE_FIELDS = ["type", "id", "agent", "parent", "role", "data"] as const;
export type EnvelopeField = (typeof ENVELOPE_FIELDS)[number];

/** Every event type agentwire knows, in the Rust `EventType::KNOWN` order. Others pass through. */
export const EVENT_TYPES = [
  "message.start",
  "message.delta",
  "message.end",
  "tool.call",
  "tool.result",
  "agent.status",
  "agent.lost",
  "control.cancel",
  "control.steer",
  "control.pause",
  "control.resume",
  "control.ack",
  "presence.join",
  "presence.leave",
] as const;
export type KnownEventType = (typeof EVENT_TYPES)[number];

/** The control kinds a client may send (`control.<kind>`). */
export const CONTROL_KINDS = ["cancel", "steer", "pause", "resume"] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];

/** Who wrote a message. */
export const ROLES = ["user", "assistant"] as const;
export type Role = (typeof ROLES)[number];

/** The type agents acknowledge control with. */
export const CONTROL_ACK = "control.ack" satisfies KnownEventType;

/** The envelope: a JSON object with a `type` and, optionally, the other envelope fields. */
export interface Envelope {
  type: string;
  /** The message or tool call the event belongs to. */
  id?: string;
  /** The path of the agent that wrote it (`planner/search-1`). */
  agent?: string;
  /** The id of the event this one works for. */
  parent?: string;
  role?: string;
  data?: any;
}

/** A session event as agents and clients append it: the envelope plus any other field. */
export interface EventBody extends Envelope {
  /** Who sent a user message or control (set by the server). */
  user?: string;
  [key: string]: unknown;
}

export interface MessageStart extends EventBody {
  type: "message.start";
  id: string;
}
export interface MessageDelta extends EventBody {
  type: "message.delta";
  id: string;
  data: { text: string };
}
export interface MessageEnd extends EventBody {
  type: "message.end";
  id: string;
  /** `stopped` when a cancel cut the message short. */
  data?: { stopped?: boolean };
}
export interface ToolCall extends EventBody {
  type: "tool.call";
  id: string;
}
export interface ToolResult extends EventBody {
  type: "tool.result";
  id: string;
}
export interface AgentStatus extends EventBody {
  type: "agent.status";
}
/** The worker writing reply `id` (when it said which) lost its lease; another answers. */
export interface AgentLost extends EventBody {
  type: "agent.lost";
  data: { worker: string; subscription: string; generation: number };
}
export interface ControlRequest extends EventBody {
  type: `control.${ControlKind}`;
  data?: Record<string, unknown>;
}
export interface ControlAckEvent extends EventBody {
  type: typeof CONTROL_ACK;
  /** The control's offset (`ref`), its kind, and where the agent's output stopped (`cut`). */
  data: { ref: string; kind: string; cut: string };
}
export interface PresenceEvent extends EventBody {
  type: "presence.join" | "presence.leave";
  data: { user: string; connection: string };
}

/** An event of a known type, with that type's shape. */
export type KnownEvent =
  | MessageStart
  | MessageDelta
  | MessageEnd
  | ToolCall
  | ToolResult
  | AgentStatus
  | AgentLost
  | ControlRequest
  | ControlAckEvent
  | PresenceEvent;

// Compile-time drift checks (`npm run typecheck`): the typed events cover exactly the
// known types, and `Envelope` has exactly the envelope's fields.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
export type _TypedEventsCoverKnownTypes = Assert<Equal<KnownEvent["type"], KnownEventType>>;
export type _EnvelopeHasItsFields = Assert<Equal<keyof Envelope, EnvelopeField>>;
export type _ControlKindsAreKnownTypes = Assert<`control.${ControlKind}` extends KnownEventType ? true : false>;

const isString = (value: unknown): value is string => typeof value === "string";
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Each known type's shape, beyond the envelope; one entry per type or it does not compile. */
const SHAPES: { [T in KnownEventType]: (event: EventBody) => boolean } = {
  "message.start": (e) => isString(e.id),
  "message.delta": (e) => isString(e.id) && isObject(e.data) && isString(e.data.text),
  "message.end": (e) =>
    isString(e.id) &&
    (e.data === undefined || (isObject(e.data) && (e.data.stopped === undefined || typeof e.data.stopped === "boolean"))),
  "tool.call": (e) => isString(e.id),
  "tool.result": (e) => isString(e.id),
  "agent.status": () => true,
  "agent.lost": (e) =>
    isObject(e.data) && isString(e.data.worker) && isString(e.data.subscription) && typeof e.data.generation === "number",
  "control.cancel": (e) => e.data === undefined || isObject(e.data),
  "control.steer": (e) => e.data === undefined || isObject(e.data),
  "control.pause": (e) => e.data === undefined || isObject(e.data),
  "control.resume": (e) => e.data === undefined || isObject(e.data),
  "control.ack": (e) => isObject(e.data) && isString(e.data.ref) && isString(e.data.kind) && isString(e.data.cut),
  "presence.join": (e) => isObject(e.data) && isString(e.data.user) && isString(e.data.connection),
  "presence.leave": (e) => isObject(e.data) && isString(e.data.user) && isString(e.data.connection),
};

const KNOWN = new Set<string>(EVENT_TYPES);

/** True for the types agentwire knows. */
export function isKnownEventType(type: string): type is KnownEventType {
  return KNOWN.has(type);
}

/** True when `event` is of a known type and has its shape (string envelope fields included). */
export function isKnownEvent(event: EventBody): event is KnownEvent {
  const fields = (["id", "agent", "parent", "role"] as const).every((f) => event[f] === undefined || isString(event[f]));
  return fields && isKnownEventType(event.type) && SHAPES[event.type](event);
}

/** The kind of control an agent must act on (`control.*` but the ack), else undefined. */
export function controlKind(type: string): string | undefined {
  return type.startsWith("control.") && type !== CONTROL_ACK ? type.slice("control.".length) : undefined;
}

/** True for `message.start`, `message.delta` and `message.end`. */
export function isMessageEvent(event: EventBody): event is MessageStart | MessageDelta | MessageEnd {
  const message = event.type === "message.start" || event.type === "message.delta" || event.type === "message.end";
  return message && isString(event.id);
}
