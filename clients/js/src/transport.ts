import type { ChatTransport, UIMessage, UIMessageChunk } from "ai";

import { AgentwireClient } from "./client.js";
import type { SessionEvent } from "./types.js";

export interface TransportOptions {
  client: AgentwireClient;
  /** The session of a chat (default: the chat id). */
  session?: (chatId: string) => string;
}

/**
 * An AI SDK `ChatTransport` over agentwire: pass it to `useChat({ transport })` and the
 * chat's replies come from a durable session instead of one HTTP response. `stop()` sends a
 * real cancel to the agent, and after a reload `resume: true` picks up a reply that is
 * still streaming.
 */
export class AgentwireChatTransport implements ChatTransport<UIMessage> {
  private readonly client: AgentwireClient;
  private readonly sessionOf: (chatId: string) => string;

  constructor(options: TransportOptions) {
    this.client = options.client;
    this.sessionOf = options.session ?? ((chatId) => chatId);
  }

  async sendMessages(options: {
    trigger: "submit-message" | "regenerate-message";
    chatId: string;
    messageId: string | undefined;
    messages: UIMessage[];
    abortSignal: AbortSignal | undefined;
  }): Promise<ReadableStream<UIMessageChunk>> {
    const session = this.sessionOf(options.chatId);
    const last = [...options.messages].reverse().find((m) => m.role === "user");
    const text = (last?.parts ?? [])
      .map((part) => (part.type === "text" ? part.text : ""))
      .join("");
    const ack = await this.client.send(session, text);
    return this.replyStream(session, ack.offset, (event) => event.parent === ack.message_id, options.abortSignal);
  }

  async reconnectToStream(options: { chatId: string; abortSignal?: AbortSignal }): Promise<ReadableStream<UIMessageChunk> | null> {
    const session = this.sessionOf(options.chatId);
    // Find the last reply; resume only if it is still streaming.
    let from = "-1";
    let open: { id: string; offset: string } | undefined;
    for (;;) {
      const page = await this.client.read(session, from);
      for (const { offset, event } of page.events) {
        if (event.type === "message.start" && event.role !== "user" && event.id) open = { id: event.id, offset };
        if (event.type === "message.end" && event.id === open?.id) open = undefined;
      }
      if (page.events.length === 0 || page.next === from) break;
      from = page.next;
    }
    if (!open) return null;
    const id = open.id;
    return this.replyStream(session, open.offset, (event) => event.id === id, options.abortSignal);
  }

  /** Streams the first assistant reply from `from` that `isReply` picks, as UI chunks. */
  private replyStream(
    session: string,
    from: string,
    isReply: (event: SessionEvent["event"]) => boolean,
    abortSignal: AbortSignal | undefined,
  ): ReadableStream<UIMessageChunk> {
    const client = this.client;
    let subscription: { unsubscribe(): void } | undefined;
    return new ReadableStream<UIMessageChunk>({
      start(controller) {
        let replyId: string | undefined;
        const finish = (chunk?: UIMessageChunk) => {
          subscription?.unsubscribe();
          if (chunk) controller.enqueue(chunk);
          controller.close();
        };
        abortSignal?.addEventListener("abort", () => {
          if (replyId) void client.cancel(session, replyId).catch(() => undefined);
          finish({ type: "abort" });
        });
        subscription = client.subscribe(
          session,
          ({ event }) => {
            if (!replyId) {
              if (event.type !== "message.start" || event.role === "user" || !isReply(event) || !event.id) return;
              replyId = event.id;
              controller.enqueue({ type: "start", messageId: replyId });
              controller.enqueue({ type: "text-start", id: replyId });
              return;
            }
            if (event.id !== replyId) return;
            if (event.type === "message.delta" && typeof event.data?.text === "string") {
              controller.enqueue({ type: "text-delta", id: replyId, delta: event.data.text });
            } else if (event.type === "message.end") {
              controller.enqueue({ type: "text-end", id: replyId });
              finish(event.data?.stopped ? { type: "abort" } : { type: "finish" });
            }
          },
          from,
        );
      },
      cancel() {
        subscription?.unsubscribe();
      },
    });
  }
}
