//! Stream names in URL paths: percent-decoding a stream path a client sent (a fork's
//! `Stream-Forked-From`), and percent-encoding a name into a path (`Location`), so both
//! agree with how the server decodes the request path itself.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::ProtocolError;
use crate::offset::truncate;

/// Checks a stream name (the decoded path after the stream prefix): not empty, and no
/// control characters.
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ProtocolError::InvalidName(name.chars().take(64).collect()));
    }
    // `__ds` is the protocol's control namespace (subscriptions): never a stream.
    if name == "__ds" || name.starts_with("__ds/") {
        return Err(ProtocolError::ReservedName(name.chars().take(64).collect()));
    }
    Ok(())
}

/// The stream name a `Stream-Forked-From` value names: the path of a stream on this
/// server, `<prefix><name>` with the name percent-encoded as in a request path
/// (`/v1/stream/caf%C3%A9` is `café`). Refused (naming the header) unless it is exactly
/// that: no other path, scheme, host, query or fragment, no malformed `%` escape, and a
/// valid name once decoded.
pub fn fork_source(value: &str, prefix: &str) -> Result<String, ProtocolError> {
    let invalid = |reason| ProtocolError::InvalidHeader {
        header: "Stream-Forked-From",
        value: truncate(value),
        reason,
    };
    let encoded = value.strip_prefix(prefix).ok_or_else(|| {
        invalid("expected the path of a stream on this server, /v1/stream/<name>")
    })?;
    if encoded.contains(['?', '#']) {
        return Err(invalid("expected a path without a query or fragment"));
    }
    let name = percent_decode(encoded).ok_or_else(|| {
        invalid("expected a percent-encoded UTF-8 name (a % must be followed by two hex digits)")
    })?;
    validate_name(&name)
        .map_err(|_| invalid("expected a stream name: not empty, no control characters"))?;
    Ok(name)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
/// Unlike form decoding, `+` stays `+`.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What stays as it is in an encoded name: `A-Z a-z 0-9 - . _ ~` (RFC 3986's unreserved).
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `name` as a URL path: every byte but `A-Z a-z 0-9 - . _ ~` and `/` percent-encoded,
/// so the path decodes back to exactly `name`.
pub fn encode_name(name: &str) -> String {
    const PATH: &AsciiSet = &ESCAPED.remove(b'/');
    utf8_percent_encode(name, PATH).to_string()
}

/// `text` as one path segment or key part: like [`encode_name`], and `/` escaped too.
pub fn encode_segment(text: &str) -> String {
    utf8_percent_encode(text, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/v1/stream/";

    #[test]
    fn fork_sources_are_percent_decoded_stream_paths() {
        assert_eq!(fork_source("/v1/stream/a", PREFIX), Ok("a".into()));
        assert_eq!(
            fork_source("/v1/stream/caf%C3%A9", PREFIX),
            Ok("caf\u{e9}".into())
        );
        assert_eq!(fork_source("/v1/stream/a%2Fb", PREFIX), Ok("a/b".into()));
        assert_eq!(fork_source("/v1/stream/a/b", PREFIX), Ok("a/b".into()));
        assert_eq!(fork_source("/v1/stream/a+b", PREFIX), Ok("a+b".into()));
        for bad in [
            "a",
            "",
            "/v1/stream/",
            "/v1/streams/a",
            "http://host/v1/stream/a",
            "/v1/stream/a?offset=1",
            "/v1/stream/a#x",
            "/v1/stream/%",
            "/v1/stream/%zz",
            "/v1/stream/%C3",
            "/v1/stream/a%00b",
            "/v1/stream/%0A",
        ] {
            let refused = fork_source(bad, PREFIX);
            assert!(
                matches!(
                    &refused,
                    Err(ProtocolError::InvalidHeader {
                        header: "Stream-Forked-From",
                        ..
                    })
                ),
                "{bad:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn names_encode_into_paths_that_decode_back() {
        assert_eq!(encode_name("chat-1"), "chat-1");
        assert_eq!(encode_name("a/b c"), "a/b%20c");
        assert_eq!(encode_name("caf\u{e9}?#%"), "caf%C3%A9%3F%23%25");
        for name in ["chat-1", "a/b c", "caf\u{e9}?#%+&=", "\u{1F600}"] {
            assert_eq!(percent_decode(&encode_name(name)).as_deref(), Some(name));
            assert_eq!(
                fork_source(&format!("{PREFIX}{}", encode_name(name)), PREFIX).as_deref(),
                Ok(name)
            );
        }
    }
}
