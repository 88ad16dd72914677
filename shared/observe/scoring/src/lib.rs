//! Scoring traces (docs/ARCHITECTURE.md §9.3): the trace view every scorer reads
//! ([`view`]), score records ([`record`]), a tenant's configuration ([`config`]), and the
//! deterministic scorers ([`scorers`]). Pure logic: callers read the archive, and store
//! what [`score_trace`] returns. Two ports live here because every store adapter
//! implements them: the score index ([`store`]) and the LLM judge's daily spend
//! ([`budget`]).

pub mod budget;
pub mod config;
pub mod record;
pub mod scorers;
pub mod store;
pub mod view;

pub use config::{ConfigError, SCORERS, ScoringConfig};
pub use record::{Evidence, RecordKey, RecordUsage, ScoreRecord, Source, is_measurement};
pub use scorers::{Outcome, Scorer, ScorerSet};
pub use store::{
    IndexError, MAX_PAGE, ScoreFilter, ScoreIndex, ScorePage, check_replace, check_upsert,
    decode_cursor, encode_cursor,
};
pub use view::{TraceView, ViewError, ViewOptions};

use agentwire_trace::Span;

/// A tenant's scoring: its configuration and the scorers built from it.
pub struct Scoring {
    config: ScoringConfig,
    set: ScorerSet,
}

impl Scoring {
    /// Builds the scorers `config` enables.
    pub fn new(config: ScoringConfig) -> Result<Scoring, ConfigError> {
        let set = ScorerSet::from_config(&config)?;
        Ok(Scoring { config, set })
    }

    /// Parses a configuration file's text and builds its scorers; an error names the line
    /// of the field at fault when the text has it.
    pub fn parse(text: &str) -> Result<Scoring, ConfigError> {
        Scoring::new(ScoringConfig::parse(text)?).map_err(|mut e| {
            if e.line.is_none() {
                e.line = config::locate(text, &e.field).map(|at| config::line_of(text, at));
            }
            e
        })
    }

    pub fn config(&self) -> &ScoringConfig {
        &self.config
    }

    /// The verdicts of every enabled scorer on a trace already read.
    pub fn score_view(&self, view: &TraceView, scored_at_ms: i64) -> Vec<ScoreRecord> {
        score_trace(view, &self.set, scored_at_ms)
    }

    /// The verdicts of every enabled scorer on one trace, as records stamped `scored_at_ms`.
    pub fn score_spans(
        &self,
        spans: &[Span],
        scored_at_ms: i64,
    ) -> Result<Vec<ScoreRecord>, ViewError> {
        let view = TraceView::from_spans(spans, &self.config.view_options())?;
        Ok(score_trace(&view, &self.set, scored_at_ms))
    }
}

/// The verdicts of every scorer in `set` on `view`.
pub fn score_trace(view: &TraceView, set: &ScorerSet, scored_at_ms: i64) -> Vec<ScoreRecord> {
    let mut records = Vec::new();
    for scorer in set.scorers() {
        for outcome in scorer.score(view) {
            records.push(ScoreRecord {
                trace_id: view.trace_id.clone(),
                span_id: outcome.span_id,
                session: view.session.clone(),
                tenant: view.tenant.clone(),
                name: outcome.name,
                value: outcome.value,
                label: outcome.label,
                source: Source::Code,
                explanation: outcome.explanation,
                evidence: outcome.evidence,
                scorer: scorer.name().to_owned(),
                scorer_version: scorer.version().to_owned(),
                trace_digest: view.digest.clone(),
                scored_at_ms,
                usage: None,
            });
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration the README shows is one that works.
    #[test]
    fn the_readme_configuration_parses_and_builds_every_scorer() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("```toml\nscorers = ")
            .expect("the README's scoring configuration");
        let body = &readme[start + "```toml\n".len()..];
        let text = &body[..body.find("```").unwrap()];
        let scoring = Scoring::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scoring.set.scorers().count(), SCORERS.len());
        assert_eq!(scoring.config().retrieval_tools, ["search_docs"]);
    }
}
