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

/**
 * A client's connection: `expired` means its plain (string) token expired, so it stopped
 * reconnecting until it is given a new token (`setToken`); a token provider never ends there.
 */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "offline" | "expired" | "closed";
