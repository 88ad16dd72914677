//! `rules`: a tenant's checks on what was said, each its own verdict.
//!
//! **What it measures.** For every configured rule, whether any message of the roles it
//! applies to (the assistant's, by default) contains what the rule forbids: one of a list
//! of phrases (case-insensitive, whole words), a match of a regular expression, or a kind
//! of PII ([`super::pii`]: email addresses, phone numbers, card numbers passing the Luhn
//! check, IBANs passing the mod-97 check). One record per rule and trace, named
//! `rules.<rule id>`: value 1 and label `pass` when nothing matched, value 0 and label
//! `violated` when something did; evidence is the span and char range (Unicode scalar
//! offsets into that message's text, end exclusive) of every match, up to `max_evidence`;
//! the explanation says what matched and where without quoting the matched text, except a
//! phrase from the rule itself. No record for a rule when the trace has no non-empty text
//! of the roles it applies to.
//!
//! ```toml
//! [rules]
//! applies_to = ["assistant"]   # default roles: assistant, user, tool, system
//! max_evidence = 100           # match ranges kept per rule; all are counted
//!
//! [[rules.rule]]
//! id = "no-guarantees"
//! phrases = ["guaranteed returns", "risk-free"]
//!
//! [[rules.rule]]
//! id = "no-ssn"
//! pattern = '\b\d{3}-\d{2}-\d{4}\b'
//! applies_to = ["assistant", "user"]
//!
//! [[rules.rule]]
//! id = "no-cards"
//! pii = "card"                 # email | phone | card | iban
//! ```
//!
//! A rule has an `id` (1 to 64 of `A-Z a-z 0-9 _ - .`, unique) and exactly one of
//! `phrases`, `pattern` and `pii`. With no rule configured, the default set checks the
//! assistant's messages for the four kinds of PII: `no_pii_email`, `no_pii_phone`,
//! `no_pii_card`, `no_pii_iban`. Role `tool` checks tool results (a string result's text,
//! else the result's JSON) and messages of role `tool`.
//!
//! Patterns use the `regex` crate's syntax (no look-around or backreferences, so matching
//! is linear in the text); `(?i)` makes one case-insensitive. A compiled pattern may take at
//! most 1 MiB (`PATTERN_SIZE_LIMIT`), and one that matches the empty text is refused.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::record::Evidence;
use crate::scorers::pii;
use crate::scorers::{Outcome, Scorer};
use crate::view::TraceView;

/// The most memory one compiled pattern (or a rule's phrase list) may take: bounds the
/// time a tenant's configuration takes to build, and a pattern's match-time state.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The `[rules]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesOptions {
    /// The roles a rule checks when it names none. Default `["assistant"]`.
    pub applies_to: Vec<Role>,
    /// Match ranges kept as evidence per rule; matches beyond are counted in the
    /// explanation only. Default 100.
    pub max_evidence: usize,
    /// The rules; the default PII set when empty.
    pub rule: Vec<RuleOptions>,
}

impl Default for RulesOptions {
    fn default() -> Self {
        RulesOptions {
            applies_to: vec![Role::Assistant],
            max_evidence: 100,
            rule: Vec::new(),
        }
    }
}

/// One `[[rules.rule]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleOptions {
    /// The rule's id: its record is `rules.<id>`.
    pub id: String,
    /// Phrases that must not appear (case-insensitive, whole words, any whitespace between
    /// words).
    pub phrases: Option<Vec<String>>,
    /// A regular expression that must not match.
    pub pattern: Option<String>,
    /// A kind of PII that must not appear.
    pub pii: Option<PiiKind>,
    /// The roles checked; `[rules] applies_to` when absent.
    pub applies_to: Option<Vec<Role>>,
}

/// Whose text a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Assistant,
    User,
    /// Tool results, and messages of role `tool`.
    Tool,
    System,
}

impl Role {
    fn of_message(role: &str) -> Option<Role> {
        Some(match role {
            "assistant" => Role::Assistant,
            "user" => Role::User,
            "tool" => Role::Tool,
            "system" => Role::System,
            _ => return None,
        })
    }

    fn noun(self, n: usize) -> &'static str {
        match (self, n == 1) {
            (Role::Assistant, true) => "assistant message",
            (Role::Assistant, false) => "assistant messages",
            (Role::User, true) => "user message",
            (Role::User, false) => "user messages",
            (Role::Tool, true) => "tool result",
            (Role::Tool, false) => "tool results",
            (Role::System, true) => "system message",
            (Role::System, false) => "system messages",
        }
    }
}

/// The PII detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Iban,
}

impl PiiKind {
    /// Every detector, in the order the default rules check them.
    pub const ALL: [PiiKind; 4] = [PiiKind::Email, PiiKind::Phone, PiiKind::Card, PiiKind::Iban];

    /// The byte ranges of `text` this detector matches, in order.
    pub fn detect(self, text: &str) -> Vec<Range<usize>> {
        match self {
            PiiKind::Email => pii::emails(text),
            PiiKind::Phone => pii::phones(text),
            PiiKind::Card => pii::cards(text),
            PiiKind::Iban => pii::ibans(text),
        }
    }

    /// The detector's name in configuration (`email`, `phone`, `card`, `iban`).
    pub fn id(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
        }
    }

    fn noun(self, n: usize) -> &'static str {
        match (self, n == 1) {
            (PiiKind::Email, true) => "email address",
            (PiiKind::Email, false) => "email addresses",
            (PiiKind::Phone, true) => "phone number",
            (PiiKind::Phone, false) => "phone numbers",
            (PiiKind::Card, true) => "card number",
            (PiiKind::Card, false) => "card numbers",
            (PiiKind::Iban, true) => "IBAN",
            (PiiKind::Iban, false) => "IBANs",
        }
    }
}

/// What a rule looks for.
#[derive(Debug)]
enum Check {
    /// One regex of all the phrases, a capture group each, and the phrases as configured.
    Phrases(Regex, Vec<String>),
    Pattern(Regex),
    Pii(PiiKind),
}

#[derive(Debug)]
struct Rule {
    name: String,
    check: Check,
    roles: Vec<Role>,
}

/// The `rules` scorer, its rules compiled.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    max_evidence: usize,
}

impl Rules {
    /// Compiles `options`' rules (or the default PII set); an error names the field, e.g.
    /// `rules.rule[2].pattern`.
    pub fn new(options: &RulesOptions) -> Result<Rules, ConfigError> {
        if options.applies_to.is_empty() {
            return Err(ConfigError::new(
                "rules.applies_to",
                "must name at least one role (assistant, user, tool, system)",
            ));
        }
        let rules = if options.rule.is_empty() {
            PiiKind::ALL
                .iter()
                .map(|&kind| Rule {
                    name: format!("rules.no_pii_{}", kind.id()),
                    check: Check::Pii(kind),
                    roles: options.applies_to.clone(),
                })
                .collect()
        } else {
            let mut ids = HashSet::new();
            let mut rules = Vec::with_capacity(options.rule.len());
            for (i, rule) in options.rule.iter().enumerate() {
                rules.push(compile(i, rule, &options.applies_to, &mut ids)?);
            }
            rules
        };
        Ok(Rules {
            rules,
            max_evidence: options.max_evidence,
        })
    }
}

fn compile<'a>(
    i: usize,
    rule: &'a RuleOptions,
    default_roles: &[Role],
    ids: &mut HashSet<&'a str>,
) -> Result<Rule, ConfigError> {
    let field = |name: &str| format!("rules.rule[{i}].{name}");
    let id = rule.id.as_str();
    let id_ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !id_ok {
        return Err(ConfigError::new(
            field("id"),
            format!("`{id}` is not 1 to 64 characters of A-Z a-z 0-9 _ - ."),
        ));
    }
    if !ids.insert(id) {
        return Err(ConfigError::new(
            field("id"),
            format!("`{id}` is the id of an earlier rule"),
        ));
    }
    let check = match (&rule.phrases, &rule.pattern, rule.pii) {
        (Some(phrases), None, None) => phrases_check(phrases, &field("phrases"))?,
        (None, Some(pattern), None) => Check::Pattern(pattern_regex(pattern, &field("pattern"))?),
        (None, None, Some(kind)) => Check::Pii(kind),
        _ => {
            return Err(ConfigError::new(
                format!("rules.rule[{i}]"),
                format!("rule `{id}` needs exactly one of `phrases`, `pattern`, `pii`"),
            ));
        }
    };
    let roles = match &rule.applies_to {
        Some(roles) if roles.is_empty() => {
            return Err(ConfigError::new(
                field("applies_to"),
                "must name at least one role (assistant, user, tool, system)",
            ));
        }
        Some(roles) => roles.clone(),
        None => default_roles.to_vec(),
    };
    Ok(Rule {
        name: format!("rules.{id}"),
        check,
        roles,
    })
}

fn pattern_regex(pattern: &str, field: &str) -> Result<Regex, ConfigError> {
    let regex = RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| ConfigError::new(field, e.to_string()))?;
    if regex.is_match("") {
        return Err(ConfigError::new(
            field,
            "matches the empty text, so it would match anywhere",
        ));
    }
    Ok(regex)
}

fn phrases_check(phrases: &[String], field: &str) -> Result<Check, ConfigError> {
    if phrases.is_empty() {
        return Err(ConfigError::new(field, "must list at least one phrase"));
    }
    // Longest first: at one position, `guaranteed returns` wins over `guaranteed`.
    let mut order: Vec<usize> = (0..phrases.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(phrases[i].chars().count()));
    let mut alternatives = Vec::with_capacity(phrases.len());
    for &i in &order {
        let words: Vec<String> = phrases[i].split_whitespace().map(regex::escape).collect();
        if words.is_empty() {
            return Err(ConfigError::new(format!("{field}[{i}]"), "is empty"));
        }
        alternatives.push(format!("({})", words.join(r"\s+")));
    }
    let regex = RegexBuilder::new(&alternatives.join("|"))
        .case_insensitive(true)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| ConfigError::new(field, e.to_string()))?;
    let ordered = order.iter().map(|&i| phrases[i].clone()).collect();
    Ok(Check::Phrases(regex, ordered))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte ranges of the phrases' whole-word matches, each with its phrase's index.
fn phrase_matches(regex: &Regex, text: &str) -> Vec<(Range<usize>, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at <= text.len() {
        let Some(m) = regex.find_at(text, at) else {
            break;
        };
        let (start, end) = (m.start(), m.end());
        let first = text[start..].chars().next();
        let last = text[..end].chars().next_back();
        let before_ok =
            !first.is_some_and(is_word) || !text[..start].chars().next_back().is_some_and(is_word);
        let after_ok =
            !last.is_some_and(is_word) || !text[end..].chars().next().is_some_and(is_word);
        if before_ok && after_ok {
            // Which phrase: the capture group that took part.
            let phrase = regex
                .captures_at(text, start)
                .and_then(|c| (1..c.len()).find(|&g| c.get(g).is_some()))
                .map_or(0, |g| g - 1);
            found.push((start..end, phrase));
            at = end.max(start + 1);
        } else {
            // A part of a longer word: look again from the next character.
            at = start + first.map_or(1, char::len_utf8);
        }
    }
    found
}

/// One text a rule can check.
struct Text<'v> {
    role: Role,
    span_id: &'v str,
    text: Cow<'v, str>,
}

fn texts(view: &TraceView) -> Vec<Text<'_>> {
    let mut texts: Vec<Text> = view
        .messages
        .iter()
        .filter(|m| !m.text.is_empty())
        .filter_map(|m| {
            Some(Text {
                role: Role::of_message(&m.role)?,
                span_id: &m.span_id,
                text: Cow::Borrowed(&m.text),
            })
        })
        .collect();
    for call in &view.tool_calls {
        let text = match &call.result {
            Some(serde_json::Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(serde_json::Value::Null) | None => continue,
            Some(other) => Cow::Owned(other.to_string()),
        };
        if !text.is_empty() {
            texts.push(Text {
                role: Role::Tool,
                span_id: &call.span_id,
                text,
            });
        }
    }
    texts
}

/// Char (Unicode scalar) offsets of sorted byte `ranges` of `text`, in one pass.
fn char_ranges(text: &str, ranges: &[Range<usize>]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ranges.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut to_chars = |target: usize| {
        // Ranges are sorted by start, and ends may precede the next start: count forward
        // from the last position, or afresh when going back.
        if target < byte {
            byte = 0;
            chars = 0;
        }
        chars += text[byte..target].chars().count();
        byte = target;
        chars
    };
    for range in ranges {
        let start = to_chars(range.start);
        let end = to_chars(range.end);
        out.push((start, end));
    }
    out
}

/// "1 assistant message and 2 tool results".
fn places(counts: &[(Role, usize)]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(role, n)| format!("{n} {}", role.noun(*n)))
        .collect();
    match parts.as_slice() {
        [] => "no text".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Rules {
    fn score_rule(&self, rule: &Rule, texts: &[Text]) -> Option<Outcome> {
        let mut checked: Vec<(Role, usize)> = Vec::new();
        let mut violating: Vec<(Role, usize)> = Vec::new();
        let mut evidence = Vec::new();
        let mut total = 0usize;
        let mut per_phrase: Vec<usize> = match &rule.check {
            Check::Phrases(_, phrases) => vec![0; phrases.len()],
            _ => Vec::new(),
        };
        let bump = |counts: &mut Vec<(Role, usize)>, role: Role| match counts
            .iter_mut()
            .find(|(r, _)| *r == role)
        {
            Some((_, n)) => *n += 1,
            None => counts.push((role, 1)),
        };
        for text in texts.iter().filter(|t| rule.roles.contains(&t.role)) {
            bump(&mut checked, text.role);
            let ranges: Vec<Range<usize>> = match &rule.check {
                Check::Phrases(regex, _) => phrase_matches(regex, &text.text)
                    .into_iter()
                    .map(|(range, phrase)| {
                        per_phrase[phrase] += 1;
                        range
                    })
                    .collect(),
                Check::Pattern(regex) => regex
                    .find_iter(&text.text)
                    .filter(|m| !m.is_empty())
                    .map(|m| m.range())
                    .collect(),
                Check::Pii(kind) => kind.detect(&text.text),
            };
            if ranges.is_empty() {
                continue;
            }
            bump(&mut violating, text.role);
            total += ranges.len();
            let room = self.max_evidence.saturating_sub(evidence.len());
            let kept = &ranges[..ranges.len().min(room)];
            for (start, end) in char_ranges(&text.text, kept) {
                evidence.push(Evidence::range(text.span_id, start, end));
            }
        }
        if checked.is_empty() {
            return None;
        }
        let outcome = if total == 0 {
            let what = match &rule.check {
                Check::Phrases(..) => "no listed phrase".to_owned(),
                Check::Pattern(_) => "no match of the pattern".to_owned(),
                Check::Pii(kind) => format!("no {}", kind.noun(2)),
            };
            Outcome::new(&rule.name, 1.0)
                .label("pass")
                .explanation(format!("{what} in {}", places(&checked)))
        } else {
            let what = match &rule.check {
                Check::Phrases(_, phrases) => {
                    let listed: Vec<String> = phrases
                        .iter()
                        .zip(&per_phrase)
                        .filter(|(_, n)| **n > 0)
                        .map(|(p, n)| format!("\"{p}\" ({n}×)"))
                        .collect();
                    format!("banned phrase {}", listed.join(", "))
                }
                Check::Pattern(_) => format!(
                    "{total} {} of the pattern",
                    if total == 1 { "match" } else { "matches" }
                ),
                Check::Pii(kind) => format!("{total} {}", kind.noun(total)),
            };
            let mut explanation = format!("{what} in {}", places(&violating));
            if total > evidence.len() {
                explanation.push_str(&format!(" (first {} listed)", evidence.len()));
            }
            Outcome::new(&rule.name, 0.0)
                .label("violated")
                .explanation(explanation)
                .evidence(evidence)
        };
        Some(outcome)
    }
}

impl Scorer for Rules {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn score(&self, view: &TraceView) -> Vec<Outcome> {
        let texts = texts(view);
        self.rules
            .iter()
            .filter_map(|rule| self.score_rule(rule, &texts))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::view::{Message, ToolCall};
    use serde_json::{Map, json};

    pub(crate) fn message(
        span: &str,
        role: &str,
        text: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> Message {
        Message {
            span_id: span.to_owned(),
            role: role.to_owned(),
            text: text.to_owned(),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            model: None,
            finish_reason: None,
            error: None,
            incomplete: false,
            annotations: Vec::new(),
        }
    }

    pub(crate) fn view(messages: Vec<Message>) -> TraceView {
        TraceView {
            trace_id: "t".into(),
            tenant: "acme".into(),
            session: "s".into(),
            root_span_id: "root".into(),
            digest: "d".into(),
            messages,
            tool_calls: Vec::new(),
            events: Vec::new(),
            usage: Vec::new(),
            expected_actions: None,
            dataset_reward: None,
            attributes: Map::new(),
            start_ns: 0,
            end_ns: 0,
        }
    }

    fn parse(toml_text: &str) -> Result<Rules, ConfigError> {
        let options: RulesOptions = toml::from_str(toml_text).expect("toml");
        Rules::new(&options)
    }

    fn named<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
        outcomes
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no {name} in {outcomes:?}"))
    }

    #[test]
    fn the_default_set_flags_pii_in_assistant_messages_without_quoting_it() {
        let rules = Rules::new(&RulesOptions::default()).unwrap();
        let trace = view(vec![
            message("u", "user", "my mail is ann@example.com", 0, 1),
            message(
                "a",
                "assistant",
                "Écrivez à ann@example.com ou bob@example.org.",
                2,
                3,
            ),
        ]);
        let outcomes = rules.score(&trace);
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rules.no_pii_email",
                "rules.no_pii_phone",
                "rules.no_pii_card",
                "rules.no_pii_iban"
            ]
        );
        let email = named(&outcomes, "rules.no_pii_email");
        assert_eq!(
            (email.value, email.label.as_deref()),
            (0.0, Some("violated"))
        );
        let explanation = email.explanation.as_deref().unwrap();
        assert_eq!(explanation, "2 email addresses in 1 assistant message");
        assert!(!explanation.contains("example"), "{explanation}");
        // Char offsets: `É` and `à` are one char each, two bytes each.
        assert_eq!(
            email.evidence,
            [Evidence::range("a", 10, 25), Evidence::range("a", 29, 44)]
        );
        let chars: Vec<char> = trace.messages[1].text.chars().collect();
        assert_eq!(chars[10..25].iter().collect::<String>(), "ann@example.com");
        let phone = named(&outcomes, "rules.no_pii_phone");
        assert_eq!((phone.value, phone.label.as_deref()), (1.0, Some("pass")));
        assert_eq!(
            phone.explanation.as_deref(),
            Some("no phone numbers in 1 assistant message")
        );
        assert!(phone.evidence.is_empty());
    }

    #[test]
    fn every_pii_kind_is_reported_by_its_own_rule() {
        let rules = Rules::new(&RulesOptions::default()).unwrap();
        let trace = view(vec![message(
            "a",
            "assistant",
            "Call +44 20 7946 0958, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00.",
            0,
            1,
        )]);
        let outcomes = rules.score(&trace);
        for (name, explanation) in [
            (
                "rules.no_pii_phone",
                "1 phone number in 1 assistant message",
            ),
            ("rules.no_pii_card", "1 card number in 1 assistant message"),
            ("rules.no_pii_iban", "1 IBAN in 1 assistant message"),
        ] {
            let o = named(&outcomes, name);
            assert_eq!(o.label.as_deref(), Some("violated"), "{name}");
            assert_eq!(o.explanation.as_deref(), Some(explanation));
            assert_eq!(o.evidence.len(), 1, "{name}");
        }
        assert_eq!(
            named(&outcomes, "rules.no_pii_email").label.as_deref(),
            Some("pass")
        );
    }

    #[test]
    fn phrases_match_case_insensitively_on_whole_words_only() {
        let rules = parse(
            "[[rule]]\nid = \"no-guarantees\"\nphrases = [\"guaranteed returns\", \"risk-free\", \"guaranteed\"]\n",
        )
        .unwrap();
        let trace = view(vec![message(
            "a",
            "assistant",
            "GUARANTEED\n returns! Not unguaranteed, not risk-freely, but Risk-Free and guaranteed.",
            0,
            1,
        )]);
        let outcomes = rules.score(&trace);
        assert_eq!(outcomes.len(), 1);
        let o = &outcomes[0];
        assert_eq!(o.name, "rules.no-guarantees");
        assert_eq!(o.label.as_deref(), Some("violated"));
        assert_eq!(
            o.explanation.as_deref(),
            Some(
                "banned phrase \"guaranteed returns\" (1×), \"guaranteed\" (1×), \"risk-free\" (1×) in 1 assistant message"
            )
        );
        let text = &trace.messages[0].text;
        let matched: Vec<&str> = o
            .evidence
            .iter()
            .map(|e| &text[e.start.unwrap()..e.end.unwrap()]) // ASCII: chars are bytes
            .collect();
        assert_eq!(matched, ["GUARANTEED\n returns", "Risk-Free", "guaranteed"]);
    }

    #[test]
    fn patterns_report_matches_without_quoting_them() {
        let rules =
            parse("[[rule]]\nid = \"ssn\"\npattern = '\\b\\d{3}-\\d{2}-\\d{4}\\b'\n").unwrap();
        let trace = view(vec![
            message("a1", "assistant", "SSN 123-45-6789 and 987-65-4321", 0, 1),
            message("a2", "assistant", "nothing here", 2, 3),
            message("a3", "assistant", "again 111-22-3333", 4, 5),
        ]);
        let o = &rules.score(&trace)[0];
        assert_eq!(o.label.as_deref(), Some("violated"));
        assert_eq!(
            o.explanation.as_deref(),
            Some("3 matches of the pattern in 2 assistant messages")
        );
        assert_eq!(
            o.evidence,
            [
                Evidence::range("a1", 4, 15),
                Evidence::range("a1", 20, 31),
                Evidence::range("a3", 6, 17)
            ]
        );
    }

    #[test]
    fn roles_choose_the_texts_checked_including_tool_results() {
        let rules = parse(
            "applies_to = [\"user\"]\n[[rule]]\nid = \"mail\"\npii = \"email\"\n\
             [[rule]]\nid = \"tool-mail\"\npii = \"email\"\napplies_to = [\"tool\"]\n",
        )
        .unwrap();
        let mut trace = view(vec![
            message("u", "user", "reach me at a@b.io", 0, 1),
            message("a", "assistant", "ok, c@d.io", 2, 3),
        ]);
        trace.tool_calls.push(ToolCall {
            span_id: "t".into(),
            call_id: None,
            name: "lookup".into(),
            arguments: None,
            result: Some(json!({"owner": "e@f.io"})),
            error: None,
            retrieval: false,
            start_ns: 0,
            end_ns: 0,
            documents: Vec::new(),
        });
        let outcomes = rules.score(&trace);
        let mail = named(&outcomes, "rules.mail");
        assert_eq!(mail.evidence, [Evidence::range("u", 12, 18)]);
        assert_eq!(
            mail.explanation.as_deref(),
            Some("1 email address in 1 user message")
        );
        let tool = named(&outcomes, "rules.tool-mail");
        // Offsets into the result's JSON: {"owner":"e@f.io"}.
        assert_eq!(tool.evidence, [Evidence::range("t", 10, 16)]);
        assert_eq!(
            tool.explanation.as_deref(),
            Some("1 email address in 1 tool result")
        );
    }

    #[test]
    fn a_rule_without_text_to_check_gives_no_record() {
        let rules = Rules::new(&RulesOptions::default()).unwrap();
        assert!(
            rules
                .score(&view(vec![message("u", "user", "a@b.io", 0, 1)]))
                .is_empty()
        );
        assert!(
            rules
                .score(&view(vec![message("a", "assistant", "", 0, 1)]))
                .is_empty()
        );
    }

    #[test]
    fn evidence_is_capped_but_every_match_counted() {
        let rules = parse("max_evidence = 2\n[[rule]]\nid = \"x\"\nphrases = [\"x\"]\n").unwrap();
        let o = &rules.score(&view(vec![message("a", "assistant", "x x x x", 0, 1)]))[0];
        assert_eq!(o.evidence.len(), 2);
        assert_eq!(
            o.explanation.as_deref(),
            Some("banned phrase \"x\" (4×) in 1 assistant message (first 2 listed)")
        );
    }

    #[test]
    fn the_tenant_file_configures_rules_and_reports_a_bad_pattern_by_field() {
        let scoring = crate::Scoring::parse(
            "scorers = [\"rules\"]\n[rules]\napplies_to = [\"assistant\", \"user\"]\n\
             [[rules.rule]]\nid = \"brand\"\nphrases = [\"AgentWire\"]\n",
        )
        .unwrap();
        let trace = view(vec![
            message("u", "user", "Is agentwire good?", 0, 1),
            message("a", "assistant", "Yes.", 2, 3),
        ]);
        let set = crate::ScorerSet::from_config(scoring.config()).unwrap();
        let records = crate::score_trace(&trace, &set, 0);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "rules.brand");
        assert_eq!(records[0].scorer, "rules");
        assert_eq!(records[0].evidence, [Evidence::range("u", 3, 12)]);
        let error = crate::Scoring::parse("[[rules.rule]]\nid = \"x\"\npattern = \"a(\"\n")
            .err()
            .expect("a bad pattern is refused");
        assert_eq!(error.field, "rules.rule[0].pattern");
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let error = |text: &str| parse(text).unwrap_err();
        let e = error(
            "[[rule]]\nid = \"a\"\npii = \"email\"\n[[rule]]\nid = \"b\"\nphrases = [\"x\"]\n[[rule]]\nid = \"c\"\npattern = \"(unclosed\"\n",
        );
        assert_eq!(e.field, "rules.rule[2].pattern");
        assert!(e.to_string().starts_with("rules.rule[2].pattern: "), "{e}");
        assert!(e.message.contains("unclosed"), "{e}");
        assert_eq!(
            error("[[rule]]\nid = \"a\"\npattern = \"x*\"\n").field,
            "rules.rule[0].pattern"
        );
        assert_eq!(
            error("[[rule]]\nid = \"a b\"\npii = \"email\"\n").field,
            "rules.rule[0].id"
        );
        let e =
            error("[[rule]]\nid = \"a\"\npii = \"email\"\n[[rule]]\nid = \"a\"\npii = \"card\"\n");
        assert_eq!(e.field, "rules.rule[1].id");
        let e = error("[[rule]]\nid = \"a\"\npii = \"email\"\npattern = \"x\"\n");
        assert_eq!(e.field, "rules.rule[0]");
        assert!(e.message.contains("exactly one of"), "{e}");
        assert_eq!(error("[[rule]]\nid = \"a\"\n").field, "rules.rule[0]");
        assert_eq!(
            error("[[rule]]\nid = \"a\"\nphrases = []\n").field,
            "rules.rule[0].phrases"
        );
        assert_eq!(
            error("[[rule]]\nid = \"a\"\nphrases = [\"ok\", \"  \"]\n").field,
            "rules.rule[0].phrases[1]"
        );
        assert_eq!(error("applies_to = []\n").field, "rules.applies_to");
        let e = error(&format!(
            "[[rule]]\nid = \"a\"\npattern = '\\w{{{}}}'\n",
            100_000
        ));
        assert_eq!(e.field, "rules.rule[0].pattern");
        // Unknown fields, roles and kinds are refused by the parser.
        for text in [
            "[[rule]]\nid = \"a\"\npii = \"ssn\"\n",
            "[[rule]]\nid = \"a\"\npii = \"email\"\napplies_to = [\"bot\"]\n",
            "[[rule]]\nid = \"a\"\npii = \"email\"\nwords = []\n",
            "rule_set = 1\n",
        ] {
            assert!(toml::from_str::<RulesOptions>(text).is_err(), "{text}");
        }
    }
}
