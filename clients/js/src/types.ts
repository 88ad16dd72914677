/** A session event: a JSON object with a `type`, as agents and clients append it. */
export interface EventBody {
  type: string;
  id?: string;
  agent?: string;
  parent?: string;
  role?: string;
  user?: string;
  data?: any;
  [key: string]: unknown;
}

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
