// AI SDK output into a session: UI message chunks become message.start/delta/end and
// tool.call/result events, coalesced like the Rust SDK's replies, and a control.cancel
// for the reply aborts the model.
import { streamText } from "ai";
import type { UIMessageChunk } from "ai";

import type { EventBody } from "../events.js";
import { offsetOf, position } from "../offsets.js";
import { randomHex } from "./session.js";
import type { ControlEvent, SessionWriter } from "./session.js";

/** How deltas are coalesced: one append carries what arrives within `lingerMs`, or `maxBytes` of text. */
export interface Coalesce {
  lingerMs: number;
  maxBytes: number;
}

/** 100 ms: smooth to read, and about five tokens per append at 50 tokens/s. */
export const DEFAULT_COALESCE: Coalesce = { lingerMs: 100, maxBytes: 8 * 1024 };

export interface ReplyOptions {
  /** The message this reply answers (the user message's id): the browser transport finds the reply by it. */
  parent?: string;
  /** The reply's message id (default `m_<random>`). */
  id?: string;
  /** Aborted when a cancel for this reply arrives: pass its signal to the model (`streamText({ abortSignal })`). */
  abortController?: AbortController;
  coalesce?: Partial<Coalesce>;
}

/** How a reply ended. */
export interface ReplyOutcome {
  id: string;
  /** The offset after the reply's last output: where it stopped (a `control.ack`'s `cut`). */
  cut: string;
  /** The session's tail after the reply's `message.end`. */
  tail: string;
  /** The cancel that stopped it, if one did. */
  cancelledBy?: ControlEvent;
  /** True when it ended as stopped: cancelled, or aborted by the caller. */
  stopped: boolean;
  /** The model's finish reason, when it finished. */
  finishReason?: string;
  /** An `error` chunk's text (also in `message.end`'s `data.error`). */
  error?: string;
}

const encoder = new TextEncoder();

/**
 * Writes an AI SDK UI message stream (`result.toUIMessageStream()`) into the session as one
 * assistant reply, and resolves when the reply has ended there. A `control.cancel` naming
 * the reply (or naming none) aborts `abortController`, stops reading, and ends the message
 * as stopped with a `control.ack` whose `cut` is exact: an append in flight completes, text
 * not yet appended is dropped, as the Rust SDK does.
 */
export async function writeUIMessageStream(
  stream: ReadableStream<UIMessageChunk>,
  session: SessionWriter,
  options: ReplyOptions = {},
): Promise<ReplyOutcome> {
  const id = options.id ?? `m_${randomHex(8)}`;
  const { lingerMs, maxBytes } = { ...DEFAULT_COALESCE, ...options.coalesce };

  // Listen before the first append: a cancel can come back in its response.
  let startOffset: string | undefined;
  const early: ControlEvent[] = [];
  let cancelledBy: ControlEvent | undefined;
  let wake: () => void = () => undefined;
  const cancelled = new Promise<"cancelled">((resolve) => (wake = () => resolve("cancelled")));
  const isCancel = (c: ControlEvent) => c.kind === "cancel" && (c.data.message_id === undefined || c.data.message_id === id);
  const cancel = (control: ControlEvent) => {
    // A cancel from before the reply started (one for an earlier reply, or for all) is not for it.
    if (cancelledBy || startOffset === undefined || control.offset <= startOffset) return;
    cancelledBy = control;
    options.abortController?.abort(new Error("cancelled through the session"));
    wake();
  };
  const unlisten = session.onControl((control) => {
    if (!isCancel(control)) return;
    if (startOffset === undefined) early.push(control);
    else cancel(control);
  });
  const unwatch = session.watchControl();

  const reader = stream.getReader();
  let aborted = false;
  let finishReason: string | undefined;
  let error: string | undefined;
  /** Events waiting for the next append, and the bytes of text among them. */
  let batch: EventBody[] = [];
  let bytes = 0;

  /** Maps a chunk into `batch`; returns false for chunks that carry no session output. */
  const take = (chunk: UIMessageChunk): boolean => {
    switch (chunk.type) {
      case "text-delta": {
        if (chunk.delta === "") return false;
        const last = batch.at(-1);
        if (last?.type === "message.delta") last.data.text += chunk.delta;
        else batch.push({ type: "message.delta", id, data: { text: chunk.delta } });
        bytes += encoder.encode(chunk.delta).length;
        return true;
      }
      case "tool-input-available": {
        // `data.arguments` apart from the name (as the Python SDK writes it): no argument can shadow `tool`.
        const data = { tool: chunk.toolName, arguments: chunk.input };
        batch.push({ type: "tool.call", id: chunk.toolCallId, parent: id, data });
        return true;
      }
      case "tool-output-available":
        if (chunk.preliminary) return false;
        batch.push({ type: "tool.result", id: chunk.toolCallId, parent: id, data: { result: chunk.output } });
        return true;
      case "tool-output-error":
      case "tool-input-error":
        batch.push({ type: "tool.result", id: chunk.toolCallId, parent: id, data: { error: chunk.errorText, is_error: true } });
        return true;
      case "error":
        error = chunk.errorText;
        return false;
      case "abort":
        aborted = true;
        return false;
      case "finish":
        finishReason = chunk.finishReason;
        return false;
      default:
        // start, steps, text-start/end, reasoning, sources, files, data parts, metadata:
        // nothing the session's events carry.
        return false;
    }
  };

  const done = () => {
    unlisten();
    unwatch();
  };

  try {
    const start: EventBody = { type: "message.start", id, role: "assistant" };
    if (options.parent !== undefined) start.parent = options.parent;
    let cut = (await session.append([start])).tail;
    startOffset = offsetOf(position(cut) - 1n);
    for (const control of early) cancel(control);

    let streamError: unknown;
    let closed = false;
    // One read in flight at a time, kept across races: a read that loses to the linger
    // timer still holds the next chunk.
    let pending: Promise<ReadableStreamReadResult<UIMessageChunk>> | undefined;
    const nextChunk = async <T>(...others: Array<Promise<T>>) => {
      pending ??= reader.read().catch((e: unknown) => {
        streamError = e;
        return { done: true as const, value: undefined };
      });
      const winner = await Promise.race([pending, ...others]);
      if (typeof winner === "object" && winner !== null) pending = undefined;
      return winner;
    };

    replies: while (!closed && !cancelledBy) {
      const first = await nextChunk(cancelled);
      if (first === "cancelled") break;
      if (first.done) break;
      if (!take(first.value)) continue;
      // Gather what arrives within the linger (or up to maxBytes of text) into one append.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const linger = new Promise<"linger">((resolve) => (timer = setTimeout(() => resolve("linger"), lingerMs)));
      try {
        while (bytes < maxBytes) {
          const more = await nextChunk<"cancelled" | "linger">(cancelled, linger);
          if (more === "cancelled") break replies;
          if (more === "linger") break;
          if (more.done) {
            closed = true;
            break;
          }
          take(more.value);
        }
      } finally {
        clearTimeout(timer);
      }
      const events = batch;
      batch = [];
      bytes = 0;
      cut = (await session.append(events)).tail;
    }
    if (streamError !== undefined && error === undefined) error = String(streamError);

    let end: EventBody[];
    if (cancelledBy) {
      end = [
        { type: "message.end", id, data: { stopped: true } },
        { type: "control.ack", data: { ref: cancelledBy.offset, kind: cancelledBy.kind, cut } },
      ];
    } else if (aborted || options.abortController?.signal.aborted) {
      end = [{ type: "message.end", id, data: { stopped: true } }];
    } else {
      end = [error === undefined ? { type: "message.end", id } : { type: "message.end", id, data: { error } }];
    }
    // Stop reading first: nothing more of this reply goes into the session.
    void reader.cancel().catch(() => undefined);
    const { tail } = await session.append(end);
    const stopped = cancelledBy !== undefined || aborted || options.abortController?.signal.aborted === true;
    return { id, cut, tail, cancelledBy, stopped, finishReason, error };
  } catch (e) {
    // The session refused or could not be reached after every retry: stop the model, leave
    // the message open (a later reply answers the user message again).
    options.abortController?.abort(e);
    void reader.cancel().catch(() => undefined);
    throw e;
  } finally {
    done();
  }
}

type StreamTextOptions = Parameters<typeof streamText>[0];

export type StreamTextIntoSessionOptions = StreamTextOptions &
  Omit<ReplyOptions, "abortController"> & {
    /** The session to write the reply into (see `openSession`). */
    session: SessionWriter;
  };

/**
 * Runs the AI SDK's `streamText` and writes its reply into the session; returns at once.
 * The reply lives in the session: a route can answer before the model has said anything,
 * and `stop()` in any browser tab (a `control.cancel`) aborts the model's `abortSignal`.
 * `done` resolves when the reply has ended in the session.
 */
export function streamTextIntoSession(options: StreamTextIntoSessionOptions): {
  id: string;
  result: ReturnType<typeof streamText>;
  done: Promise<ReplyOutcome>;
} {
  const { session, parent, id = `m_${randomHex(8)}`, coalesce, abortSignal, ...rest } = options;
  const abortController = new AbortController();
  const signal = abortSignal ? AbortSignal.any([abortSignal, abortController.signal]) : abortController.signal;
  const result = streamText({ ...rest, abortSignal: signal } as StreamTextOptions);
  const done = writeUIMessageStream(result.toUIMessageStream(), session, { parent, id, abortController, coalesce });
  return { id, result, done };
}
