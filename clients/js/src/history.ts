import type { UIMessage } from "ai";

import type { ChatMessage } from "./messages.js";

/** What `toUIMessages` puts in each message's `metadata`. */
export interface SessionMessageMetadata {
  status: ChatMessage["status"];
  agent?: string;
}

/**
 * A session's messages (a `MessagesView`'s) as AI SDK `UIMessage`s, to give `useChat` (or
 * `Chat`) the chat as the session holds it: the history on page load, or, once a stopped
 * reply has ended, its exact cut. `stop()` freezes the stopping tab's copy at once, while
 * the agent's append in flight still lands; the session has the text every tab keeps.
 */
export function toUIMessages(messages: ChatMessage[]): Array<UIMessage<SessionMessageMetadata>> {
  return messages
    .filter((m) => m.role === "user" || m.role === "assistant")
    .map((m) => ({
      id: m.id,
      role: m.role === "user" ? "user" : "assistant",
      metadata: m.agent === undefined ? { status: m.status } : { status: m.status, agent: m.agent },
      parts: [{ type: "text", text: m.text, state: m.status === "streaming" ? "streaming" : "done" }],
    }));
}
