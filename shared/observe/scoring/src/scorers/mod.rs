//! The deterministic scorers, and the set a tenant's configuration enables.

pub mod conversation;
pub mod groundedness;
pub mod latency_cost;
pub mod pii;
pub mod rules;
pub mod tool_use;

use crate::config::{ConfigError, ScoringConfig};
use crate::record::Evidence;
use crate::view::TraceView;

/// A verdict a scorer gives; the runner makes a [`crate::ScoreRecord`] of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The record's name: the scorer's, or a dotted sub-name (`rules.no_email`).
    pub name: String,
    /// The span the verdict is about, when it is about one span.
    pub span_id: Option<String>,
    pub value: f64,
    pub label: Option<String>,
    pub explanation: Option<String>,
    pub evidence: Vec<Evidence>,
}

impl Outcome {
    /// A verdict named `name` with `value`, and nothing else yet.
    pub fn new(name: impl Into<String>, value: f64) -> Outcome {
        Outcome {
            name: name.into(),
            span_id: None,
            value,
            label: None,
            explanation: None,
            evidence: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Outcome {
        self.label = Some(label.into());
        self
    }

    pub fn explanation(mut self, explanation: impl Into<String>) -> Outcome {
        self.explanation = Some(explanation.into());
        self
    }

    pub fn span(mut self, span_id: impl Into<String>) -> Outcome {
        self.span_id = Some(span_id.into());
        self
    }

    pub fn evidence(mut self, evidence: Vec<Evidence>) -> Outcome {
        self.evidence = evidence;
        self
    }
}

/// A deterministic scorer: reads a trace, gives verdicts, calls nothing.
pub trait Scorer: Send + Sync {
    /// The scorer's name, as configuration sections and records name it.
    fn name(&self) -> &'static str;

    /// Changes whenever the verdicts it gives a trace can change: a trace is re-scored
    /// under a new version, and never twice under one.
    fn version(&self) -> &'static str;

    /// The verdicts on `view`; none when the scorer does not apply to it.
    fn score(&self, view: &TraceView) -> Vec<Outcome>;
}

/// The scorers one tenant's configuration enables, built once and run on every trace.
pub struct ScorerSet {
    scorers: Vec<Box<dyn Scorer>>,
}

impl ScorerSet {
    /// Builds the enabled scorers, each checking its options.
    pub fn from_config(config: &ScoringConfig) -> Result<ScorerSet, ConfigError> {
        let mut scorers: Vec<Box<dyn Scorer>> = Vec::new();
        if config.enabled("groundedness") {
            scorers.push(Box::new(groundedness::Groundedness::new(
                &config.groundedness,
            )?));
        }
        if config.enabled("tool_use") {
            scorers.push(Box::new(tool_use::ToolUse::new(&config.tool_use)?));
        }
        if config.enabled("rules") {
            scorers.push(Box::new(rules::Rules::new(&config.rules)?));
        }
        if config.enabled("conversation") {
            scorers.push(Box::new(conversation::Conversation::new(
                &config.conversation,
            )?));
        }
        if config.enabled("latency_cost") {
            scorers.push(Box::new(latency_cost::LatencyCost::new(
                &config.latency_cost,
            )?));
        }
        Ok(ScorerSet { scorers })
    }

    /// The scorers, in the order they run.
    pub fn scorers(&self) -> impl Iterator<Item = &dyn Scorer> {
        self.scorers.iter().map(|s| s.as_ref())
    }
}
