// The protocol's Node reference server, in memory, for checking the suite itself: prints
// "listening on <url>" and serves until killed.
import { DurableStreamTestServer } from "@durable-streams/server"

const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", longPollTimeout: 1000, webhooks: true })
const url = await server.start()
console.log(`listening on ${url}`)
