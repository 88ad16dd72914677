//! Header names of the Durable Streams protocol.

pub const STREAM_NEXT_OFFSET: &str = "stream-next-offset";
pub const STREAM_UP_TO_DATE: &str = "stream-up-to-date";
pub const STREAM_CLOSED: &str = "stream-closed";
pub const STREAM_CURSOR: &str = "stream-cursor";
pub const STREAM_TTL: &str = "stream-ttl";
pub const STREAM_EXPIRES_AT: &str = "stream-expires-at";
pub const STREAM_SEQ: &str = "stream-seq";
pub const STREAM_FORKED_FROM: &str = "stream-forked-from";
pub const STREAM_FORK_OFFSET: &str = "stream-fork-offset";
pub const STREAM_FORK_SUB_OFFSET: &str = "stream-fork-sub-offset";
pub const STREAM_SSE_DATA_ENCODING: &str = "stream-sse-data-encoding";
pub const PRODUCER_ID: &str = "producer-id";
pub const PRODUCER_EPOCH: &str = "producer-epoch";
pub const PRODUCER_SEQ: &str = "producer-seq";
pub const PRODUCER_EXPECTED_SEQ: &str = "producer-expected-seq";
pub const PRODUCER_RECEIVED_SEQ: &str = "producer-received-seq";

/// Extension: an appending agent's last seen offset; control events after it come back.
pub const AGENTWIRE_CONTROL_SINCE: &str = "agentwire-control-since";
/// Extension: how many control events an append response carries.
pub const AGENTWIRE_CONTROL: &str = "agentwire-control";

/// Response headers a browser client must be allowed to read (CORS).
pub const EXPOSED: [&str; 15] = [
    AGENTWIRE_CONTROL,
    STREAM_NEXT_OFFSET,
    STREAM_UP_TO_DATE,
    STREAM_CLOSED,
    STREAM_CURSOR,
    STREAM_TTL,
    STREAM_EXPIRES_AT,
    STREAM_SSE_DATA_ENCODING,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    "etag",
    "location",
    "content-type",
];

/// Request headers whose values are read (lower-case name, name as the protocol writes
/// it): each, when present, must be visible ASCII ([`check_request`]).
pub const REQUEST: [(&str, &str); 13] = [
    ("authorization", "Authorization"),
    ("content-type", "Content-Type"),
    (STREAM_TTL, "Stream-TTL"),
    (STREAM_EXPIRES_AT, "Stream-Expires-At"),
    (STREAM_CLOSED, "Stream-Closed"),
    (STREAM_SEQ, "Stream-Seq"),
    (STREAM_FORKED_FROM, "Stream-Forked-From"),
    (STREAM_FORK_OFFSET, "Stream-Fork-Offset"),
    (STREAM_FORK_SUB_OFFSET, "Stream-Fork-Sub-Offset"),
    (PRODUCER_ID, "Producer-Id"),
    (PRODUCER_EPOCH, "Producer-Epoch"),
    (PRODUCER_SEQ, "Producer-Seq"),
    (AGENTWIRE_CONTROL_SINCE, "Agentwire-Control-Since"),
];

/// Refuses a request whose protocol headers ([`REQUEST`]) are not visible ASCII, naming
/// the header: `http` would read such a value as absent (a `Stream-Seq` skipped, a
/// `Stream-Forked-From` ignored), so it is refused before anything reads it.
pub fn check_request(headers: &http::HeaderMap) -> Result<(), agentwire_session::ProtocolError> {
    for (name, display) in REQUEST {
        for value in headers.get_all(name) {
            agentwire_session::headers::visible_ascii(display, value.as_bytes())?;
        }
    }
    Ok(())
}
