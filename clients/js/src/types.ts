import type { EventBody } from "./events.js";

export type { EventBody } from "./events.js";

/** An event with its place in the session. */
export interface SessionEvent {
  session: string;
  offset: string;
  event: EventBody;
}

/** Who follows a session now. */
export interface Member {
  user: string;
  connections: number;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "offline" | "closed";
