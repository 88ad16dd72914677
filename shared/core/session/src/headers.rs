//! Parsing of the protocol's request headers and query values, free of any HTTP types:
//! callers pass the raw header strings.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::error::ProtocolError;
use crate::model::{Expiry, ForkFrom, ProducerClaim};
use crate::offset::{Offset, truncate};

/// Largest producer epoch or sequence: 2^53-1, so JavaScript clients hold it exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Largest `Stream-TTL`, in seconds: 2^53-1 (about 285 million years), so JavaScript
/// clients hold it exactly and every backend's deadline arithmetic (ms in an i64) fits.
pub const MAX_TTL_SECONDS: u64 = MAX_SAFE_INTEGER;

/// A protocol header's raw value as text, refused unless it is visible ASCII (bytes 0x20
/// to 0x7E, and tab): a value a client sent must never be read as absent or as something
/// else. `header` names it in the error.
pub fn visible_ascii<'a>(header: &'static str, raw: &'a [u8]) -> Result<&'a str, ProtocolError> {
    match raw
        .iter()
        .find(|&&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        Some(&byte) => Err(ProtocolError::NonAsciiHeader { header, byte }),
        // Only ASCII is left, which is UTF-8.
        None => std::str::from_utf8(raw)
            .map_err(|_| ProtocolError::NonAsciiHeader { header, byte: 0x80 }),
    }
}

/// `Stream-Closed` counts only when it is exactly `true`, in any case (DS §4.1).
pub fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Parses `Stream-TTL` and `Stream-Expires-At` into one expiry.
pub fn expiry(ttl: Option<&str>, expires_at: Option<&str>) -> Result<Expiry, ProtocolError> {
    match (ttl, expires_at) {
        (Some(_), Some(_)) => Err(ProtocolError::TtlAndExpiresAt),
        (Some(ttl), None) => Ok(Expiry::Ttl {
            seconds: parse_ttl(ttl)?,
        }),
        (None, Some(at)) => Ok(Expiry::At {
            unix_ms: parse_rfc3339(at)?,
        }),
        (None, None) => Ok(Expiry::Never),
    }
}

fn parse_ttl(value: &str) -> Result<u64, ProtocolError> {
    canonical_integer(value)
        .filter(|&seconds| seconds <= MAX_TTL_SECONDS)
        .ok_or_else(|| ProtocolError::InvalidTtl(truncate(value)))
}

/// A non-negative decimal integer without sign, point, exponent or leading zeros.
fn canonical_integer(value: &str) -> Option<u64> {
    let canonical = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    canonical.then(|| value.parse().ok()).flatten()
}

/// An RFC 3339 instant as Unix ms; refused unless it falls in years 0000 to 9999 in UTC
/// (`9999-12-31T23:59:59-01:00` does not), the range [`format_rfc3339`] can write back.
fn parse_rfc3339(value: &str) -> Result<i64, ProtocolError> {
    let invalid = || ProtocolError::InvalidExpiresAt(truncate(value));
    let at = OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| invalid())?;
    let in_utc = at.checked_to_offset(UtcOffset::UTC).ok_or_else(invalid)?;
    if !(0..=9999).contains(&in_utc.year()) {
        return Err(invalid());
    }
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid())
}

/// Formats Unix milliseconds as RFC 3339 in UTC, for `Stream-Expires-At`.
pub fn format_rfc3339(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses the three producer headers, which come together or not at all.
pub fn producer(
    id: Option<&str>,
    epoch: Option<&str>,
    seq: Option<&str>,
) -> Result<Option<ProducerClaim>, ProtocolError> {
    match (id, epoch, seq) {
        (None, None, None) => Ok(None),
        (Some(id), Some(epoch), Some(seq)) => {
            if id.trim().is_empty() {
                return Err(invalid("Producer-Id", id, "must not be empty"));
            }
            Ok(Some(ProducerClaim {
                id: id.to_owned(),
                epoch: safe_integer("Producer-Epoch", epoch)?,
                seq: safe_integer("Producer-Seq", seq)?,
            }))
        }
        (None, _, _) => Err(ProtocolError::PartialProducerHeaders("Producer-Id")),
        (_, None, _) => Err(ProtocolError::PartialProducerHeaders("Producer-Epoch")),
        (_, _, None) => Err(ProtocolError::PartialProducerHeaders("Producer-Seq")),
    }
}

fn safe_integer(header: &'static str, value: &str) -> Result<u64, ProtocolError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if digits && n <= MAX_SAFE_INTEGER => Ok(n),
        _ => Err(invalid(
            header,
            value,
            "expected an integer from 0 to 2^53-1",
        )),
    }
}

fn invalid(header: &'static str, value: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::InvalidHeader {
        header,
        value: truncate(value),
        reason,
    }
}

/// Parses the fork headers of a PUT. `source` is the path of the source stream as sent; the
/// caller maps it to a stream name.
pub fn fork(
    source: Option<&str>,
    offset: Option<&str>,
    sub_offset: Option<&str>,
) -> Result<Option<ForkFrom>, ProtocolError> {
    let Some(source) = source else {
        if offset.is_some() {
            return Err(ProtocolError::ForkHeaderWithoutSource("Stream-Fork-Offset"));
        }
        if sub_offset.is_some() {
            return Err(ProtocolError::ForkHeaderWithoutSource(
                "Stream-Fork-Sub-Offset",
            ));
        }
        return Ok(None);
    };
    let offset = match offset {
        None | Some("-1") => offset.map(|_| Offset::ZERO),
        Some(token) => Some(Offset::parse(token)?),
    };
    let sub_offset = match sub_offset {
        None => 0,
        Some(value) => canonical_integer(value).ok_or_else(|| {
            invalid(
                "Stream-Fork-Sub-Offset",
                value,
                "expected a non-negative integer",
            )
        })?,
    };
    Ok(Some(ForkFrom {
        source: source.to_owned(),
        offset,
        sub_offset,
    }))
}

/// Milliseconds from the Unix epoch to 2024-10-09T00:00:00Z, where cursor intervals start.
const CURSOR_EPOCH_MS: i64 = 1_728_432_000_000;
/// Length of one cursor interval.
const CURSOR_INTERVAL_MS: i64 = 20_000;

/// The `Stream-Cursor` for a live response (DS §10.1): the current 20 s interval number,
/// pushed strictly past the client's cursor (with 1–3600 s of jitter) when the client is
/// already there, so CDN cache keys never cycle.
pub fn next_cursor(now_ms: i64, client: Option<&str>) -> String {
    let current = (now_ms - CURSOR_EPOCH_MS).max(0) / CURSOR_INTERVAL_MS;
    let client = client.and_then(|c| c.parse::<i64>().ok());
    let cursor = match client {
        Some(seen) if seen >= current => {
            let jitter_intervals = (fastrand::i64(1..=3600) * 1000 / CURSOR_INTERVAL_MS).max(1);
            // No server issued a cursor this close to i64::MAX: start again from now
            // rather than overflow.
            seen.checked_add(jitter_intervals).unwrap_or(current)
        }
        _ => current,
    };
    cursor.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_cursor_at_the_edge_of_i64_does_not_overflow() {
        let now = CURSOR_EPOCH_MS + 5 * CURSOR_INTERVAL_MS;
        let max = i64::MAX.to_string();
        assert_eq!(next_cursor(now, Some(&max)), "5");
        let seen = next_cursor(now, Some("7")).parse::<i64>().unwrap();
        assert!(seen > 7, "still strictly past an ordinary cursor: {seen}");
    }

    #[test]
    fn stream_closed_is_exactly_true() {
        assert!(is_true(Some("true")) && is_true(Some("TRUE")) && is_true(Some("True")));
        for other in [None, Some(""), Some("false"), Some("yes"), Some("1")] {
            assert!(!is_true(other));
        }
    }

    #[test]
    fn ttl_must_be_canonical_decimal() {
        assert_eq!(
            expiry(Some("3600"), None),
            Ok(Expiry::Ttl { seconds: 3600 })
        );
        assert_eq!(expiry(Some("0"), None), Ok(Expiry::Ttl { seconds: 0 }));
        for bad in ["+3600", "03600", "3600.0", "3.6e3", "", "-1", "abc", " 1"] {
            assert!(
                matches!(expiry(Some(bad), None), Err(ProtocolError::InvalidTtl(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            expiry(Some("1"), Some("2030-01-01T00:00:00Z")),
            Err(ProtocolError::TtlAndExpiresAt)
        );
    }

    #[test]
    fn ttl_is_at_most_2_pow_53_minus_1() {
        assert_eq!(
            expiry(Some("9007199254740991"), None),
            Ok(Expiry::Ttl {
                seconds: MAX_TTL_SECONDS
            })
        );
        // 2^53, 2^63 (which wrapped to a negative i64: the stream was gone at once), u64::MAX
        for too_long in [
            "9007199254740992",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let refused = expiry(Some(too_long), None);
            assert_eq!(
                refused,
                Err(ProtocolError::InvalidTtl(too_long.into())),
                "{too_long}"
            );
        }
        let message = ProtocolError::InvalidTtl("x".into()).to_string();
        assert!(
            message.contains("Stream-TTL") && message.contains("2^53-1"),
            "{message}"
        );
    }

    #[test]
    fn expires_at_must_be_writable_back_in_utc() {
        let Ok(Expiry::At { unix_ms }) = expiry(None, Some("9999-12-31T23:59:59.999Z")) else {
            panic!("the last representable instant is accepted");
        };
        assert_eq!(format_rfc3339(unix_ms), "9999-12-31T23:59:59.999Z");
        for out_of_range in [
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T23:00:00-23:59",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert!(
                matches!(
                    expiry(None, Some(out_of_range)),
                    Err(ProtocolError::InvalidExpiresAt(_))
                ),
                "{out_of_range}"
            );
        }
        assert!(expiry(None, Some("0000-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn header_values_must_be_visible_ascii() {
        assert_eq!(visible_ascii("Stream-Seq", b"abc 1\t~"), Ok("abc 1\t~"));
        assert_eq!(visible_ascii("Stream-Seq", b""), Ok(""));
        for (raw, byte) in [
            (&b"caf\xc3\xa9"[..], 0xC3),
            (b"\xff", 0xFF),
            (b"a\x7fb", 0x7F),
            (b"a\x01", 0x01),
        ] {
            let refused = visible_ascii("Stream-Seq", raw);
            assert_eq!(
                refused,
                Err(ProtocolError::NonAsciiHeader {
                    header: "Stream-Seq",
                    byte
                })
            );
            let message = refused.unwrap_err().to_string();
            assert!(message.contains("Stream-Seq"), "{message}");
        }
    }

    #[test]
    fn expires_at_is_rfc3339() {
        let Ok(Expiry::At { unix_ms }) = expiry(None, Some("2030-01-01T00:00:00.5+01:00")) else {
            panic!("expected an absolute expiry");
        };
        assert_eq!(unix_ms, 1_893_452_400_500);
        assert_eq!(format_rfc3339(unix_ms), "2029-12-31T23:00:00.5Z");
        assert!(expiry(None, Some("tomorrow")).is_err());
    }

    #[test]
    fn producer_headers_come_together_and_are_safe_integers() {
        assert_eq!(producer(None, None, None), Ok(None));
        let claim = producer(Some("w"), Some("1"), Some("2")).unwrap().unwrap();
        assert_eq!((claim.epoch, claim.seq), (1, 2));
        assert!(matches!(
            producer(Some("w"), Some("1"), None),
            Err(ProtocolError::PartialProducerHeaders("Producer-Seq"))
        ));
        assert!(producer(Some(""), Some("1"), Some("2")).is_err());
        assert!(producer(Some("w"), Some("-1"), Some("2")).is_err());
        assert!(producer(Some("w"), Some("1.5"), Some("2")).is_err());
        assert!(producer(Some("w"), Some("9007199254740992"), Some("0")).is_err());
        assert!(producer(Some("w"), Some("9007199254740991"), Some("0")).is_ok());
    }

    #[test]
    fn fork_headers_need_a_source() {
        assert_eq!(fork(None, None, None), Ok(None));
        assert!(fork(None, Some("0000000000000000_0000000000000001"), None).is_err());
        assert!(fork(None, None, Some("0")).is_err());
        let f = fork(
            Some("/v1/stream/a"),
            Some("0000000000000000_0000000000000003"),
            Some("2"),
        )
        .unwrap()
        .unwrap();
        assert_eq!((f.offset, f.sub_offset), (Some(Offset(3)), 2));
        assert!(fork(Some("a"), Some("bogus"), None).is_err());
        for bad in ["-1", "abc", "1.5", "05", "+1", ""] {
            assert!(fork(Some("a"), None, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_advance_past_the_clients() {
        let now = CURSOR_EPOCH_MS + 1000 * CURSOR_INTERVAL_MS + 5;
        assert_eq!(next_cursor(now, None), "1000");
        assert_eq!(next_cursor(now, Some("999")), "1000");
        for _ in 0..100 {
            let next: i64 = next_cursor(now, Some("1000")).parse().unwrap();
            assert!((1001..=1180).contains(&next), "{next}");
        }
    }
}
