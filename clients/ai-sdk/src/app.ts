// The AI SDK's own chat (`AbstractChat`, what useChat wraps) on AgentwireChatTransport,
// without React: the page the AI SDK end-to-end test drives. A reply another tab asked for
// is followed through the transport (its resume), and a reply that ended is shown as the
// session holds it, so every tab ends with the same text, also after stop().
import { AbstractChat } from "ai";
import type { ChatInit, ChatState, ChatStatus, UIMessage } from "ai";

import { AgentwireChatTransport, AgentwireClient, MessagesView, toUIMessages } from "../../js/src/index.js";

/** A plain ChatState: what @ai-sdk/react keeps in React state, kept here in fields. */
class PageState implements ChatState<UIMessage> {
  private current: ChatStatus = "ready";
  error: Error | undefined;
  messages: UIMessage[] = [];
  constructor(private readonly changed: () => void) {}
  get status(): ChatStatus {
    return this.current;
  }
  set status(status: ChatStatus) {
    this.current = status;
    this.changed();
  }
  pushMessage = (message: UIMessage) => {
    this.messages = [...this.messages, message];
    this.changed();
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
    this.changed();
  };
  replaceMessage = (index: number, message: UIMessage) => {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
    this.changed();
  };
  snapshot = <T,>(value: T): T => structuredClone(value);
}

class Chat extends AbstractChat<UIMessage> {
  constructor(init: ChatInit<UIMessage>, changed: () => void) {
    super({ ...init, state: new PageState(changed) });
  }
}

const $ = (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLElement;
const params = new URLSearchParams(location.search);
const session = params.get("session") ?? "ai-1";
const client = new AgentwireClient({ token: params.get("token") ?? undefined, storage: null });
const view = new MessagesView();
let scheduled = false;
const changed = () => {
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    settle();
    render();
  }, 0);
};
const chat = new Chat({ id: session, transport: new AgentwireChatTransport({ client }) }, changed);

const textOf = (message: UIMessage) => message.parts.map((p) => (p.type === "text" ? p.text : "")).join("");

/** Once nothing streams, show the chat as the session holds it (the exact cut after a stop). */
function settle() {
  if (chat.status !== "ready" || view.messages.some((m) => m.status === "streaming")) return;
  const held = toUIMessages(view.messages);
  const same = held.length === chat.messages.length && held.every((m, i) => m.id === chat.messages[i]?.id && textOf(m) === textOf(chat.messages[i]!));
  if (!same) chat.messages = held;
}

/** A reply this tab did not ask for: follow it through the transport, as useChat's resume does. */
function follow(id: string) {
  setTimeout(() => {
    const reply = view.messages.find((m) => m.id === id);
    if (reply?.status !== "streaming" || chat.status !== "ready") return;
    chat.messages = toUIMessages(view.messages.filter((m) => m.id !== id));
    void chat.resumeStream();
  }, 0);
}

function render() {
  $("chat-status").textContent = chat.status;
  const list = $("messages");
  list.replaceChildren(
    ...chat.messages.map((message) => {
      const item = document.createElement("div");
      item.dataset.testid = "message";
      item.dataset.role = message.role;
      item.dataset.id = message.id;
      item.dataset.status = view.messages.find((m) => m.id === message.id)?.status ?? "";
      const who = document.createElement("div");
      who.className = "who";
      who.textContent = message.role;
      const text = document.createElement("div");
      text.dataset.testid = "message-text";
      text.textContent = textOf(message);
      item.append(who, text);
      return item;
    }),
  );
}

$("session").textContent = session;
client.onState((state) => ($("conn-state").textContent = state));
client.subscribe(session, (event) => {
  view.apply(event);
  if (event.event.type === "message.start" && event.event.role === "assistant" && event.event.id) follow(event.event.id);
  changed();
});
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("input") as HTMLInputElement;
  if (!input.value.trim()) return;
  void chat.sendMessage({ text: input.value });
  input.value = "";
});
$("stop").addEventListener("click", () => void chat.stop());
