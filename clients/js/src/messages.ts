import { isMessageEvent } from "./events.js";
import type { SessionEvent } from "./types.js";

/** A chat message assembled from `message.start/delta/end` events. */
export interface ChatMessage {
  id: string;
  role: string;
  /** The sub-agent that wrote it (`planner/search-1`), if any. */
  agent?: string;
  parent?: string;
  user?: string;
  text: string;
  /** `lost`: its agent died mid-reply (`agent.lost`); another agent answers anew. */
  status: "streaming" | "done" | "stopped" | "lost";
  /** Offset of its first event. */
  offset: string;
}

/**
 * Assembles a session's events into messages, in the order they started. Feed it every
 * event once, in offset order (as `AgentwireClient.subscribe` hands them out).
 */
export class MessagesView {
  private byId = new Map<string, ChatMessage>();
  private order: string[] = [];
  /** Ids whose role an event stated (not just assumed `assistant`). */
  private roleKnown = new Set<string>();
  /** The offset after the last event applied. */
  next?: string;

  apply({ offset, event }: SessionEvent): ChatMessage | undefined {
    if (event.type === "agent.lost") {
      // Names the reply its worker was writing; a reply already ended stays as it is.
      const lost = typeof event.id === "string" ? this.byId.get(event.id) : undefined;
      if (lost && lost.status === "streaming") lost.status = "lost";
      return lost;
    }
    if (!isMessageEvent(event)) return undefined;
    const id = event.id;
    let message = this.byId.get(id);
    // An event of another author under this id (a user writing into the agent's reply,
    // or the reverse) is not merged: a message has one role.
    if (message && event.role !== undefined && event.role !== message.role) {
      if (this.roleKnown.has(id)) return undefined;
      message.role = event.role;
    }
    if (event.role !== undefined) this.roleKnown.add(id);
    if (!message) {
      message = { id, role: event.role ?? "assistant", text: "", status: "streaming", offset };
      this.byId.set(id, message);
      this.order.push(id);
    }
    if (event.agent) message.agent = event.agent;
    if (event.parent) message.parent = event.parent;
    if (event.user) message.user = event.user;
    switch (event.type) {
      case "message.start":
        break;
      case "message.delta":
        // Typed, but from the network: a delta without text adds nothing.
        message.text += typeof event.data?.text === "string" ? event.data.text : "";
        break;
      case "message.end":
        message.status = event.data?.stopped ? "stopped" : "done";
        break;
    }
    return message;
  }

  /** Messages in the order they started. */
  get messages(): ChatMessage[] {
    return this.order.map((id) => this.byId.get(id)!);
  }

  /** Messages grouped by the agent that wrote them (top-level agent first). */
  byAgent(): Map<string, ChatMessage[]> {
    const groups = new Map<string, ChatMessage[]>();
    for (const message of this.messages) {
      if (message.role === "user") continue;
      const agent = message.agent ?? "agent";
      groups.set(agent, [...(groups.get(agent) ?? []), message]);
    }
    return groups;
  }

  /** A copy that survives a page reload (see `restore`). */
  snapshot(): { next?: string; messages: ChatMessage[] } {
    return { next: this.next, messages: this.messages.map((m) => ({ ...m })) };
  }

  static restore(saved: { next?: string; messages: ChatMessage[] }): MessagesView {
    const view = new MessagesView();
    view.next = saved.next;
    for (const message of saved.messages) {
      view.byId.set(message.id, { ...message });
      view.order.push(message.id);
      view.roleKnown.add(message.id);
    }
    return view;
  }
}
