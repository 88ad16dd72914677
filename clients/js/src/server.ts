// agentwire for server code (Node 20, fetch-based): write AI SDK replies into sessions.
// `ai` is a peer dependency; the browser side is `agentwire.js` (AgentwireChatTransport).
export { conversationOf, modelMessages, openSession, SessionError, SessionWriter } from "./server/session.js";
export type { ControlEvent, Conversation, Page, SessionOptions } from "./server/session.js";
export { DEFAULT_COALESCE, streamTextIntoSession, writeUIMessageStream } from "./server/reply.js";
export type { Coalesce, ReplyOptions, ReplyOutcome, StreamTextIntoSessionOptions } from "./server/reply.js";
export { ackWake, handleWake, verifyWake, WakeRefused } from "./server/webhook.js";
export type { HandleWakeOptions, Turn, Wake, WakeStream } from "./server/webhook.js";
export type { ChatMessage } from "./messages.js";
export type { EventBody } from "./events.js";
