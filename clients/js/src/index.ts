export { AgentwireClient, AgentwireError, tokenExpiry } from "./client.js";
export type { ClientOptions, From, Subscription, TokenSource } from "./client.js";
export {
  CONTROL_ACK,
  CONTROL_KINDS,
  controlKind,
  ENVELOPE_FIELDS,
  EVENT_TYPES,
  isKnownEvent,
  isKnownEventType,
  isMessageEvent,
  ROLES,
} from "./events.js";
export type {
  AgentStatus,
  AgentLost,
  ControlAckEvent,
  ControlKind,
  ControlRequest,
  Envelope,
  EnvelopeField,
  KnownEvent,
  KnownEventType,
  MessageDelta,
  MessageEnd,
  MessageStart,
  PresenceEvent,
  Role,
  ToolCall,
  ToolResult,
} from "./events.js";
export { toUIMessages } from "./history.js";
export type { SessionMessageMetadata } from "./history.js";
export { MessagesView } from "./messages.js";
export type { ChatMessage } from "./messages.js";
export { Ordering } from "./ordering.js";
export { advance, offsetOf, position, START } from "./offsets.js";
export { AgentwireChatTransport } from "./transport.js";
export type { TransportOptions } from "./transport.js";
export type { ConnectionState, EventBody, Member, SessionEvent } from "./types.js";
