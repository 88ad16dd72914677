import { advance } from "./offsets.js";
import type { EventBody } from "./types.js";

/** What a pushed frame means for one subscription. */
export interface Absorbed {
  /** Events to hand out now, in order, each once. */
  events: Array<{ offset: string; event: EventBody }>;
  /** Set when events before the frame are missing: fetch [from, to) over HTTP. */
  gap?: { from: string; to: string };
}

/**
 * Orders and dedupes one session's pushed events by offset. Pushes may race, repeat after a
 * resume, or skip (a dropped frame): duplicates are dropped, and a gap is reported so the
 * caller fills it over HTTP before handing out what follows.
 */
export class Ordering {
  /** The offset of the next event to hand out. */
  next: string;
  private held: Array<{ offset: string; event: EventBody }> = [];

  constructor(next: string) {
    this.next = next;
  }

  /** Takes the events of a frame. */
  absorb(events: Array<{ offset: string; event: EventBody }>): Absorbed {
    for (const item of events) {
      if (item.offset >= this.next && !this.held.some((h) => h.offset === item.offset)) this.held.push(item);
    }
    this.held.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
    const out: Absorbed["events"] = [];
    while (this.held.length > 0 && this.held[0].offset === this.next) {
      const item = this.held.shift()!;
      out.push(item);
      this.next = advance(item.offset);
    }
    if (this.held.length > 0) return { events: out, gap: { from: this.next, to: this.held[0].offset } };
    return { events: out };
  }

  /** Takes events fetched over HTTP from `this.next`, then whatever was held behind them. */
  fill(events: Array<{ offset: string; event: EventBody }>): Absorbed {
    return this.absorb(events);
  }
}
