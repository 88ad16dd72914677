// The Durable Streams conformance suite, run against a server that is already up.
// CONFORMANCE_URL is the server's base URL (see run.sh, which starts `agentwire dev`).
import { describe } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_URL
// The reserved subscription APIs (webhooks, pull-wake), for servers that offer them.
const subscriptions = process.env.CONFORMANCE_SUBSCRIPTIONS === "1"
if (!baseUrl) throw new Error("set CONFORMANCE_URL to the server under test, e.g. http://127.0.0.1:8787")

describe(`Durable Streams conformance: ${baseUrl}`, () => {
  runConformanceTests({ baseUrl, longPollTimeoutMs: 20000, subscriptions })
})
