//! `conversation`: the implicit feedback a durable session records about each reply.
//!
//! **What it measures.** The fraction of the assistant's replies (assistant messages with
//! text, or that failed or never finished) that drew none of these signals:
//!
//! - **abandoned**: a `presence.leave` while the reply was being written (between its start
//!   and end; any time after its start when it never finished), without that user's
//!   `presence.join` again before it ended: the user left mid-reply;
//! - **cancelled**: a `control.cancel` during the reply or within `after_reply_ms` of its
//!   end, or the reply ended cancelled (finish reason or error `cancel`/`cancelled`/
//!   `canceled`: a cancel that cut it short);
//! - **steered**: a `control.steer` during the reply or within `after_reply_ms` of its end;
//! - **rephrased**: the user's next message repeats or rephrases the one the reply
//!   answered (token Jaccard similarity of their content words at least
//!   `repeat_similarity`, each having at least `repeat_min_tokens` of them). A user message
//!   repeated before any reply to it is not counted: that is no verdict on a reply;
//! - **failed**: the reply ended in error (span status error, finish reason `error`), or
//!   never finished.
//!
//! A control event counts against the latest reply that started before it. Records: the
//! trace's `conversation` (value = replies without a signal / replies, label `healthy` when
//! at least `healthy_at`, else `unhealthy`; the explanation counts each signal, evidence is
//! the affected messages' spans), and with `per_signal` one record per signal,
//! `conversation.abandoned`, `.cancelled`, `.steered`, `.rephrased`, `.failed` (value =
//! replies without it / replies, label `absent` or `present`), so a dashboard can chart each
//! rate on its own. No records for a trace without replies.
//!
//! ```toml
//! [conversation]
//! after_reply_ms = 30000      # how long after a reply a cancel or steer still counts
//! repeat_similarity = 0.6     # Jaccard of content words for "rephrased"
//! repeat_min_tokens = 2       # content words both messages need
//! healthy_at = 1.0            # value at or above which the label is `healthy`
//! per_signal = true           # the five per-signal records
//! ```

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;
use crate::record::Evidence;
use crate::scorers::{Outcome, Scorer};
use crate::view::{Message, TraceEvent, TraceView};

/// The `[conversation]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationOptions {
    /// How long after a reply ends a cancel or steer still counts against it, in ms.
    /// Default 30 000; at most a day.
    pub after_reply_ms: u64,
    /// The token Jaccard similarity, in (0, 1], at or above which a user's message repeats
    /// their previous one. Default 0.6.
    pub repeat_similarity: f64,
    /// The content words each of the two messages needs for a repeat to count (so `yes` /
    /// `yes` is no rephrasing). Default 2.
    pub repeat_min_tokens: usize,
    /// The value, in [0, 1], at or above which the label is `healthy`. Default 1.0: any
    /// signal makes the trace `unhealthy`.
    pub healthy_at: f64,
    /// Also give one record per signal. Default true.
    pub per_signal: bool,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        ConversationOptions {
            after_reply_ms: 30_000,
            repeat_similarity: 0.6,
            repeat_min_tokens: 2,
            healthy_at: 1.0,
            per_signal: true,
        }
    }
}

/// The most `after_reply_ms` may be: a day.
const MAX_AFTER_REPLY_MS: u64 = 86_400_000;

/// The `conversation` scorer.
#[derive(Debug, Clone)]
pub struct Conversation {
    options: ConversationOptions,
}

impl Conversation {
    /// Checks `options`; an error names the field, e.g. `conversation.repeat_similarity`.
    pub fn new(options: &ConversationOptions) -> Result<Conversation, ConfigError> {
        let o = options;
        if o.after_reply_ms > MAX_AFTER_REPLY_MS {
            return Err(ConfigError::new(
                "conversation.after_reply_ms",
                format!(
                    "{} is more than a day ({MAX_AFTER_REPLY_MS})",
                    o.after_reply_ms
                ),
            ));
        }
        if !(o.repeat_similarity > 0.0 && o.repeat_similarity <= 1.0) {
            return Err(ConfigError::new(
                "conversation.repeat_similarity",
                format!("{} is not in (0, 1]", o.repeat_similarity),
            ));
        }
        if !(0.0..=1.0).contains(&o.healthy_at) {
            return Err(ConfigError::new(
                "conversation.healthy_at",
                format!("{} is not in [0, 1]", o.healthy_at),
            ));
        }
        Ok(Conversation {
            options: options.clone(),
        })
    }
}

/// The signals, in the order records and explanations list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Abandoned,
    Cancelled,
    Steered,
    Rephrased,
    Failed,
}

impl Signal {
    const ALL: [Signal; 5] = [
        Signal::Abandoned,
        Signal::Cancelled,
        Signal::Steered,
        Signal::Rephrased,
        Signal::Failed,
    ];

    fn name(self) -> &'static str {
        match self {
            Signal::Abandoned => "abandoned",
            Signal::Cancelled => "cancelled",
            Signal::Steered => "steered",
            Signal::Rephrased => "rephrased",
            Signal::Failed => "failed",
        }
    }

    /// What happened to the reply, after "1 of 3 replies ".
    fn phrase(self) -> &'static str {
        match self {
            Signal::Abandoned => "abandoned (the user left mid-reply)",
            Signal::Cancelled => "cancelled",
            Signal::Steered => "steered",
            Signal::Rephrased => "followed by the user repeating or rephrasing",
            Signal::Failed => "failed (error, or never finished)",
        }
    }
}

/// One reply and what it drew: per signal, the spans that show it.
struct Turn<'v> {
    message: &'v Message,
    signals: [Vec<&'v str>; 5],
}

impl<'v> Turn<'v> {
    fn mark(&mut self, signal: Signal, spans: &[&'v str]) {
        let list = &mut self.signals[signal as usize];
        if list.is_empty() {
            list.push(&self.message.span_id);
        }
        for span in spans {
            if !list.contains(span) {
                list.push(span);
            }
        }
    }

    fn has(&self, signal: Signal) -> bool {
        !self.signals[signal as usize].is_empty()
    }
}

fn is_cancel_reason(reason: &str) -> bool {
    matches!(reason, "cancel" | "cancelled" | "canceled")
}

/// The user a presence event names (`agentwire.data`'s `user`, else `agentwire.user`).
fn presence_user(event: &TraceEvent) -> Option<String> {
    let data = event
        .attributes
        .get("agentwire.data")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    data.as_ref()
        .and_then(|d| d.get("user"))
        .and_then(Value::as_str)
        .or_else(|| {
            event
                .attributes
                .get("agentwire.user")
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
}

/// Words that carry no content: dropped before comparing two messages.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "to", "of", "in", "on", "at",
    "for", "and", "or", "but", "it", "its", "this", "that", "these", "those", "i", "me", "my",
    "you", "your", "we", "our", "do", "does", "did", "can", "could", "would", "will", "please",
    "what", "whats", "how", "s", "t", "so", "just", "with", "about", "there", "any",
];

/// A message's content words: lowercase alphanumeric runs, stopwords dropped.
fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

impl Conversation {
    fn turns<'v>(&self, view: &'v TraceView) -> Vec<Turn<'v>> {
        let window_ns = self.options.after_reply_ms.saturating_mul(1_000_000);
        let mut turns: Vec<Turn> = view
            .messages
            .iter()
            .filter(|m| m.role == "assistant")
            .filter(|m| !m.text.trim().is_empty() || m.error.is_some() || m.incomplete)
            .map(|message| Turn {
                message,
                signals: Default::default(),
            })
            .collect();

        // The reply's own ending.
        for turn in &mut turns {
            let m = turn.message;
            let cancelled = m.finish_reason.as_deref().is_some_and(is_cancel_reason)
                || m.error.as_deref().is_some_and(is_cancel_reason);
            if cancelled {
                turn.mark(Signal::Cancelled, &[]);
            } else if m.error.is_some()
                || m.finish_reason.as_deref() == Some("error")
                || m.incomplete
            {
                turn.mark(Signal::Failed, &[]);
            }
        }

        // Sorted by start, so the replies started by a time are a prefix (an output
        // message starts at its first token, which can reorder them).
        turns.sort_by_key(|t| t.message.start_ns);
        let started_by =
            |turns: &[Turn], time: u64| turns.partition_point(|t| t.message.start_ns <= time);

        // Control: against the latest reply started before it, during it or just after.
        for event in &view.events {
            let signal = match event.name.as_str() {
                "control.cancel" => Signal::Cancelled,
                "control.steer" => Signal::Steered,
                _ => continue,
            };
            let Some(latest) = started_by(&turns, event.time_ns).checked_sub(1) else {
                continue;
            };
            let turn = &mut turns[latest];
            let m = turn.message;
            if m.incomplete || event.time_ns <= m.end_ns.saturating_add(window_ns) {
                turn.mark(signal, &[]);
            }
        }

        // Presence: a leave while a reply was being written, with no return before its end.
        // Each user's joins, as (event index, time) in order.
        let mut joins: HashMap<Option<String>, Vec<(usize, u64)>> = HashMap::new();
        for (i, event) in view.events.iter().enumerate() {
            if event.name == "presence.join" {
                joins
                    .entry(presence_user(event))
                    .or_default()
                    .push((i, event.time_ns));
            }
        }
        for (i, leave) in view.events.iter().enumerate() {
            if leave.name != "presence.leave" {
                continue;
            }
            let user = presence_user(leave);
            let rejoined = joins.get(&user).and_then(|list| {
                let next = list.partition_point(|&(k, _)| k <= i);
                list.get(next).map(|&(_, time)| time)
            });
            let started = started_by(&turns, leave.time_ns);
            for turn in &mut turns[..started] {
                let m = turn.message;
                let during = m.incomplete || leave.time_ns < m.end_ns;
                if !during || turn.has(Signal::Abandoned) {
                    continue;
                }
                let returned = rejoined.is_some_and(|time| m.incomplete || time <= m.end_ns);
                if !returned {
                    turn.mark(Signal::Abandoned, &[]);
                }
            }
        }

        // Repeats: consecutive user messages alike, against the reply between them.
        let users: Vec<&Message> = view.messages.iter().filter(|m| m.role == "user").collect();
        let mut previous: Option<(&Message, HashSet<String>)> = None;
        for user in users {
            let words = content_words(&user.text);
            if let Some((before, before_words)) = &previous {
                let enough = words.len().min(before_words.len()) >= self.options.repeat_min_tokens;
                if enough && jaccard(&words, before_words) >= self.options.repeat_similarity {
                    let reply = turns.iter_mut().rev().find(|t| {
                        t.message.start_ns >= before.start_ns && t.message.start_ns <= user.start_ns
                    });
                    if let Some(turn) = reply {
                        turn.mark(Signal::Rephrased, &[&before.span_id, &user.span_id]);
                    }
                }
            }
            previous = Some((user, words));
        }
        turns
    }
}

fn replies(n: usize) -> &'static str {
    if n == 1 { "reply" } else { "replies" }
}

impl Scorer for Conversation {
    fn name(&self) -> &'static str {
        "conversation"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn score(&self, view: &TraceView) -> Vec<Outcome> {
        let turns = self.turns(view);
        if turns.is_empty() {
            return Vec::new();
        }
        let total = turns.len();
        let healthy = turns
            .iter()
            .filter(|t| t.signals.iter().all(Vec::is_empty))
            .count();
        let value = healthy as f64 / total as f64;
        let mut evidence: Vec<Evidence> = Vec::new();
        let mut parts = Vec::new();
        let mut per_signal = Vec::new();
        for signal in Signal::ALL {
            let hit: Vec<&Turn> = turns.iter().filter(|t| t.has(signal)).collect();
            let mut spans: Vec<&str> = Vec::new();
            for turn in &hit {
                for span in &turn.signals[signal as usize] {
                    if !spans.contains(span) {
                        spans.push(span);
                    }
                }
            }
            for span in &spans {
                if !evidence.iter().any(|e| e.span_id == *span) {
                    evidence.push(Evidence::span(span));
                }
            }
            if !hit.is_empty() {
                parts.push(format!("{} {}", hit.len(), signal.phrase()));
            }
            if self.options.per_signal {
                let name = format!("conversation.{}", signal.name());
                let outcome = if hit.is_empty() {
                    Outcome::new(name, 1.0).label("absent").explanation(format!(
                        "none of {total} {} {}",
                        replies(total),
                        signal.name()
                    ))
                } else {
                    Outcome::new(name, 1.0 - hit.len() as f64 / total as f64)
                        .label("present")
                        .explanation(format!(
                            "{} of {total} {} {}",
                            hit.len(),
                            replies(total),
                            signal.phrase()
                        ))
                        .evidence(spans.iter().map(|s| Evidence::span(s)).collect())
                };
                per_signal.push(outcome);
            }
        }
        let explanation = if parts.is_empty() {
            format!("{total} {}, no sign of trouble", replies(total))
        } else {
            format!("{total} {}: {}", replies(total), parts.join(", "))
        };
        let label = if value >= self.options.healthy_at {
            "healthy"
        } else {
            "unhealthy"
        };
        let mut outcomes = vec![
            Outcome::new("conversation", value)
                .label(label)
                .explanation(explanation)
                .evidence(evidence),
        ];
        outcomes.extend(per_signal);
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::rules::tests::{message, view};
    use serde_json::{Map, Value, json};

    fn event(name: &str, ms: u64, user: Option<&str>) -> TraceEvent {
        let mut attributes = Map::new();
        if let Some(user) = user {
            attributes.insert(
                "agentwire.data".into(),
                json!({"user": user, "connection": "c1"}).to_string().into(),
            );
        }
        TraceEvent {
            name: name.to_owned(),
            time_ns: ms * 1_000_000,
            span_id: "root".into(),
            attributes,
        }
    }

    fn score(options: ConversationOptions, trace: &TraceView) -> Vec<Outcome> {
        Conversation::new(&options).unwrap().score(trace)
    }

    fn named<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
        outcomes
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no {name} in {outcomes:?}"))
    }

    fn spans(o: &Outcome) -> Vec<&str> {
        o.evidence.iter().map(|e| e.span_id.as_str()).collect()
    }

    #[test]
    fn a_quiet_conversation_is_healthy_with_every_signal_absent() {
        let trace = view(vec![
            message("u1", "user", "What is the refund policy?", 0, 10),
            message("a1", "assistant", "Thirty days.", 20, 30),
        ]);
        let outcomes = score(ConversationOptions::default(), &trace);
        assert_eq!(outcomes.len(), 6);
        let overall = &outcomes[0];
        assert_eq!(
            (overall.name.as_str(), overall.value),
            ("conversation", 1.0)
        );
        assert_eq!(overall.label.as_deref(), Some("healthy"));
        assert_eq!(
            overall.explanation.as_deref(),
            Some("1 reply, no sign of trouble")
        );
        for signal in Signal::ALL {
            let o = named(&outcomes, &format!("conversation.{}", signal.name()));
            assert_eq!((o.value, o.label.as_deref()), (1.0, Some("absent")));
        }
        let lean = ConversationOptions {
            per_signal: false,
            ..ConversationOptions::default()
        };
        assert_eq!(score(lean, &trace).len(), 1);
        assert!(
            score(
                ConversationOptions::default(),
                &view(vec![message("u", "user", "hi", 0, 1)])
            )
            .is_empty()
        );
    }

    #[test]
    fn leaving_mid_reply_abandons_it_unless_the_user_comes_back() {
        let mut trace = view(vec![
            message("u1", "user", "Tell me a long story", 0, 10),
            message("a1", "assistant", "Once upon a time...", 20, 5_000),
            message("u2", "user", "And another one", 6_000, 6_010),
            message("a2", "assistant", "There was...", 6_020, 9_000),
        ]);
        // ann leaves during a1 and never returns; bob leaves during a2 and comes back.
        trace.events = vec![
            event("presence.leave", 1_000, Some("ann")),
            // bob arriving does not bring ann back.
            event("presence.join", 2_000, Some("bob")),
            event("presence.leave", 7_000, Some("bob")),
            event("presence.join", 8_000, Some("bob")),
            // A leave after a reply ended abandons nothing.
            event("presence.leave", 9_500, Some("ann")),
        ];
        let outcomes = score(ConversationOptions::default(), &trace);
        let overall = &outcomes[0];
        assert_eq!(overall.value, 0.5);
        assert_eq!(overall.label.as_deref(), Some("unhealthy"));
        assert_eq!(
            overall.explanation.as_deref(),
            Some("2 replies: 1 abandoned (the user left mid-reply)")
        );
        assert_eq!(spans(overall), ["a1"]);
        let abandoned = named(&outcomes, "conversation.abandoned");
        assert_eq!(
            (abandoned.value, abandoned.label.as_deref()),
            (0.5, Some("present"))
        );
        assert_eq!(spans(abandoned), ["a1"]);
    }

    #[test]
    fn leaving_an_unfinished_reply_abandons_it_and_it_failed() {
        let mut trace = view(vec![
            message("u1", "user", "Summarise the report", 0, 10),
            message("a1", "assistant", "The report", 20, 100),
        ]);
        trace.messages[1].incomplete = true;
        trace.events = vec![event("presence.leave", 60_000, Some("ann"))];
        let outcomes = score(ConversationOptions::default(), &trace);
        assert_eq!(
            named(&outcomes, "conversation.abandoned").label.as_deref(),
            Some("present")
        );
        assert_eq!(
            named(&outcomes, "conversation.failed").label.as_deref(),
            Some("present")
        );
        assert_eq!(outcomes[0].value, 0.0);
    }

    #[test]
    fn cancels_and_steers_count_during_or_just_after_a_reply() {
        let mut trace = view(vec![
            message("u1", "user", "Plan my trip to Rome", 0, 10),
            message("a1", "assistant", "Day one...", 20, 1_000),
            message("u2", "user", "Now plan Paris", 100_000, 100_010),
            message("a2", "assistant", "Day one in Paris...", 100_020, 101_000),
            message("u3", "user", "And Berlin", 200_000, 200_010),
            message("a3", "assistant", "Berlin...", 200_020, 201_000),
        ]);
        trace.events = vec![
            // 20 s after a1: within the default 30 s.
            event("control.steer", 21_000, None),
            // During a2.
            event("control.cancel", 100_500, None),
            // 60 s after a3: too late to be about it.
            event("control.cancel", 261_000, None),
        ];
        let outcomes = score(ConversationOptions::default(), &trace);
        assert_eq!(spans(named(&outcomes, "conversation.steered")), ["a1"]);
        assert_eq!(spans(named(&outcomes, "conversation.cancelled")), ["a2"]);
        assert!((outcomes[0].value - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            outcomes[0].explanation.as_deref(),
            Some("3 replies: 1 cancelled, 1 steered")
        );
        // A shorter window leaves the steer out.
        let short = ConversationOptions {
            after_reply_ms: 10_000,
            ..ConversationOptions::default()
        };
        let outcomes = score(short, &trace);
        assert_eq!(
            named(&outcomes, "conversation.steered").label.as_deref(),
            Some("absent")
        );
    }

    #[test]
    fn a_reply_cut_short_by_a_cancel_is_cancelled_not_failed() {
        let mut trace = view(vec![
            message("u1", "user", "Write an essay", 0, 10),
            message("a1", "assistant", "Essays are", 20, 30),
            message("u2", "user", "Another question entirely", 40, 50),
            message("a2", "assistant", "", 60, 70),
        ]);
        trace.messages[1].finish_reason = Some("cancelled".into());
        trace.messages[1].error = Some("cancelled".into());
        trace.messages[3].error = Some("rate_limited".into());
        let outcomes = score(ConversationOptions::default(), &trace);
        assert_eq!(spans(named(&outcomes, "conversation.cancelled")), ["a1"]);
        assert_eq!(spans(named(&outcomes, "conversation.failed")), ["a2"]);
        assert_eq!(outcomes[0].value, 0.0);
    }

    #[test]
    fn the_user_rephrasing_counts_against_the_reply_between() {
        let trace = view(vec![
            message("u1", "user", "How do I reset my password?", 0, 10),
            message("a1", "assistant", "Our opening hours are 9 to 5.", 20, 30),
            message("u2", "user", "How can I reset my password", 40, 50),
            message("a2", "assistant", "Click 'Forgot password'.", 60, 70),
            message("u3", "user", "thanks", 80, 90),
            message("a3", "assistant", "You're welcome.", 100, 110),
            message("u4", "user", "thanks", 120, 130),
            message("a4", "assistant", "Anytime.", 140, 150),
        ]);
        let outcomes = score(ConversationOptions::default(), &trace);
        let rephrased = named(&outcomes, "conversation.rephrased");
        assert_eq!(spans(rephrased), ["a1", "u1", "u2"]);
        assert_eq!(
            rephrased.explanation.as_deref(),
            Some("1 of 4 replies followed by the user repeating or rephrasing")
        );
        // `thanks` / `thanks`: too few content words to count.
        assert_eq!(outcomes[0].value, 0.75);
        let strict = ConversationOptions {
            repeat_similarity: 1.0,
            ..ConversationOptions::default()
        };
        // {reset, password} both times: identical content words.
        assert_eq!(score(strict, &trace)[0].value, 0.75);
        let different = view(vec![
            message("u1", "user", "How do I reset my password?", 0, 10),
            message("a1", "assistant", "Like this.", 20, 30),
            message("u2", "user", "How do I change my shipping address?", 40, 50),
        ]);
        assert_eq!(
            score(ConversationOptions::default(), &different)[0].value,
            1.0
        );
    }

    /// A session as the archiver makes a trace of it.
    fn archived(events: &[Value]) -> Vec<agentwire_trace::Span> {
        use agentwire_trace::{SessionEvent, TraceContext, build_trace};
        let json: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
        let offsets: Vec<String> = (0..events.len()).map(|i| format!("{i:016}")).collect();
        let events: Vec<SessionEvent> = json
            .iter()
            .zip(&offsets)
            .map(|(json, offset)| SessionEvent {
                offset,
                json,
                at_ms: None,
            })
            .collect();
        let ctx = TraceContext {
            tenant: "acme",
            session: "s-1",
            archived_at_ms: 1_750_000_000_000,
        };
        build_trace(&ctx, &events)
    }

    #[test]
    fn an_archived_session_is_scored_through_the_tenant_configuration() {
        use agentwire_session::events::{ControlKind, Envelope};
        let at = |envelope: Envelope, ts: u64| envelope.with_extra("ts", ts).to_value();
        let spans = archived(&[
            at(Envelope::message_start("u1", "user"), 1_000),
            at(Envelope::message_delta("u1", "Write me a long poem"), 1_000),
            at(Envelope::message_end("u1").with_role("user"), 1_001),
            at(
                Envelope::message_start("m1", "assistant")
                    .with_agent("bot")
                    .with_extra("model", "gpt-4o-2024-08-06"),
                1_500,
            ),
            at(
                Envelope::message_delta("m1", "Roses are red, mail me at ann@example.com")
                    .with_agent("bot"),
                1_600,
            ),
            // What the WebSocket handlers append when ann's last connection goes.
            at(Envelope::presence_leave("ann", "c1"), 1_700),
            at(Envelope::control(&ControlKind::Cancel, json!({})), 1_800),
            at(
                Envelope::message_stopped("m1")
                    .with_agent("bot")
                    .with_data(json!({
                        "stopped": true,
                        "usage": {"input_tokens": 1000, "output_tokens": 100}
                    })),
                1_900,
            ),
        ]);
        let scoring = crate::Scoring::parse(
            "scorers = [\"rules\", \"conversation\", \"latency_cost\"]\n\
             [conversation]\nper_signal = false\n\
             [latency_cost]\nttft_ms_max = 400\n\
             [latency_cost.prices.\"gpt-4o\"]\ninput_per_million = 2.5\noutput_per_million = 10\n",
        )
        .unwrap();
        let records = scoring.score_spans(&spans, 0).unwrap();
        let find = |name: &str| {
            records
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("no {name} in {records:?}"))
        };
        let email = find("rules.no_pii_email");
        assert_eq!(email.label.as_deref(), Some("violated"));
        assert_eq!(
            (email.evidence[0].start, email.evidence[0].end),
            (Some(26), Some(41))
        );
        let conversation = find("conversation");
        assert_eq!(conversation.label.as_deref(), Some("unhealthy"));
        assert_eq!(
            conversation.explanation.as_deref(),
            Some("1 reply: 1 abandoned (the user left mid-reply), 1 cancelled")
        );
        assert_eq!(conversation.scorer, "conversation");
        let ttft = find("latency.time_to_first_token_ms");
        // From the end of the question (1 001) to the first delta (1 600).
        assert_eq!((ttft.value, ttft.label.as_deref()), (599.0, Some("slow")));
        assert_eq!(find("latency.total_ms").value, 900.0);
        assert_eq!(find("usage.tokens").value, 1_100.0);
        assert!((find("cost.usd").value - 0.0035).abs() < 1e-12);
    }

    #[test]
    fn bad_options_are_refused_naming_the_field() {
        let error = |o: ConversationOptions| Conversation::new(&o).unwrap_err().field;
        let d = ConversationOptions::default;
        assert_eq!(
            error(ConversationOptions {
                repeat_similarity: 0.0,
                ..d()
            }),
            "conversation.repeat_similarity"
        );
        assert_eq!(
            error(ConversationOptions {
                repeat_similarity: f64::NAN,
                ..d()
            }),
            "conversation.repeat_similarity"
        );
        assert_eq!(
            error(ConversationOptions {
                healthy_at: 1.5,
                ..d()
            }),
            "conversation.healthy_at"
        );
        assert_eq!(
            error(ConversationOptions {
                after_reply_ms: MAX_AFTER_REPLY_MS + 1,
                ..d()
            }),
            "conversation.after_reply_ms"
        );
        let parsed: ConversationOptions = toml::from_str("after_reply_ms = 5000\n").unwrap();
        assert_eq!(parsed.after_reply_ms, 5_000);
        assert_eq!(parsed.repeat_similarity, 0.6);
        assert!(toml::from_str::<ConversationOptions>("window = 1\n").is_err());
    }
}
