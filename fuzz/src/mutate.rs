//! Byte-level mutations for the stable engine: libFuzzer's usual moves without coverage
//! feedback (bit flips, interesting numbers, dictionary tokens, splices, cuts).

use crate::harness::MAX_INPUT_BYTES;

/// Numbers that sit on boundaries parsers get wrong.
const INTERESTING: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1",
    "00",
    "255",
    "65536",
    "2147483647",
    "4294967295",
    "9007199254740991",
    "9007199254740992",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e999",
    "0.5",
    "9999999999999999",
    "0000000000000000",
];

/// Tokens every format here shares.
const COMMON: &[&str] = &[
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\r\n",
    "\n",
    ",",
    ":",
    ";",
    "=",
    "&",
    "%",
    "%00",
    "%ff",
    "[",
    "]",
    "{",
    "}",
    "null",
    "true",
    "false",
    "\u{feff}",
    "\u{10ffff}",
    "é",
    "*",
    "/",
];

/// Applies one to eight random mutations to `input`, drawing splices from `other`.
pub fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, other: &[u8], dictionary: &[&str]) {
    for _ in 0..rng.usize(1..=8) {
        mutate_once(rng, input, other, dictionary);
    }
    input.truncate(MAX_INPUT_BYTES);
}

fn mutate_once(rng: &mut fastrand::Rng, input: &mut Vec<u8>, other: &[u8], dictionary: &[&str]) {
    let at = |rng: &mut fastrand::Rng, v: &Vec<u8>| rng.usize(..=v.len());
    match rng.u8(..10) {
        0 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] = rng.u8(..);
        }
        2 => {
            let i = at(rng, input);
            input.insert(i, rng.u8(..));
        }
        3 if !input.is_empty() => {
            let from = rng.usize(..input.len());
            let to = (from + rng.usize(1..=16)).min(input.len());
            input.drain(from..to);
        }
        4 if !input.is_empty() => {
            // Repeat a stretch: deep nesting, long runs, many elements.
            let from = rng.usize(..input.len());
            let to = (from + rng.usize(1..=32)).min(input.len());
            let chunk = input[from..to].to_vec();
            let times = [1, 2, 8, 64, 512][rng.usize(..5)];
            let i = at(rng, input);
            for _ in 0..times {
                input.splice(i..i, chunk.iter().copied());
                if input.len() > MAX_INPUT_BYTES {
                    break;
                }
            }
        }
        5 => insert(rng, input, INTERESTING),
        6 if !dictionary.is_empty() => insert(rng, input, dictionary),
        7 => insert(rng, input, COMMON),
        8 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let cut = at(rng, input);
            let from = rng.usize(..other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        9 => replace_number(rng, input),
        _ => {
            let i = at(rng, input);
            input.truncate(i);
        }
    }
}

fn insert(rng: &mut fastrand::Rng, input: &mut Vec<u8>, tokens: &[&str]) {
    let token = tokens[rng.usize(..tokens.len())].as_bytes();
    let i = rng.usize(..=input.len());
    if rng.bool() || input.is_empty() {
        input.splice(i..i, token.iter().copied());
    } else {
        let end = (i + token.len()).min(input.len());
        input.splice(i..end, token.iter().copied());
    }
}

/// Replaces a run of digits with an interesting number, so counters and offsets get probed.
fn replace_number(rng: &mut fastrand::Rng, input: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..input.len())
        .filter(|&i| input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return insert(rng, input, INTERESTING);
    }
    let start = starts[rng.usize(..starts.len())];
    let end = (start..input.len())
        .find(|&i| !input[i].is_ascii_digit())
        .unwrap_or(input.len());
    let number = INTERESTING[rng.usize(..INTERESTING.len())].as_bytes();
    input.splice(start..end, number.iter().copied());
}
