//! Tokens and sentences with Unicode scalar (char) offsets, for comparing an answer with the
//! text it should rest on. Deliberately simple and language-agnostic beyond English function
//! words: lower-cased alphanumeric runs, a light suffix stemmer, and sentence breaks at
//! `.`/`!`/`?` followed by white space and at line breaks.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// One word or number of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Char offsets into the text, end exclusive.
    pub start: usize,
    pub end: usize,
    /// Lower-cased text, with a number's `,` thousands separators dropped.
    pub text: String,
    /// A number (starts with a digit).
    pub number: bool,
    /// Started with an upper-case letter not at the start of a sentence.
    pub capitalised: bool,
    /// [`stem`] of the lower-cased text, hashed.
    pub id: u64,
    /// A function word or a word about the passages themselves (see [`is_stopword`]).
    pub stop: bool,
    /// Hash of the first [`PREFIX`] chars of a word at least that long (else 0): words
    /// sharing it are taken as forms of one word (`conserve`/`conservation`).
    pub prefix: u64,
}

/// Splits `text` into tokens: runs of letters, or numbers (digits with inner `.`/`,`/`:`
/// between digits, so `2.5`, `1,000` and `10:30` stay whole).
pub fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut sentence_start = true;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphabetic() || is_inner_apostrophe(&chars, i)) {
                i += 1;
            }
            // Lower-cased in one pass; "it's" -> "it": the clitic carries nothing to check.
            let mut word = String::with_capacity(i - start);
            for &ch in chars[start..i]
                .iter()
                .take_while(|&&ch| ch != '\'' && ch != '’')
            {
                word.extend(ch.to_lowercase());
            }
            let capitalised = c.is_uppercase() && !sentence_start;
            out.push(make(start, i, word, false, capitalised));
            sentence_start = false;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',' | ':')
                        && i + 1 < chars.len()
                        && chars[i + 1].is_ascii_digit()
                        && i > start))
            {
                i += 1;
            }
            let number: String = chars[start..i].iter().filter(|&&c| c != ',').collect();
            // A list item's number ("2. Rinse") is layout, not a quantity.
            let marker = sentence_start
                && matches!(chars.get(i), Some('.' | ')'))
                && chars.get(i + 1).is_none_or(|c| c.is_whitespace());
            if !marker {
                out.push(make(start, i, number, true, false));
            }
            sentence_start = false;
        } else {
            if matches!(c, '.' | '!' | '?' | ':' | '\n' | '*' | '-' | '(' | '"') {
                sentence_start = true;
            }
            i += 1;
        }
    }
    out
}

fn is_inner_apostrophe(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '\'' | '’')
        && i > 0
        && chars[i - 1].is_alphabetic()
        && chars.get(i + 1).is_some_and(|c| c.is_alphabetic())
}

fn make(start: usize, end: usize, text: String, number: bool, capitalised: bool) -> Token {
    let stop = !number && is_stopword(&text);
    let id = hash_str(stem(&text));
    let prefix = match text.char_indices().nth(PREFIX) {
        Some((end, _)) if !number => hash_str(&text[..end]),
        None if !number && text.chars().count() == PREFIX => hash_str(&text),
        _ => 0,
    };
    Token {
        prefix,
        start,
        end,
        text,
        number,
        capitalised,
        id,
        stop,
    }
}

/// The length of the prefix that makes two words forms of one (see [`Token::prefix`]).
pub const PREFIX: usize = 5;

/// Strips one common English inflectional suffix, so `plants`/`planted`/`planting` meet.
pub fn stem(word: &str) -> &str {
    const SUFFIXES: [&str; 6] = ["ing", "edly", "ed", "es", "s", "ly"];
    for suffix in SUFFIXES {
        if word.len() > suffix.len() + 3 && word.ends_with(suffix) {
            return &word[..word.len() - suffix.len()];
        }
    }
    word
}

/// English function words, the words answers use to talk about their passages
/// (`passage`, `according`, `mentioned`), and discourse words that organise an answer
/// rather than state a fact (`however`, `additionally`, `steps`, `example`): present in
/// answers on any topic, evidence of nothing.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

// Sorted, for binary search.
const STOPWORDS: [&str; 205] = [
    "a",
    "able",
    "about",
    "above",
    "according",
    "additionally",
    "after",
    "again",
    "all",
    "also",
    "always",
    "am",
    "an",
    "and",
    "answer",
    "any",
    "are",
    "as",
    "at",
    "based",
    "be",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "clear",
    "clearly",
    "conclusion",
    "context",
    "could",
    "d",
    "detail",
    "details",
    "did",
    "different",
    "directly",
    "do",
    "does",
    "doing",
    "don",
    "done",
    "during",
    "each",
    "easy",
    "else",
    "essential",
    "example",
    "examples",
    "explicitly",
    "few",
    "finally",
    "first",
    "follow",
    "following",
    "for",
    "from",
    "further",
    "furthermore",
    "generally",
    "given",
    "had",
    "has",
    "have",
    "having",
    "he",
    "help",
    "helpful",
    "hence",
    "her",
    "here",
    "his",
    "how",
    "however",
    "i",
    "if",
    "important",
    "in",
    "include",
    "including",
    "information",
    "instance",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "key",
    "ll",
    "m",
    "main",
    "may",
    "me",
    "mentioned",
    "might",
    "more",
    "moreover",
    "most",
    "must",
    "my",
    "next",
    "no",
    "nor",
    "not",
    "note",
    "noted",
    "now",
    "o",
    "of",
    "often",
    "on",
    "once",
    "one",
    "only",
    "onto",
    "or",
    "other",
    "our",
    "over",
    "overall",
    "own",
    "passage",
    "passages",
    "possible",
    "provide",
    "provided",
    "question",
    "re",
    "s",
    "same",
    "second",
    "several",
    "shall",
    "she",
    "should",
    "simple",
    "so",
    "some",
    "specific",
    "specifically",
    "stated",
    "step",
    "steps",
    "such",
    "summary",
    "sure",
    "t",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "therefore",
    "these",
    "they",
    "third",
    "this",
    "those",
    "three",
    "through",
    "thus",
    "tip",
    "tips",
    "to",
    "too",
    "two",
    "typically",
    "unable",
    "under",
    "us",
    "use",
    "used",
    "using",
    "usually",
    "various",
    "ve",
    "very",
    "was",
    "way",
    "ways",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "y",
    "you",
    "your",
    "yours",
];

/// FNV-1a: stable across runs and platforms, and fast on short words.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hashes already-hashed ids: passes them through (mixing once) instead of SipHash.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A set of token ids.
pub type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// The id of an ordered pair of token ids.
pub fn pair_id(a: u64, b: u64) -> u64 {
    a.rotate_left(21) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Sentence (or list item, or line) char ranges of `text`, trimmed, skipping blank ones.
/// Breaks after `.`, `!` or `?` followed by white space, and at every line break.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let end_here = c == '\n'
            || (matches!(c, '.' | '!' | '?')
                && chars.get(i + 1).is_some_and(|n| n.is_whitespace())
                && !is_abbreviation(&chars, start, i));
        if end_here {
            let end = if c == '\n' { i } else { i + 1 };
            push_trimmed(&chars, start, end, &mut out);
            start = i + 1;
        }
        i += 1;
    }
    push_trimmed(&chars, start, chars.len(), &mut out);
    out
}

// "e.g. x", "Dr. Smith", "No. 5": a short token before the dot is rarely a sentence's end.
// A list marker ("3. ") does not end a sentence either.
fn is_abbreviation(chars: &[char], start: usize, dot: usize) -> bool {
    let marker = &chars[start..dot];
    if marker.iter().any(|c| !c.is_whitespace())
        && marker
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_whitespace())
    {
        return true;
    }
    let mut j = dot;
    while j > start && chars[j - 1].is_alphabetic() {
        j -= 1;
    }
    let word: String = chars[j..dot].iter().collect();
    matches!(
        word.to_lowercase().as_str(),
        "e" | "g" | "i" | "dr" | "mr" | "mrs" | "ms" | "st" | "vs" | "etc" | "no" | "approx"
    ) && word.len() <= 3
        && (word != "no" || chars.get(dot + 2).is_some_and(|c| c.is_ascii_digit()))
}

fn push_trimmed(chars: &[char], mut start: usize, mut end: usize, out: &mut Vec<(usize, usize)>) {
    while start < end && chars[start].is_whitespace() {
        start += 1;
    }
    while end > start && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    if end > start {
        out.push((start, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS;
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn tokens_keep_char_offsets_and_whole_numbers() {
        let text = "Café costs 1,250.50 dollars; it's Paris.\n2. Go";
        let tokens = tokenize(text);
        let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            words,
            ["café", "costs", "1250.50", "dollars", "it", "paris", "go"]
        );
        let chars: Vec<char> = text.chars().collect();
        let cafe: String = chars[tokens[0].start..tokens[0].end].iter().collect();
        assert_eq!(cafe, "Café");
        assert!(tokens[2].number);
        assert!(tokens[5].capitalised && !tokens[0].capitalised);
    }

    #[test]
    fn sentences_break_at_stops_and_lines_not_abbreviations() {
        let text = "One is here, e.g. this. Two?\n\n3. Three\nFour";
        let got: Vec<String> = sentences(text)
            .into_iter()
            .map(|(a, b)| text.chars().skip(a).take(b - a).collect())
            .collect();
        assert_eq!(got, ["One is here, e.g. this.", "Two?", "3. Three", "Four"]);
    }
}
