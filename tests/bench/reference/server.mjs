// The Durable Streams reference server on loopback: in memory, or file-backed with DATA_DIR.
// Serves Durable Streams subscriptions too. Prints its URL once listening.
import { DurableStreamTestServer } from "@durable-streams/server"

const server = new DurableStreamTestServer({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  dataDir: process.env.DATA_DIR || undefined,
  longPollTimeout: 20000,
  // Subscriptions (pull-wake and webhooks), for the dispatch latency workloads.
  webhooks: true,
})
await server.start()
console.log(server.url)
