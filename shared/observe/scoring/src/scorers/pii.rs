//! PII detectors over text: email addresses, phone numbers, payment card numbers (Luhn)
//! and IBANs (ISO 13616 mod-97). Each returns the byte ranges of its matches, in order and
//! never overlapping. They are hand-written scanners, not regexes, because each needs a
//! check a regex cannot make (a checksum, a number's grouping), and they skip most text at
//! memchr speed.
//!
//! Precision over recall: a detector flags what is very likely the thing, and leaves
//! numbers that merely could be (a bare run of ten digits, a date, an order number).

use std::ops::Range;

/// Email addresses: `local@domain.tld`, ASCII, with a dotted domain whose last label is two
/// or more letters. Trailing dots and hyphens (sentence punctuation) are not part of it.
pub fn emails(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut floor = 0;
    let local_char = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    for at in memchr_iter(b'@', bytes) {
        if at < floor {
            continue;
        }
        let mut start = at;
        while start > floor && local_char(bytes[start - 1]) {
            start -= 1;
        }
        // A local part neither starts nor ends with a dot.
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        if start == at || bytes[at - 1] == b'.' {
            continue;
        }
        let mut end = at + 1;
        while end < bytes.len() && domain_char(bytes[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let labels: Vec<&str> = domain.split('.').collect();
        let valid = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if valid {
            found.push(start..end);
            floor = end;
        }
    }
    found
}

/// Phone numbers, in one of three shapes, each a run of digit groups separated by single
/// spaces, hyphens or dots (parentheses around one group allowed):
///
/// - international: `+` and 8 to 15 digits (E.164), e.g. `+44 20 7946 0958`, `+4915112345678`;
/// - North American: 3-3-4 digits with separators, area code not starting with 0 or 1,
///   optionally after `1`, e.g. `(555) 123-4567`, `1-800-555-0199`;
/// - national with a trunk `0`: 9 to 11 digits in groups of 2 to 5, e.g. `020 7946 0958`,
///   `06 12 34 56 78`.
///
/// Not flagged: bare digit runs (order numbers, ids), dates (`2024-01-15`, `05.12.2024`:
/// too few digits), years and lists of them (`1999 2000 2001`: no shape fits), numbers glued
/// to letters, `#`, `/` or `:`. When a run of space-separated groups has a phone number in
/// it at its start (`call 555 123 4567 2 times`), the phone number alone is flagged.
pub fn phones(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    for run in digit_runs(text, b" -.", true) {
        found.extend(best_subruns(text, &run, 8, phone_shape));
    }
    found
}

/// Payment card numbers: 13 to 19 digits starting with 2 to 6 (the card networks' ranges),
/// passing the Luhn check, written bare or in groups of 4 (the last 1 to 4), or 4-6-5 / 4-6-4
/// (Amex, Diners), separated by single spaces or hyphens used consistently.
pub fn cards(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    for run in digit_runs(text, b" -", false) {
        found.extend(best_subruns(text, &run, 5, card_shape));
    }
    found
}

/// IBANs: a country code with a known IBAN length, 2 check digits and the account number,
/// bare or in groups separated by single spaces (`DE89 3704 0044 0532 0130 00`), passing the
/// mod-97 check. Letters of either case.
pub fn ibans(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let starts = bytes[i].is_ascii_alphabetic()
            && bytes[i + 1].is_ascii_alphabetic()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && !preceded_by_word(text, i);
        if !starts {
            i += 1;
            continue;
        }
        let country = [
            bytes[i].to_ascii_uppercase(),
            bytes[i + 1].to_ascii_uppercase(),
        ];
        let Some(length) = iban_length(&country) else {
            i += 1;
            continue;
        };
        // Collect `length` alphanumerics, allowing one space between groups.
        let mut chars = Vec::with_capacity(length);
        let mut j = i;
        while j < bytes.len() && chars.len() < length {
            let b = bytes[j];
            if b.is_ascii_alphanumeric() {
                chars.push(b.to_ascii_uppercase());
                j += 1;
            } else if b == b' '
                && j > i
                && bytes[j - 1] != b' '
                && bytes.get(j + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                j += 1;
            } else {
                break;
            }
        }
        let complete = chars.len() == length && !followed_by_word(text, j);
        if complete && iban_checksum_ok(&chars) {
            found.push(i..j);
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

/// The Luhn check over ASCII digits.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// ISO 13616's check over an IBAN's uppercase alphanumerics: the first four moved to the end,
/// letters as 10..=35, the number mod 97 is 1.
pub fn iban_checksum_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// The IBAN length of a country (the SWIFT IBAN registry); `None` for a country without
/// IBANs.
fn iban_length(country: &[u8; 2]) -> Option<usize> {
    #[rustfmt::skip]
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20),
        (b"BE", 16), (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28),
        (b"CH", 21), (b"CR", 22), (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27),
        (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24), (b"FI", 18),
        (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23),
        (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22),
        (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30),
        (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20), (b"LU", 20),
        (b"LV", 21), (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19),
        (b"MN", 20), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NI", 28), (b"NL", 18),
        (b"NO", 15), (b"OM", 23), (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"PT", 25),
        (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33), (b"SA", 24), (b"SC", 31),
        (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"SO", 23),
        (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29),
        (b"VA", 22), (b"VG", 24), (b"XK", 20), (b"YE", 30),
    ];
    LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|&(_, length)| length)
}

/// One group of digits in a run, with what precedes it.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Byte range of the digits.
    start: usize,
    end: usize,
    /// Where the group's text starts: at `(` when parenthesised, at `+` for a run's first.
    outer_start: usize,
    /// Where it ends: after `)` when parenthesised.
    outer_end: usize,
    parenthesised: bool,
    /// The separator before it (`0` for the first group of a run).
    separator: u8,
}

/// Runs of digit groups separated by one of `separators` (and parentheses around a group
/// when `parens`), not glued to a word, `#`, `/`, `:`, `@`, or another number (`3.5`).
fn digit_runs(text: &str, separators: &[u8], parens: bool) -> Vec<(bool, Vec<Group>)> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let plus = b == b'+' && parens;
        let opens = b == b'(' && parens;
        if !(b.is_ascii_digit() || plus || opens) || glued_before(text, i) {
            i += 1;
            continue;
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut j = if plus { i + 1 } else { i };
        let mut separator = 0u8;
        loop {
            // One group: `(digits)` or `digits`.
            let outer_start = if groups.is_empty() { i } else { j };
            let parenthesised = parens && bytes.get(j) == Some(&b'(');
            let digits_start = if parenthesised { j + 1 } else { j };
            let mut k = digits_start;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            if k == digits_start || (parenthesised && bytes.get(k) != Some(&b')')) {
                break;
            }
            let outer_end = if parenthesised { k + 1 } else { k };
            groups.push(Group {
                start: digits_start,
                end: k,
                outer_start,
                outer_end,
                parenthesised,
                separator,
            });
            j = outer_end;
            // The separator to the next group: one of `separators`, or none before `(`
            // / after `)`.
            match bytes.get(j) {
                Some(&s)
                    if separators.contains(&s)
                        && bytes
                            .get(j + 1)
                            .is_some_and(|&n| n.is_ascii_digit() || (parens && n == b'(')) =>
                {
                    separator = s;
                    j += 1;
                }
                Some(b'(') if parens && parenthesised => break,
                Some(b'(') if parens => separator = b'(',
                Some(d) if d.is_ascii_digit() && parenthesised => separator = b')',
                _ => break,
            }
        }
        let Some(last) = groups.last() else {
            i += 1;
            continue;
        };
        let end = last.outer_end;
        if !glued_after(text, end) {
            runs.push((plus, groups));
        }
        i = end.max(i + 1);
    }
    runs
}

/// The parts of `run` that `shape` accepts: the longest prefix of at most `max_groups`
/// groups that ends at a space (or the run's end), then the same over the rest of the run.
/// A part may also start after a space inside the run when it is written differently from
/// a list of space-separated numbers (it has hyphens, dots or parentheses:
/// `84775 435-425-3791`); a space-separated part picked out of the middle of such a list
/// (an IBAN's groups, a table's) would be a guess.
fn best_subruns(
    text: &str,
    run: &(bool, Vec<Group>),
    max_groups: usize,
    shape: fn(&str, bool, &[Group]) -> bool,
) -> Vec<Range<usize>> {
    let (plus, groups) = run;
    let cut_after = |e: usize| e + 1 == groups.len() || groups[e + 1].separator == b' ';
    let distinct = |part: &[Group]| {
        part.iter().any(|g| g.parenthesised)
            || part[1..]
                .iter()
                .any(|g| g.separator == b'-' || g.separator == b'.')
    };
    let mut found = Vec::new();
    let mut from = 0;
    // At the run's start, or right after a match.
    let mut fresh = true;
    while from < groups.len() {
        let last = groups.len().min(from + max_groups) - 1;
        // A run's `+` belongs to its first group only.
        let has_plus = *plus && from == 0;
        let end = (from..=last).rev().find(|&e| {
            let part = &groups[from..=e];
            cut_after(e) && (fresh || distinct(part)) && shape(text, has_plus, part)
        });
        match end {
            Some(end) => {
                found.push(groups[from].outer_start..groups[end].outer_end);
                from = end + 1;
                fresh = true;
            }
            None => {
                from += 1;
                while from < groups.len() && groups[from].separator != b' ' {
                    from += 1;
                }
                fresh = false;
            }
        }
    }
    found
}

fn digits_of<'a>(text: &'a str, groups: &'a [Group]) -> impl Iterator<Item = u8> + 'a {
    groups
        .iter()
        .flat_map(move |g| text.as_bytes()[g.start..g.end].iter().copied())
}

fn phone_shape(text: &str, plus: bool, groups: &[Group]) -> bool {
    let sizes: Vec<usize> = groups.iter().map(|g| g.end - g.start).collect();
    let count: usize = sizes.iter().sum();
    let first = text.as_bytes()[groups[0].start];
    // Parentheses only around a short group (an area code, `(0)`).
    if groups
        .iter()
        .any(|g| g.parenthesised && g.end - g.start > 4)
    {
        return false;
    }
    if plus {
        return (8..=15).contains(&count) && first != b'0';
    }
    // Dots or hyphens, but not both (`1.555-123` is no phone).
    let separators: Vec<u8> = groups[1..]
        .iter()
        .map(|g| g.separator)
        .filter(|s| *s == b'.' || *s == b'-')
        .collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let nanp = |groups: &[Group], sizes: &[usize]| {
        sizes == [3, 3, 4] && text.as_bytes()[groups[0].start] >= b'2' && !groups[2].parenthesised
    };
    if nanp(groups, &sizes) {
        return true;
    }
    if sizes.len() == 4 && sizes[0] == 1 && first == b'1' && !groups[0].parenthesised {
        return nanp(&groups[1..], &sizes[1..]);
    }
    first == b'0'
        && groups.len() >= 2
        && (9..=11).contains(&count)
        && sizes.iter().all(|s| (2..=5).contains(s))
}

fn card_shape(text: &str, _plus: bool, groups: &[Group]) -> bool {
    let sizes: Vec<usize> = groups.iter().map(|g| g.end - g.start).collect();
    let count: usize = sizes.iter().sum();
    if !(13..=19).contains(&count) {
        return false;
    }
    if groups[1..]
        .windows(2)
        .any(|w| w[0].separator != w[1].separator)
    {
        return false;
    }
    let grouped = match sizes.as_slice() {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&s| s == 4) && (1..=4).contains(last),
        [] => false,
    };
    let digits: Vec<u8> = digits_of(text, groups).collect();
    grouped && (b'2'..=b'6').contains(&digits[0]) && luhn_ok(&digits)
}

/// The char ending just before byte `at`.
fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn preceded_by_word(text: &str, at: usize) -> bool {
    char_before(text, at).is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn followed_by_word(text: &str, at: usize) -> bool {
    text[at..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// A number starting at `at` is part of something else: a word, `#123`, `12/…`, `3.5`,
/// `-5`, `10:30`.
fn glued_before(text: &str, at: usize) -> bool {
    match char_before(text, at) {
        None => false,
        Some(c) => c.is_alphanumeric() || "_#/:@$€£+.,-".contains(c),
    }
}

/// A number ending at `at` is part of something else: a word, `/…`, `:30`, `.5`, `-5`
/// (but not `555-123-4567:` or `….`).
fn glued_after(text: &str, at: usize) -> bool {
    let mut rest = text[at..].chars();
    match rest.next() {
        None => false,
        Some(c) if c.is_alphanumeric() || "_/@%".contains(c) => true,
        // Sentence punctuation ends a number; the same followed by a digit continues it.
        Some('.' | ',' | '-' | '+' | ':') => rest.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => false,
    }
}

/// Positions of `needle` in `haystack`.
fn memchr_iter(needle: u8, haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    haystack
        .iter()
        .enumerate()
        .filter(move |(_, b)| **b == needle)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(detect: fn(&str) -> Vec<Range<usize>>, text: &str) -> Vec<String> {
        detect(text)
            .into_iter()
            .map(|r| text[r].to_owned())
            .collect()
    }

    #[test]
    fn emails_are_found_without_trailing_punctuation() {
        assert_eq!(
            found(
                emails,
                "Write to ann.lee+help@example.co.uk. Or bob@x-y.io, thanks"
            ),
            ["ann.lee+help@example.co.uk", "bob@x-y.io"]
        );
        assert!(found(emails, "a @ b, me@localhost, @handle, x@1.2, a@b.c").is_empty());
        assert_eq!(found(emails, "é-mail: zoë.a@ex.com"), ["a@ex.com"]);
    }

    #[test]
    fn phones_in_the_three_shapes_are_found() {
        assert_eq!(
            found(
                phones,
                "Call (555) 123-4567, +44 20 7946 0958 or 1-800-555-0199; in Paris 06 12 34 56 78."
            ),
            [
                "(555) 123-4567",
                "+44 20 7946 0958",
                "1-800-555-0199",
                "06 12 34 56 78"
            ]
        );
        assert_eq!(found(phones, "+4915112345678"), ["+4915112345678"]);
        assert_eq!(found(phones, "555.123.4567"), ["555.123.4567"]);
        assert_eq!(found(phones, "call 555 123 4567 2 times"), ["555 123 4567"]);
        assert_eq!(found(phones, "+1 (555) 123-4567"), ["+1 (555) 123-4567"]);
        // From the development data: after a zip code, before a colon.
        assert_eq!(
            found(phones, "Torrey, Utah 84775 435-425-3791 x111"),
            ["435-425-3791"]
        );
        assert_eq!(
            found(phones, "Call the number 202-543-9994: it"),
            ["202-543-9994"]
        );
        assert_eq!(found(phones, "Room 12 (555) 123-4567"), ["(555) 123-4567"]);
    }

    #[test]
    fn dates_years_ids_and_amounts_are_not_phones() {
        for text in [
            "on 2024-01-15 at 10:30",
            "05.12.2024",
            "12/05/2024",
            "in 1999 2000 2001 and 2002",
            "order 5551234567 shipped",
            "order #555-123-4567",
            "ref ABC-555-123-4567",
            "123-456-7890",
            "version 1.2.3.4",
            "the 192.168.100.200 host",
            "costs 1,234,567,890 dollars",
            "0 1 2 3 4 5 6 7 8 9",
            "pi is 3.14159265358",
            "555-123-4567/89",
            "4111 1111 1111 1111",
            "1.555-123-4567",
            "DE89 3704 0044 0532 0130 00",
            "at 10:30:45",
        ] {
            assert!(
                found(phones, text).is_empty(),
                "{text}: {:?}",
                found(phones, text)
            );
        }
    }

    #[test]
    fn cards_pass_luhn_and_a_network_prefix() {
        assert_eq!(
            found(
                cards,
                "Visa 4111 1111 1111 1111, MC 5555-5555-5555-4444, Amex 378282246310005."
            ),
            [
                "4111 1111 1111 1111",
                "5555-5555-5555-4444",
                "378282246310005"
            ]
        );
        assert_eq!(found(cards, "3782 822463 10005"), ["3782 822463 10005"]);
        // Luhn fails; a 1 or 9 prefix; mixed separators; odd grouping; too long.
        for text in [
            "4111 1111 1111 1112",
            "1111111111111117",
            "9111111111111111",
            "4111-1111 1111-1111",
            "41111 11111 111111",
            "41111111111111111111111",
        ] {
            assert!(found(cards, text).is_empty(), "{text}");
        }
        assert_eq!(
            found(cards, "card 4111 1111 1111 1111 12 26"),
            ["4111 1111 1111 1111"]
        );
    }

    #[test]
    fn luhn_and_mod_97_are_the_standard_checks() {
        assert!(luhn_ok(b"79927398713"));
        assert!(!luhn_ok(b"79927398710"));
        assert!(iban_checksum_ok(b"GB82WEST12345698765432"));
        assert!(!iban_checksum_ok(b"GB82WEST12345698765433"));
    }

    #[test]
    fn ibans_bare_or_grouped_with_a_valid_checksum() {
        assert_eq!(
            found(
                ibans,
                "Pay DE89 3704 0044 0532 0130 00 or gb82west12345698765432, not NL91ABNA0417164301."
            ),
            ["DE89 3704 0044 0532 0130 00", "gb82west12345698765432"]
        );
        assert_eq!(
            found(ibans, "FR1420041010050500013M02606"),
            ["FR1420041010050500013M02606"]
        );
        // Too long for its country, glued to a word, unknown country.
        for text in [
            "DE893704004405320130001",
            "xDE89370400440532013000",
            "ZZ89370400440532013000",
        ] {
            assert!(found(ibans, text).is_empty(), "{text}");
        }
    }
}
