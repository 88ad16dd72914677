// An in-memory stand-in for agentwire's WebSocket and HTTP APIs, speaking the same frames,
// so the client's reconnect, resume and gap handling can be tested without a network.
import { advance, START } from "../dist/agentwire.js"

export class FakeServer {
  constructor() {
    /** session -> array of event bodies; an event's offset is its index. */
    this.sessions = new Map()
    this.sockets = new Set()
    this.received = []
    this.connections = 0
    /** Offsets whose push is "lost" (not sent to sockets), to make gaps. */
    this.dropPushes = new Set()
    /** The `?token=` of each connection, in order. */
    this.tokens = []
    /** Pongs carry every subscription's tail, as agentwire's do. */
    this.pongTails = false
    /** When set, the next request is refused with this error frame (`{code, message}`). */
    this.refuse = undefined
    const server = this
    this.WebSocket = class FakeWebSocket {
      static CONNECTING = 0
      static OPEN = 1
      static CLOSING = 2
      static CLOSED = 3
      constructor(url) {
        this.url = url
        this.token = new URL(url).searchParams.get("token")
        server.tokens.push(this.token)
        this.readyState = 0
        this.subscriptions = new Set()
        server.connections += 1
        server.sockets.add(this)
        setTimeout(() => {
          if (this.readyState !== 0) return
          this.readyState = 1
          this.onopen?.()
        }, 1)
      }
      send(data) {
        server.receive(this, JSON.parse(data))
      }
      close(code = 1005, reason = "") {
        if (this.readyState === 3) return
        this.readyState = 3
        server.sockets.delete(this)
        setTimeout(() => this.onclose?.({ code, reason }), 1)
      }
      push(frame) {
        if (this.readyState === 1) setTimeout(() => this.onmessage?.({ data: JSON.stringify(frame) }), 0)
      }
    }
    this.fetch = async (url) => {
      const parsed = new URL(url)
      const session = decodeURIComponent(parsed.pathname.replace("/v1/stream/", ""))
      const offset = parsed.searchParams.get("offset")
      const from = offset === "-1" ? 0 : Number(BigInt(offset.replace("_", "")))
      const events = this.log(session).slice(from)
      return new Response(JSON.stringify(events), {
        headers: { "stream-next-offset": offsetAt(from + events.length), "content-type": "application/json" },
      })
    }
  }

  log(session) {
    if (!this.sessions.has(session)) this.sessions.set(session, [])
    return this.sessions.get(session)
  }

  /** Appends events and pushes them to subscribers (except dropped offsets). */
  append(session, ...events) {
    const log = this.log(session)
    const first = log.length
    log.push(...events)
    const items = events
      .map((event, i) => ({ offset: offsetAt(first + i), event }))
      .filter((item) => !this.dropPushes.has(item.offset))
    if (items.length === 0) return first
    for (const socket of this.sockets) {
      if (socket.subscriptions.has(session)) {
        socket.push({ type: "events", session, from: items[0].offset, next: advance(items.at(-1).offset), events: items })
      }
    }
    return first
  }

  receive(socket, request) {
    this.received.push(request)
    const reply = (frame) => socket.push({ ...frame, id: request.id })
    if (this.refuse) {
      const refusal = this.refuse
      this.refuse = undefined
      return reply({ type: "error", ...refusal, action: request.action })
    }
    switch (request.action) {
      case "subscribe": {
        socket.subscriptions.add(request.session)
        const log = this.log(request.session)
        const from = request.offset === "-1" ? 0 : request.offset === "now" ? log.length : Number(BigInt(request.offset.replace("_", "")))
        reply({ type: "subscribed", session: request.session, from: offsetAt(from) })
        const events = log.slice(from).map((event, i) => ({ offset: offsetAt(from + i), event }))
        if (events.length) socket.push({ type: "events", session: request.session, from: events[0].offset, next: offsetAt(log.length), events })
        break
      }
      case "send": {
        const id = `u_${this.log(request.session).length}`
        const at = this.append(
          request.session,
          { type: "message.start", id, role: "user" },
          { type: "message.delta", id, data: { text: request.text } },
          { type: "message.end", id, role: "user" },
        )
        reply({ type: "ack", action: "send", session: request.session, offset: offsetAt(at), message_id: id })
        this.onSend?.(request.session, id, request.text)
        break
      }
      case "control": {
        if (request.kind === "explode") return reply({ type: "error", code: "bad_request", message: "unknown control kind" })
        const at = this.append(request.session, { type: `control.${request.kind}`, data: request.data })
        reply({ type: "ack", action: "control", session: request.session, offset: offsetAt(at) })
        break
      }
      case "ping": {
        if (!this.pongTails) return reply({ type: "pong" })
        const tails = Object.fromEntries([...socket.subscriptions].map((s) => [s, offsetAt(this.log(s).length)]))
        reply({ type: "pong", tails })
        break
      }
    }
  }

  /** Closes every socket, as a network failure would. */
  dropAll() {
    for (const socket of [...this.sockets]) socket.close()
  }

  /** Closes every socket with a close code, as agentwire does (4001 expired, 4002 behind). */
  closeAll(code, reason = "") {
    for (const socket of [...this.sockets]) socket.close(code, reason)
  }

  /** Pushes a frame to every socket. */
  pushAll(frame) {
    for (const socket of this.sockets) socket.push(frame)
  }
}

export function offsetAt(n) {
  return advance(START, n)
}

export function until(predicate, ms = 2000) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const check = () => {
      if (predicate()) return resolve()
      if (Date.now() - started > ms) return reject(new Error("timed out"))
      setTimeout(check, 2)
    }
    check()
  })
}
