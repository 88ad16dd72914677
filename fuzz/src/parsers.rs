//! Targets for the pure parsers: offsets, protocol headers, content framing, forks, tokens.
//! Besides not panicking, each checks the parser's own promises (round trips, counts).

use agentwire_auth::{Action, Claims, Principal, Signer, bearer};
use agentwire_session::content::{
    self, Mode, Payload, content_types_match, json_messages, media_type, slice_record,
    validate_content_type,
};
use agentwire_session::fork::{clip, segments};
use agentwire_session::headers::{self, MAX_SAFE_INTEGER};
use agentwire_session::{Expiry, Offset, ReadFrom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The input as lines; a missing line, or one that is a lone NUL, is an absent value.
pub(crate) fn fields(data: &[u8]) -> Vec<Option<String>> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(|line| (line != "\0").then(|| line.to_owned()))
        .collect()
}

fn field(fields: &[Option<String>], i: usize) -> Option<&str> {
    fields.get(i).and_then(|f| f.as_deref())
}

/// `Offset::parse` and `ReadFrom::parse`: accepted tokens are canonical (they print back as
/// sent), and every offset's token parses back to it.
pub fn offset(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ReadFrom::parse(Some(&text)) {
        Ok(ReadFrom::At(offset)) => assert_eq!(offset.to_string(), text, "not canonical"),
        Ok(ReadFrom::Start) => assert_eq!(text, "-1"),
        Ok(ReadFrom::Now) => assert_eq!(text, "now"),
        Err(e) => assert!(e.to_string().len() < 512, "error message grows with input"),
    }
    if let Ok(offset) = Offset::parse(&text) {
        assert_eq!(offset.to_string(), text);
    }
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(data) {
        *w = *b;
    }
    let n = Offset(u64::from_le_bytes(word));
    assert_eq!(Offset::parse(&n.to_string()).ok(), Some(n));
}

/// The header parsers of `agentwire_session::headers`, on lines 0–2 of the input.
pub fn headers(data: &[u8]) {
    let f = fields(data);
    let (a, b, c) = (field(&f, 0), field(&f, 1), field(&f, 2));
    let _ = headers::is_true(a);
    match headers::expiry(a, b) {
        Ok(Expiry::Ttl { seconds }) => assert_eq!(Some(seconds.to_string().as_str()), a),
        Ok(Expiry::At { unix_ms }) => {
            let formatted = headers::format_rfc3339(unix_ms);
            let again = headers::expiry(None, Some(&formatted));
            assert_eq!(again, Ok(Expiry::At { unix_ms }), "{formatted:?}");
        }
        Ok(Expiry::Never) => assert!(a.is_none() && b.is_none()),
        Err(e) => assert!(e.to_string().len() < 512),
    }
    if let Ok(Some(claim)) = headers::producer(a, b, c) {
        assert!(claim.epoch <= MAX_SAFE_INTEGER && claim.seq <= MAX_SAFE_INTEGER);
        // Leading zeros are accepted; the value is the decimal number sent.
        assert_eq!(b.and_then(|b| b.parse().ok()), Some(claim.epoch));
        assert_eq!(c.and_then(|c| c.parse().ok()), Some(claim.seq));
    }
    let _ = headers::fork(a, b, c);
    // A client's `Stream-Cursor`/`cursor` is arbitrary text; the next cursor must be a number.
    let now_ms = i64::from_le_bytes(first_word(data));
    // `now` is the server's clock, not input: any time from 1970 to about 3084.
    for now in [now_ms.rem_euclid(1 << 45), 1_795_694_400_000] {
        let cursor = headers::next_cursor(now, a);
        assert!(cursor.parse::<i64>().is_ok(), "{cursor:?}");
    }
    let _ = headers::format_rfc3339(now_ms);
}

fn first_word(data: &[u8]) -> [u8; 8] {
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(data) {
        *w = *b;
    }
    word
}

/// Content types (line 0) and the framing of bodies (the rest): JSON arrays flatten one
/// level, the stored record splits back into exactly `units` valid JSON messages, and any
/// slice of it holds the units asked for.
pub fn content(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let content_type = String::from_utf8_lossy(head);
    let media = media_type(&content_type);
    if validate_content_type(&content_type).is_ok() {
        assert!(media.contains('/'));
    }
    assert!(content_types_match(&content_type, &media));
    let _ = content::content_types_match(&content_type, content::DEFAULT_CONTENT_TYPE);
    let allow_empty = head.len() % 2 == 0;
    for mode in [Mode::of(&content_type), Mode::Json, Mode::Bytes] {
        let Ok(payload) = Payload::frame(mode, Bytes::copy_from_slice(body), allow_empty) else {
            assert_eq!(mode, Mode::Json, "bytes always frame");
            continue;
        };
        check_record(mode, &payload);
    }
}

/// A framed payload's record is consistent with its unit count.
fn check_record(mode: Mode, payload: &Payload) {
    let units = usize::try_from(payload.units).expect("units fit in memory");
    match mode {
        Mode::Bytes => assert_eq!(payload.data.len(), units),
        Mode::Json if units == 0 => assert!(payload.data.is_empty()),
        Mode::Json => {
            let messages = json_messages(&payload.data);
            assert_eq!(messages.len(), units, "record splits into its units");
            for message in &messages {
                let parsed: Result<&serde_json::value::RawValue, _> =
                    serde_json::from_slice(message);
                assert!(parsed.is_ok(), "a stored message is valid JSON");
            }
        }
    }
    if units > 0 {
        let (from, to) = (units as u64 / 3, units as u64 - units as u64 / 4);
        let part = slice_record(mode, &payload.data, from, to);
        let got = match mode {
            Mode::Bytes => part.len(),
            Mode::Json if part.is_empty() => 0,
            Mode::Json => json_messages(&part).len(),
        };
        assert_eq!(got as u64, to - from);
    }
}

/// The fork headers (lines 0–2), then how a fork's history is stitched: segments tile
/// `[0, tail)` in order, and clipping a record keeps exactly the asked-for units.
pub fn fork(data: &[u8]) {
    let f = fields(data);
    let _ = headers::fork(field(&f, 0), field(&f, 1), field(&f, 2));
    let numbers: Vec<u64> = data
        .chunks(4)
        .map(|c| c.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)) % 1000)
        .collect();
    let tail = numbers.first().copied().unwrap_or(0);
    let chain: Vec<(usize, Option<u64>)> = numbers
        .iter()
        .skip(1)
        .take(16)
        .enumerate()
        .map(|(i, &n)| (i, (n % 7 != 0).then_some(n)))
        .chain(std::iter::once((99, None)))
        .collect();
    let got = segments(chain, tail);
    let mut at = 0;
    for segment in got.iter().skip_while(|s| s.from == s.to && s.from == 0) {
        assert_eq!(segment.from, at, "{got:?}");
        assert!(segment.from <= segment.to, "{got:?}");
        at = segment.to;
    }
    assert_eq!(at, tail, "{got:?}");

    let body = data.get(data.len() / 2..).unwrap_or_default();
    for mode in [Mode::Json, Mode::Bytes] {
        let Ok(payload) = Payload::frame(mode, Bytes::copy_from_slice(body), false) else {
            continue;
        };
        let start = numbers.get(1).copied().unwrap_or(0);
        let end = start + payload.units;
        let (lo, hi) = (
            numbers.get(2).copied().unwrap_or(0),
            numbers.get(3).copied().unwrap_or(u64::MAX),
        );
        match clip(mode, (start, end), payload.data.clone(), 7, (lo, hi)) {
            None => assert!(start.max(lo) >= end.min(hi)),
            Some(record) => {
                assert_eq!((record.start.0, record.end.0), (start.max(lo), end.min(hi)));
                let units = match mode {
                    Mode::Bytes => record.data.len(),
                    Mode::Json => json_messages(&record.data).len(),
                };
                assert_eq!(units as u64, record.end.0 - record.start.0);
            }
        }
    }
}

const SECRET: &[u8] = b"fuzzing secret, 32 bytes or more....";

/// Tokens: `bearer` on the whole input, `Signer::verify` on it as a token, and on a
/// correctly signed token whose claims are the input (so claim parsing is reached); a
/// verified token's claims mint a token that verifies to the same claims.
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let signer = Signer::new(SECRET);
    if let Some(token) = bearer(Some(&text)) {
        assert!(text.len() >= token.len());
        let _ = signer.verify(token, 0);
    }
    let _ = signer.verify(&text, 0);
    let body = B64.encode(data);
    let signed = format!("aw1.{body}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).expect("any key length");
    mac.update(signed.as_bytes());
    let tag = B64.encode(mac.finalize().into_bytes());
    let token = format!("{signed}.{tag}");
    let now = i64::from_le_bytes(first_word(data));
    if let Ok(claims) = signer.verify(&token, now) {
        check_claims(&signer, claims, &text, now);
    }
    if let Ok(claims) = signer.verify(&token, i64::MIN) {
        check_claims(&signer, claims, &text, i64::MIN);
    }
}

fn check_claims(signer: &Signer, claims: Claims, session: &str, now: i64) {
    let again = signer.verify(&signer.mint(&claims), now);
    assert_eq!(again.as_ref(), Ok(&claims));
    let principal = Principal { claims };
    for action in [
        Action::Read,
        Action::Append,
        Action::Control,
        Action::Delete,
    ] {
        let _ = principal.authorize(session, action);
    }
    let _ = principal.stored_name(session);
    let _ = principal.user();
}
