// The demo chat: one durable session, followed live by every tab and device.
import {
  AgentwireClient,
  advance,
  type ChatMessage,
  type ConnectionState,
  MessagesView,
  type SessionEvent,
} from "../../js/src/index.js";

const params = new URLSearchParams(location.search);
const session = params.get("session") || "demo";
const token = params.get("token") || undefined;
const saveKey = `agentwire-demo:${session}`;

const $ = <T extends HTMLElement>(id: string) => document.querySelector(`[data-testid="${id}"]`) as T;
const transcript = $("transcript");
const input = $<HTMLTextAreaElement>("input");
const stopButton = $<HTMLButtonElement>("stop");

// A reload picks up where this tab was: the transcript so far, and the offset to resume from.
interface AgentActivity {
  messages: number;
  tools: number;
  last: string;
}
const saved = JSON.parse(sessionStorage.getItem(saveKey) ?? "null");
const view = saved ? MessagesView.restore(saved.view) : new MessagesView();
/** Every agent path seen in the session, with what it did. */
const agents = new Map<string, AgentActivity>(saved?.agents ?? []);
const client = new AgentwireClient({ token, storage: null });
const elements = new Map<string, HTMLElement>();
const controls: Array<{ kind: string; user: string }> = [];

$("session").textContent = session;

client.onState((state: ConnectionState) => {
  $("conn-state").textContent = state;
  $("conn-dot").className = `dot ${state}`;
  if (state === "open") void refreshPresence();
});

client.subscribe(session, onEvent, view.next ?? "-1");

function onEvent({ offset, event }: SessionEvent): void {
  view.next = advance(offset);
  view.apply({ session, offset, event });
  if (event.agent) {
    const activity = agents.get(event.agent) ?? { messages: 0, tools: 0, last: "" };
    if (event.type === "message.start") activity.messages += 1;
    if (event.type === "tool.call") activity.tools += 1;
    activity.last = event.type;
    agents.set(event.agent, activity);
  }
  if (event.type.startsWith("control.") && event.type !== "control.ack") {
    controls.unshift({ kind: event.type.slice("control.".length), user: String(event.user ?? "someone") });
  }
  if (event.type.startsWith("presence.")) void refreshPresence();
  scheduleRender();
}

let renderQueued = false;
function scheduleRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
    sessionStorage.setItem(saveKey, JSON.stringify({ view: view.snapshot(), agents: [...agents] }));
  });
}

function render(): void {
  const messages = view.messages;
  $("empty").style.display = messages.length ? "none" : "";
  const nearBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
  for (const message of messages) renderMessage(message);
  if (nearBottom) transcript.scrollTop = transcript.scrollHeight;
  $("offset").textContent = view.next ?? "—";
  stopButton.disabled = !messages.some((m) => m.role !== "user" && m.status === "streaming");
  renderAgents();
  renderControls();
}

function renderMessage(message: ChatMessage): void {
  let element = elements.get(message.id);
  if (!element) {
    element = document.createElement("article");
    element.dataset.testid = "message";
    element.dataset.id = message.id;
    element.innerHTML = `<div class="meta"></div><div class="bubble" data-testid="message-text"></div>`;
    transcript.appendChild(element);
    elements.set(message.id, element);
  }
  const role = message.role === "user" ? "user" : "assistant";
  element.className = `msg ${role} ${message.status}`;
  element.dataset.role = role;
  element.dataset.status = message.status;
  const meta = element.querySelector(".meta")!;
  meta.innerHTML = "";
  const who = document.createElement("span");
  who.textContent = role === "user" ? (message.user && message.user !== "anonymous" ? message.user : "You") : "Agent";
  meta.appendChild(who);
  if (message.agent) {
    const agent = document.createElement("span");
    agent.className = "agent";
    agent.textContent = message.agent;
    meta.appendChild(agent);
  }
  const bubble = element.querySelector(".bubble")!;
  if (bubble.textContent !== message.text) bubble.textContent = message.text;
  const mark = element.querySelector(".stopped");
  if ((message.status === "stopped" || message.status === "lost") && !mark) {
    const stopped = document.createElement("span");
    stopped.className = "stopped";
    stopped.dataset.testid = message.status;
    stopped.textContent = message.status === "lost" ? "agent lost: answering again" : "stopped";
    element.appendChild(stopped);
  }
}

function renderAgents(): void {
  if (agents.size === 0) return;
  const list = $("agents");
  list.innerHTML = "";
  const writing = new Set(view.messages.filter((m) => m.status === "streaming" && m.agent).map((m) => m.agent));
  for (const [path, activity] of [...agents].sort(([a], [b]) => a.localeCompare(b))) {
    const item = document.createElement("li");
    item.dataset.testid = "agent";
    const name = document.createElement("span");
    name.className = `path${path.includes("/") ? " child" : ""}`;
    name.textContent = path;
    const summary = document.createElement("span");
    summary.className = "summary";
    const parts = [];
    if (activity.messages) parts.push(`${activity.messages} message${activity.messages === 1 ? "" : "s"}`);
    if (activity.tools) parts.push(`${activity.tools} tool call${activity.tools === 1 ? "" : "s"}`);
    if (writing.has(path)) parts.push("writing…");
    summary.textContent = parts.join(" · ") || activity.last;
    item.append(name, summary);
    list.appendChild(item);
  }
}

function renderControls(): void {
  if (controls.length === 0) return;
  const list = $("activity");
  list.innerHTML = "";
  for (const control of controls.slice(0, 8)) {
    const item = document.createElement("li");
    item.innerHTML = `<span class="kind ${control.kind}"></span> <span class="muted"></span>`;
    item.querySelector(".kind")!.textContent = control.kind;
    item.querySelector(".muted")!.textContent = `by ${control.user}`;
    list.appendChild(item);
  }
}

async function refreshPresence(): Promise<void> {
  try {
    const members = await client.presence(session);
    const list = $("presence");
    list.innerHTML = "";
    for (const member of members) {
      const item = document.createElement("li");
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.textContent = member.user.slice(0, 1).toUpperCase();
      const name = document.createElement("span");
      name.textContent = member.user;
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = member.connections > 1 ? `· ${member.connections} tabs` : "";
      item.append(avatar, name, count);
      list.appendChild(item);
    }
  } catch {
    // Presence is best effort; the next join or leave refreshes it.
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  void client.send(session, text).catch((error) => alert(`Not sent: ${error.message}`));
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").dispatchEvent(new Event("submit", { cancelable: true }));
  }
});

stopButton.addEventListener("click", () => {
  stopButton.disabled = true;
  void client.cancel(session).catch(() => (stopButton.disabled = false));
});

render();
