//! Fuzz targets for every parser of untrusted input in agentwire, and the harness they run
//! in. Each target must not panic, allocate more than [`harness::alloc_bound`] for one
//! input, or take longer than [`harness::INPUT_TIMEOUT`].
//!
//! Two engines drive the same targets: a stable one (`cargo test -p agentwire-fuzz --test
//! fuzz -- --ignored`, seed corpus plus random mutations, bounded by time) for CI, and
//! libFuzzer, coverage-guided, on nightly for long runs (`bash fuzz/run.sh --minutes 30`).
//! See `fuzz/README.md`.

pub mod harness;
pub mod mutate;
pub mod parsers;
pub mod stack;

use harness::Target;

fn pure(f: fn(&[u8])) -> harness::Runner {
    Box::new(f)
}

const OFFSET_WORDS: &[&str] = &["0000000000000000_0000000000000000", "_", "-1", "now"];
const HEADER_WORDS: &[&str] = &[
    "0000000000000000_0000000000000000",
    "2030-01-01T00:00:00Z",
    "T",
    "Z",
    "+01:00",
    ".999999999",
    "9999-12-31T23:59:59Z",
    "-1",
    "now",
    "true",
];
const CONTENT_WORDS: &[&str] = &[
    "application/json",
    "text/plain",
    "; charset=utf-8",
    "[[",
    "]]",
    "{\"a\":",
    "\"\\\"\"",
    "1e5",
];
const TOKEN_WORDS: &[&str] = &[
    "aw1.",
    "Bearer ",
    "{\"t\":\"acme\",\"s\":\"chat-*\",\"r\":\"writer\",\"u\":\"ana\",\"exp\":4102444800}",
    "\"r\":\"admin\"",
    "\"exp\":",
    "\"u\":null",
];
const WS_WORDS: &[&str] = &[
    "{\"action\":\"subscribe\",\"session\":\"chat-1\",\"offset\":\"-1\"}",
    "\"action\":\"",
    "subscribe",
    "unsubscribe",
    "control",
    "send",
    "presence",
    "ping",
    "\"session\":\"chat-1\"",
    "\"offset\":\"now\"",
    "\"kind\":\"cancel\"",
    "steer",
    "pause",
    "resume",
    "\"text\":\"hi\"",
    "\"message_id\":\"m1\"",
    "\"client_message_id\":\"c1\"",
    "\"id\":",
    "0000000000000000_0000000000000001",
    "$connect",
    "$disconnect",
    "$default",
    "$TOKEN",
];
const HTTP_WORDS: &[&str] = &[
    "GET ",
    "POST ",
    "PUT ",
    "HEAD ",
    "DELETE ",
    "OPTIONS ",
    "/v1/stream/",
    "chat-1",
    "?offset=",
    "&live=long-poll",
    "&live=sse",
    "&cursor=",
    "0000000000000000_0000000000000001",
    "content-type: application/json\n",
    "stream-seq: ",
    "stream-ttl: ",
    "stream-expires-at: ",
    "stream-closed: true\n",
    "stream-forked-from: /v1/stream/chat-1\n",
    "stream-fork-offset: ",
    "stream-fork-sub-offset: ",
    "producer-id: p\nproducer-epoch: 0\nproducer-seq: ",
    "agentwire-control-since: ",
    "authorization: Bearer $TOKEN\n",
    "\n\n",
    "\"rawPath\":\"",
    "\"method\":\"",
    "\"isBase64Encoded\":true",
    "\"rawQueryString\":\"",
];

/// Every target, by name (its corpus folder under `fuzz/corpus/`).
pub const TARGETS: &[Target] = &[
    Target {
        name: "offset",
        dictionary: OFFSET_WORDS,
        make: || pure(parsers::offset),
    },
    Target {
        name: "headers",
        dictionary: HEADER_WORDS,
        make: || pure(parsers::headers),
    },
    Target {
        name: "content",
        dictionary: CONTENT_WORDS,
        make: || pure(parsers::content),
    },
    Target {
        name: "fork",
        dictionary: HEADER_WORDS,
        make: || pure(parsers::fork),
    },
    Target {
        name: "token",
        dictionary: TOKEN_WORDS,
        make: || pure(parsers::token),
    },
    Target {
        name: "ws_message",
        dictionary: WS_WORDS,
        make: stack::ws_message,
    },
    Target {
        name: "ws_event",
        dictionary: WS_WORDS,
        make: stack::ws_event,
    },
    Target {
        name: "http_router",
        dictionary: HTTP_WORDS,
        make: stack::http_router,
    },
    Target {
        name: "http_event",
        dictionary: HTTP_WORDS,
        make: stack::http_event,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
