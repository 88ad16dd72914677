//! `groundedness`: is the final answer supported by the context retrieved for it?
//!
//! What it measures: how much of the final answer's content is absent from the retrieved
//! documents (and the question), sentence by sentence. Content words are the answer's words
//! and numbers minus English function words, words about "the passages" and discourse words
//! (`however`, `steps`; see `text::is_stopword`); a word is present when its lightly stemmed
//! form, or for words of 5+ letters its first 5 letters, occurs in the context.
//!
//! A sentence is *unsupported* when
//! - at least `sentence_threshold` (default 0.5) of its content words are absent; or
//! - it states a number the context does not contain, and either it restates a context
//!   sentence that has a number (a changed figure) or at least half of `sentence_threshold`
//!   of its words are absent too; or
//! - it has a capitalised name the context does not contain, with that many new words; or
//! - it restates a context sentence (shares 70% of its content words) but negates what that
//!   sentence affirms, or the reverse.
//!
//! The answer's value is `1 - sigmoid(z)`, `z` a fixed linear combination ([`WEIGHTS`]) of
//! the logs of the counts of absent content words, of adjacent content-word pairs the
//! context never has adjacent (known words in new combinations), of content words and of
//! the answer's chars (together: how dense in content it is), of the most absent words in
//! one sentence (one made-up sentence rather than scattered rewording); the number of
//! unsupported sentences, of sentences no single context sentence supports (the best
//! matching one shares under half their content words) and of absent names; capped at `1 - share / 2`, `share` the fraction of content
//! words absent, so a short answer made up entirely is not grounded however few its words.
//! Value in [0, 1], 1 = fully supported. Label `grounded` when the value is at least
//! `threshold`, else `ungrounded`. The explanation and the evidence list the unsupported
//! sentences as char (Unicode scalar) ranges of the answer, whatever the label.
//!
//! An answer that only declines ("Unable to answer based on given passages.") claims nothing:
//! it scores 1, `grounded`, and says so (RAGTruth's annotators never mark such an answer).
//! Whether declining was right is another question.
//!
//! The weights are a logistic regression fitted on RAGTruth QA (train split), checked by
//! 5-fold cross-validation grouped by source passages (tests/quality measures it: AUROC 0.80,
//! out-of-fold F1 0.70; weights fitted without the held-out fold give AUROC 0.80 on it too);
//! they weigh topic-free quantities only.
//!
//! Not measured: paraphrases that change meaning without new words, claims assembled from
//! words the context has in other places, wrong attributions between passages, or whether
//! the answer answers the question (`question_coverage` in [`Features`] is reported, not
//! weighed: on RAGTruth it does not separate).

mod text;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::record::Evidence;
use crate::scorers::{Outcome, Scorer};
use crate::view::TraceView;
use text::{IdSet, Token, pair_id, sentences, tokenize};

/// The tenant's `[groundedness]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroundednessOptions {
    /// Values below this are labelled `ungrounded`. In [0, 1].
    pub threshold: f64,
    /// A sentence with at least this fraction of its content words absent from the context
    /// is unsupported. In (0, 1].
    pub sentence_threshold: f64,
    /// Sentences with fewer content words than this are judged on numbers, names and
    /// negation only.
    pub min_sentence_words: usize,
}

/// The default `threshold`: chosen by the grouped cross-validation that fitted [`WEIGHTS`].
pub const DEFAULT_THRESHOLD: f64 = 0.654;

impl Default for GroundednessOptions {
    fn default() -> Self {
        GroundednessOptions {
            threshold: DEFAULT_THRESHOLD,
            sentence_threshold: 0.5,
            min_sentence_words: 3,
        }
    }
}

impl GroundednessOptions {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(ConfigError::new(
                "groundedness.threshold",
                format!("must be in [0, 1], got {}", self.threshold),
            ));
        }
        if !(self.sentence_threshold > 0.0 && self.sentence_threshold <= 1.0) {
            return Err(ConfigError::new(
                "groundedness.sentence_threshold",
                format!("must be in (0, 1], got {}", self.sentence_threshold),
            ));
        }
        Ok(())
    }
}

/// Why a sentence is unsupported.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// This many of its content words (of `of`) are absent from the context.
    AbsentWords { absent: usize, of: usize },
    /// Numbers the context does not contain.
    AbsentNumbers(Vec<String>),
    /// Capitalised names the context does not contain.
    AbsentNames(Vec<String>),
    /// It negates the context sentence it matches, or drops that sentence's negation.
    NegationFlip,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::AbsentWords { absent, of } => {
                write!(f, "{absent} of {of} content words absent from the context")
            }
            Reason::AbsentNumbers(n) => write!(f, "numbers not in the context: {}", n.join(", ")),
            Reason::AbsentNames(n) => write!(f, "names not in the context: {}", n.join(", ")),
            Reason::NegationFlip => write!(f, "negation differs from the matching context"),
        }
    }
}

/// One sentence of the answer and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceAssessment {
    /// Char (Unicode scalar) offsets into the answer, end exclusive.
    pub start: usize,
    pub end: usize,
    pub content_words: usize,
    pub absent_words: usize,
    /// Empty when the sentence is supported.
    pub reasons: Vec<Reason>,
}

impl SentenceAssessment {
    pub fn unsupported(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The answer-level quantities the value is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    pub content_words: usize,
    pub absent_words: usize,
    pub absent_pairs: usize,
    pub unsupported_sentences: usize,
    pub absent_numbers: usize,
    pub absent_names: usize,
    pub negation_flips: usize,
    /// The answer's length in chars: with `content_words`, how dense in content it is.
    pub answer_chars: usize,
    /// Sentences (of `min_sentence_words`+ content words) no single context sentence
    /// supports: the context sentence sharing most of their content words shares under half.
    pub weakly_supported_sentences: usize,
    /// The most content words absent from any one sentence.
    pub max_sentence_absent: usize,
    /// Fraction of the question's content words the answer uses (1 without a question).
    pub question_coverage: f64,
    /// The answer only declines to answer.
    pub refusal: bool,
}

/// The verdict on one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// In [0, 1]; 1 = fully supported.
    pub score: f64,
    pub sentences: Vec<SentenceAssessment>,
    pub features: Features,
}

impl Assessment {
    pub fn unsupported(&self) -> impl Iterator<Item = &SentenceAssessment> {
        self.sentences.iter().filter(|s| s.unsupported())
    }
}

/// Logistic weights over [`Features`] (see [`logit`]); fitted as the module doc says.
pub const WEIGHTS: Weights = Weights {
    bias: 4.464,
    ln_absent_words: 0.520,
    ln_absent_pairs: 0.223,
    // Positive with `ln_answer_chars` negative: together they weigh content density
    // (content words per char), not length; an answer padded with connective prose about
    // the passages ("Passage 2 states that ...") is mostly copied.
    ln_content_words: 1.855,
    unsupported_sentences: 0.032,
    // Fitted slightly negative on RAGTruth (worked-out counts and conversions, loose
    // sentence matches); held at 0 rather than letting them vouch for an answer. They
    // still mark sentences unsupported.
    absent_numbers: 0.0,
    absent_names: 0.293,
    negation_flips: 0.0,
    ln_answer_chars: -2.405,
    weakly_supported_sentences: 0.196,
    ln_max_sentence_absent: 0.562,
};

/// The value is at most `1 - ABSENT_SHARE_CAP * (absent words / content words)`.
pub const ABSENT_SHARE_CAP: f64 = 0.5;

/// The weights of the logistic combination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub bias: f64,
    pub ln_absent_words: f64,
    pub ln_absent_pairs: f64,
    pub ln_content_words: f64,
    pub unsupported_sentences: f64,
    pub absent_numbers: f64,
    pub absent_names: f64,
    pub negation_flips: f64,
    pub ln_answer_chars: f64,
    pub weakly_supported_sentences: f64,
    pub ln_max_sentence_absent: f64,
}

/// The log-odds that the answer contains unsupported content.
pub fn logit(f: &Features, w: &Weights) -> f64 {
    w.bias
        + w.ln_absent_words * (f.absent_words as f64).ln_1p()
        + w.ln_absent_pairs * (f.absent_pairs as f64).ln_1p()
        + w.ln_content_words * (f.content_words as f64).ln_1p()
        + w.unsupported_sentences * f.unsupported_sentences as f64
        + w.absent_numbers * f.absent_numbers as f64
        + w.absent_names * f.absent_names as f64
        + w.negation_flips * f.negation_flips as f64
        + w.ln_answer_chars * (f.answer_chars as f64).ln_1p()
        + w.weakly_supported_sentences * f.weakly_supported_sentences as f64
        + w.ln_max_sentence_absent * (f.max_sentence_absent as f64).ln_1p()
}

const NEGATIONS: [&str; 9] = [
    "not", "no", "never", "none", "cannot", "nor", "without", "neither", "nothing",
];

fn negated(tokens: &[Token]) -> bool {
    tokens
        .iter()
        .any(|t| NEGATIONS.contains(&t.text.as_str()) || t.text.ends_with("n't"))
}

// What an answer says when it declines: these sentences claim nothing about the world.
fn is_refusal(sentence: &str) -> bool {
    let s = sentence.to_lowercase();
    const PHRASES: [&str; 8] = [
        "unable to answer",
        "cannot answer",
        "can't answer",
        "unable to provide",
        "cannot provide",
        "not able to answer",
        "do not contain",
        "does not contain",
    ];
    PHRASES.iter().any(|p| s.contains(p))
}

/// One sentence of the context, for matching an answer sentence to its source.
struct ContextSentence {
    words: IdSet,
    negated: bool,
    has_number: bool,
}

/// The context, indexed once per answer.
struct Context {
    words: IdSet,
    prefixes: IdSet,
    pairs: IdSet,
    numbers: std::collections::HashSet<String>,
    /// Content-word sets of the context's sentences, with whether each is negated.
    sentences: Vec<ContextSentence>,
}

impl Context {
    fn new(context: &[&str], question: Option<&str>) -> Context {
        let mut ctx = Context {
            words: IdSet::default(),
            prefixes: IdSet::default(),
            pairs: IdSet::default(),
            numbers: Default::default(),
            sentences: Vec::new(),
        };
        for doc in context.iter().copied().chain(question) {
            let tokens = tokenize(doc);
            let mut prev: Option<u64> = None;
            for t in &tokens {
                ctx.words.insert(t.id);
                if t.prefix != 0 {
                    ctx.prefixes.insert(t.prefix);
                }
                if t.number {
                    ctx.numbers.insert(t.text.clone());
                }
                if !t.stop {
                    if let Some(p) = prev {
                        ctx.pairs.insert(pair_id(p, t.id));
                    }
                    prev = Some(t.id);
                }
            }
            // Sentence sets for the negation check, from the same tokens by offset.
            let mut k = 0;
            for (a, b) in sentences(doc) {
                while k < tokens.len() && tokens[k].start < a {
                    k += 1;
                }
                let first = k;
                while k < tokens.len() && tokens[k].end <= b {
                    k += 1;
                }
                let sent = &tokens[first..k];
                let set: IdSet = sent.iter().filter(|t| !t.stop).map(|t| t.id).collect();
                if !set.is_empty() {
                    ctx.sentences.push(ContextSentence {
                        words: set,
                        negated: negated(sent),
                        has_number: sent.iter().any(|t| t.number),
                    });
                }
            }
        }
        ctx
    }

    // The word, or (for a long word) one sharing its prefix, is in the context.
    fn has(&self, t: &Token) -> bool {
        self.words.contains(&t.id) || (t.prefix != 0 && self.prefixes.contains(&t.prefix))
    }

    // The context sentence sharing most of `words`, when it shares most of them (70%, and
    // at least 3): the sentence the answer's sentence restates; and how many it shares.
    fn matching(&self, words: &IdSet) -> (Option<&ContextSentence>, usize) {
        let mut best: (usize, Option<&ContextSentence>) = (0, None);
        for sentence in &self.sentences {
            let shared = words.iter().filter(|w| sentence.words.contains(w)).count();
            if shared > best.0 {
                best = (shared, Some(sentence));
            }
        }
        if best.0 * 10 >= words.len() * 7 && best.0 >= 3 {
            (best.1, best.0)
        } else {
            (None, best.0)
        }
    }
}

/// Assesses `answer` against the `context` documents (and the `question`, whose words an
/// answer may repeat). Pure text in, verdict out; offsets are chars of `answer`.
pub fn assess(
    answer: &str,
    context: &[&str],
    question: Option<&str>,
    options: &GroundednessOptions,
) -> Assessment {
    let ctx = Context::new(context, question);
    let tokens = tokenize(answer);
    let mut f = Features::default();
    let mut out = Vec::new();
    let mut k = 0;
    let mut any_refusal = false;
    let mut any_claim = false;
    let mut answer_words = IdSet::default();
    for (a, b) in sentences(answer) {
        while k < tokens.len() && tokens[k].start < a {
            k += 1;
        }
        let first = k;
        while k < tokens.len() && tokens[k].end <= b {
            k += 1;
        }
        let sent = &tokens[first..k];
        let content: Vec<&Token> = sent.iter().filter(|t| !t.stop).collect();
        let sentence = SentenceAssessment {
            start: a,
            end: b,
            content_words: content.len(),
            absent_words: 0,
            reasons: Vec::new(),
        };
        let text: String = answer.chars().skip(a).take(b - a).collect();
        if is_refusal(&text) {
            any_refusal = true;
            out.push(sentence);
            continue;
        }
        if content.is_empty() {
            out.push(sentence);
            continue;
        }
        any_claim = true;
        out.push(judge(sentence, sent, &content, &ctx, options, &mut f));
        answer_words.extend(content.iter().map(|t| t.id));
    }
    f.answer_chars = answer.chars().count();
    f.question_coverage = question.map_or(1.0, |q| {
        let q: IdSet = tokenize(q)
            .iter()
            .filter(|t| !t.stop)
            .map(|t| t.id)
            .collect();
        if q.is_empty() {
            1.0
        } else {
            q.iter().filter(|w| answer_words.contains(w)).count() as f64 / q.len() as f64
        }
    });
    if any_refusal && !any_claim {
        f.refusal = true;
        return Assessment {
            score: 1.0,
            sentences: out,
            features: f,
        };
    }
    let z = logit(&f, &WEIGHTS);
    // The weights lean on counts, which a short made-up answer keeps low: cap the value by
    // the share of content that is present, so an answer mostly absent from the context is
    // never grounded however short (no loss on RAGTruth, where such answers are rare).
    let absent_share = if f.content_words >= options.min_sentence_words {
        f.absent_words as f64 / f.content_words as f64
    } else {
        0.0
    };
    Assessment {
        score: (1.0 - 1.0 / (1.0 + (-z).exp())).min(1.0 - ABSENT_SHARE_CAP * absent_share),
        sentences: out,
        features: f,
    }
}

fn judge(
    mut sentence: SentenceAssessment,
    sent: &[Token],
    content: &[&Token],
    ctx: &Context,
    options: &GroundednessOptions,
    f: &mut Features,
) -> SentenceAssessment {
    let absent = content.iter().filter(|t| !ctx.has(t)).count();
    let pairs = content
        .windows(2)
        .filter(|w| !ctx.pairs.contains(&pair_id(w[0].id, w[1].id)))
        .count();
    let numbers: Vec<String> = sent
        .iter()
        .filter(|t| t.number && !ctx.numbers.contains(&t.text))
        .map(|t| t.text.clone())
        .collect();
    let mut names: Vec<String> = sent
        .iter()
        .filter(|t| t.capitalised && !t.stop && !ctx.words.contains(&t.id))
        .map(|t| t.text.clone())
        .collect();
    names.dedup();
    f.content_words += content.len();
    f.absent_words += absent;
    f.absent_pairs += pairs;
    f.absent_numbers += numbers.len();
    f.absent_names += names.len();
    sentence.absent_words = absent;
    if content.len() >= options.min_sentence_words
        && absent as f64 >= options.sentence_threshold * content.len() as f64
    {
        sentence.reasons.push(Reason::AbsentWords {
            absent,
            of: content.len(),
        });
    }
    // An absent number or name makes the sentence unsupported when the sentence restates a
    // context sentence that has a number (a changed figure), or when some of its other words
    // are new too; alone in new wording it is often a count or conversion the answer
    // worked out, which RAGTruth's annotators do not mark.
    let words: IdSet = content.iter().map(|t| t.id).collect();
    let (source, shared) = ctx.matching(&words);
    if content.len() >= options.min_sentence_words {
        if shared * 2 < words.len() {
            f.weakly_supported_sentences += 1;
        }
        f.max_sentence_absent = f.max_sentence_absent.max(absent);
    }
    let some_new = absent as f64 >= options.sentence_threshold / 2.0 * content.len() as f64;
    if !numbers.is_empty() && (some_new || source.is_some_and(|s| s.has_number)) {
        sentence.reasons.push(Reason::AbsentNumbers(numbers));
    }
    if !names.is_empty() && some_new {
        sentence.reasons.push(Reason::AbsentNames(names));
    }
    if source.is_some_and(|s| s.negated != negated(sent)) {
        f.negation_flips += 1;
        sentence.reasons.push(Reason::NegationFlip);
    }
    if sentence.unsupported() {
        f.unsupported_sentences += 1;
    }
    sentence
}

/// The `groundedness` scorer over traces: the final answer against the retrieved context.
pub struct Groundedness {
    options: GroundednessOptions,
}

impl Groundedness {
    pub fn new(options: &GroundednessOptions) -> Result<Groundedness, ConfigError> {
        options.validate()?;
        Ok(Groundedness {
            options: options.clone(),
        })
    }
}

impl Scorer for Groundedness {
    fn name(&self) -> &'static str {
        "groundedness"
    }

    fn version(&self) -> &'static str {
        "2"
    }

    /// One outcome on the final answer's span; none without a final answer or context.
    fn score(&self, view: &TraceView) -> Vec<Outcome> {
        let Some(answer) = view.final_answer() else {
            return Vec::new();
        };
        let context = view.context_text();
        if context.iter().all(|d| d.trim().is_empty()) {
            return Vec::new();
        }
        let question = view.question().map(|m| m.text.as_str());
        let a = assess(&answer.text, &context, question, &self.options);
        let label = if a.score >= self.options.threshold {
            "grounded"
        } else {
            "ungrounded"
        };
        let unsupported: Vec<&SentenceAssessment> = a.unsupported().collect();
        let explanation = if a.features.refusal {
            "the answer declines to answer; it states nothing the context must support".to_owned()
        } else if unsupported.is_empty() {
            format!(
                "{} of {} content words absent from the retrieved context; no unsupported sentence",
                a.features.absent_words, a.features.content_words
            )
        } else {
            let listed: Vec<String> = unsupported
                .iter()
                .map(|s| {
                    let reasons: Vec<String> = s.reasons.iter().map(|r| r.to_string()).collect();
                    format!("chars {}..{}: {}", s.start, s.end, reasons.join("; "))
                })
                .collect();
            format!(
                "{} of {} sentences unsupported by the retrieved context: {}",
                unsupported.len(),
                a.sentences.iter().filter(|s| s.content_words > 0).count(),
                listed.join(" | ")
            )
        };
        let evidence = unsupported
            .iter()
            .map(|s| Evidence::range(&answer.span_id, s.start, s.end))
            .collect();
        vec![
            Outcome::new("groundedness", a.score)
                .span(answer.span_id.clone())
                .label(label)
                .explanation(explanation)
                .evidence(evidence),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. \
        It is 330 metres tall and was designed by the engineering company of Gustave Eiffel. \
        Visitors can climb the stairs to the second floor. The tower is not open at night.";

    fn run(answer: &str) -> Assessment {
        assess(
            answer,
            &[CONTEXT],
            Some("When was the Eiffel Tower completed?"),
            &GroundednessOptions::default(),
        )
    }

    fn slice(text: &str, s: &SentenceAssessment) -> String {
        text.chars().skip(s.start).take(s.end - s.start).collect()
    }

    #[test]
    fn a_copied_answer_is_grounded() {
        let a = run("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.");
        assert_eq!(a.unsupported().count(), 0, "{a:?}");
        assert!(a.score >= DEFAULT_THRESHOLD, "{a:?}");
    }

    #[test]
    fn a_wrong_number_is_unsupported() {
        let text = "The Eiffel Tower was completed in 1887 for the World's Fair in Paris.";
        let a = run(text);
        let bad: Vec<&SentenceAssessment> = a.unsupported().collect();
        assert_eq!(bad.len(), 1, "{a:?}");
        assert!(
            bad[0]
                .reasons
                .contains(&Reason::AbsentNumbers(vec!["1887".into()]))
        );
        assert!(
            a.score
                < run("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.")
                    .score
        );
    }

    #[test]
    fn a_flipped_negation_is_unsupported() {
        let a = run(
            "The tower is open at night, and visitors can climb the stairs to the second floor.",
        );
        assert_eq!(
            a.features.negation_flips, 0,
            "different sentence: no single match"
        );
        let a = run("The tower is open at night.");
        assert!(
            a.sentences[0].reasons.contains(&Reason::NegationFlip),
            "{a:?}"
        );
    }

    #[test]
    fn an_unsupported_name_is_listed_with_its_char_range() {
        // "é" before the sentence: offsets are chars, not bytes.
        let text =
            "Café note: the tower is 330 metres tall. It was designed by Santiago Calatrava.";
        let a = run(text);
        let bad: Vec<&SentenceAssessment> = a.unsupported().collect();
        assert_eq!(bad.len(), 1, "{a:?}");
        assert_eq!(
            slice(text, bad[0]),
            "It was designed by Santiago Calatrava."
        );
        assert!(bad[0].reasons.contains(&Reason::AbsentNames(vec![
            "santiago".into(),
            "calatrava".into()
        ])));
    }

    #[test]
    fn an_answer_to_a_different_question_scores_low() {
        let text = "Photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen \
            inside the chloroplasts of green plants.";
        let a = run(text);
        assert!(a.score < DEFAULT_THRESHOLD, "{a:?}");
        assert_eq!(a.features.question_coverage, 0.0);
        assert_eq!(a.unsupported().count(), 1);
    }

    #[test]
    fn a_sentence_stitched_from_several_context_sentences_is_weakly_supported() {
        let copied = run("Visitors can climb the stairs to the second floor.");
        assert_eq!(copied.features.weakly_supported_sentences, 0, "{copied:?}");
        // Every word is in the context, but no one context sentence holds half of them.
        let stitched = run("Visitors designed the Paris stairs at night.");
        assert_eq!(stitched.features.absent_words, 0, "{stitched:?}");
        assert_eq!(
            stitched.features.weakly_supported_sentences, 1,
            "{stitched:?}"
        );
        assert!(stitched.score < copied.score, "{stitched:?} vs {copied:?}");
    }

    #[test]
    fn the_most_absent_words_in_one_sentence_are_counted() {
        let a = run("The tower is 330 metres tall. It was painted gold by Napoleon's nephew.");
        assert_eq!(a.features.max_sentence_absent, a.sentences[1].absent_words);
        assert!(a.features.max_sentence_absent >= 3, "{a:?}");
        assert_eq!(a.features.answer_chars, 71);
    }

    #[test]
    fn a_refusal_is_grounded_but_refusal_plus_claims_is_judged() {
        let a = run("Unable to answer based on given passages.");
        assert!(a.features.refusal);
        assert_eq!(a.score, 1.0);
        let a = run(
            "Unable to answer based on given passages. However, the tower was painted red by Napoleon.",
        );
        assert!(!a.features.refusal);
        assert_eq!(a.unsupported().count(), 1, "{a:?}");
    }

    #[test]
    fn options_are_checked() {
        let bad = GroundednessOptions {
            threshold: 1.5,
            ..Default::default()
        };
        assert!(Groundedness::new(&bad).is_err());
        let bad = GroundednessOptions {
            sentence_threshold: 0.0,
            ..Default::default()
        };
        assert!(Groundedness::new(&bad).is_err());
        assert!(Groundedness::new(&GroundednessOptions::default()).is_ok());
    }

    fn span(
        id: &str,
        parent: Option<&str>,
        at: u64,
        attrs: serde_json::Value,
    ) -> agentwire_trace::Span {
        agentwire_trace::Span {
            trace_id: "t".repeat(32),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: "x".into(),
            kind: agentwire_trace::SpanKind::Internal,
            start_time_unix_nano: at,
            end_time_unix_nano: at + 1,
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            events: Vec::new(),
            status: agentwire_trace::SpanStatus::Unset,
        }
    }

    fn trace(answer: &str, with_context: bool) -> TraceView {
        use serde_json::json;
        let mut spans = vec![
            span(
                "r",
                None,
                0,
                json!({"gen_ai.operation.name": "invoke_agent", "agentwire.session": "s"}),
            ),
            span(
                "u",
                Some("r"),
                1,
                json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "user",
                "gen_ai.input.messages": json!([{"role": "user", "parts": [{"type": "text", "content": "When was it completed?"}]}]).to_string()}),
            ),
            span(
                "a",
                Some("r"),
                5,
                json!({"gen_ai.operation.name": "chat", "agentwire.message.role": "assistant",
                "gen_ai.output.messages": json!([{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]).to_string()}),
            ),
        ];
        if with_context {
            spans.push(span("k", Some("r"), 2, json!({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "retrieve",
                "agentwire.tool.retrieval": true, "gen_ai.tool.call.result": json!([CONTEXT]).to_string()})));
        }
        TraceView::from_spans(&spans, &crate::ViewOptions::default()).expect("a trace")
    }

    #[test]
    fn the_scorer_labels_the_final_answer_and_points_at_unsupported_sentences() {
        let scorer = Groundedness::new(&GroundednessOptions::default()).expect("valid");
        let good = scorer.score(&trace(
            "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
            true,
        ));
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].label.as_deref(), Some("grounded"), "{good:?}");
        assert_eq!(good[0].span_id.as_deref(), Some("a"));
        assert!(good[0].evidence.is_empty());
        let text = "It was completed in 1889. It was designed by Santiago Calatrava, who painted it gold in 1901 \
            and moved it to Lyon after a great flood destroyed its wooden foundations.";
        let bad = scorer.score(&trace(text, true));
        assert_eq!(bad[0].label.as_deref(), Some("ungrounded"), "{bad:?}");
        assert_eq!(
            bad[0].evidence,
            vec![Evidence::range("a", 26, text.chars().count())]
        );
        assert!(
            bad[0]
                .explanation
                .as_deref()
                .is_some_and(|e| e.contains("chars 26..")),
            "{bad:?}"
        );
        assert!(
            scorer.score(&trace(text, false)).is_empty(),
            "no context: no verdict"
        );
    }

    #[test]
    fn options_come_from_the_tenant_section() {
        let c = crate::ScoringConfig::parse(
            "[groundedness]\nthreshold = 0.7\nsentence_threshold = 0.5\n",
        )
        .expect("valid");
        assert_eq!(c.groundedness.threshold, 0.7);
        assert_eq!(c.groundedness.min_sentence_words, 3);
        assert!(crate::ScoringConfig::parse("[groundedness]\nthreshhold = 0.7\n").is_err());
    }
}
