//! A tenant's scoring configuration: one TOML file, a section per scorer.
//!
//! ```toml
//! # Which scorers run (all five when absent).
//! scorers = ["groundedness", "tool_use", "rules", "conversation", "latency_cost"]
//! # Tools whose results count as retrieved context, besides spans marked as retrieval.
//! retrieval_tools = ["search_docs"]
//!
//! [groundedness]
//! threshold = 0.5
//! ```
//!
//! Every section and field has a default, so an empty file (or none) is valid; an unknown
//! section, field or scorer is an error, as is a value a scorer cannot use (a bad pattern).

use serde::Deserialize;

use crate::scorers::conversation::ConversationOptions;
use crate::scorers::groundedness::GroundednessOptions;
use crate::scorers::latency_cost::LatencyCostOptions;
use crate::scorers::rules::RulesOptions;
use crate::scorers::tool_use::ToolUseOptions;
use crate::view::ViewOptions;

/// The scorers a tenant can run, in the order they run.
pub const SCORERS: [&str; 5] = [
    "groundedness",
    "tool_use",
    "rules",
    "conversation",
    "latency_cost",
];

/// One tenant's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// The scorers to run, by name; all of [`SCORERS`] when absent.
    pub scorers: Option<Vec<String>>,
    /// Tool names whose results are retrieved context.
    pub retrieval_tools: Vec<String>,
    pub groundedness: GroundednessOptions,
    pub tool_use: ToolUseOptions,
    pub rules: RulesOptions,
    pub conversation: ConversationOptions,
    pub latency_cost: LatencyCostOptions,
}

/// What is wrong with a configuration: the field, its line when known, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default(), if field.is_empty() { "(file)" } else { field })]
pub struct ConfigError {
    /// The dotted path of the field, e.g. `rules.rule[2].pattern`; empty for the file.
    pub field: String,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The error at the line holding byte `offset` of `text`.
    pub fn at(mut self, text: &str, offset: usize) -> ConfigError {
        self.line = Some(line_of(text, offset));
        self
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where in `text` the field at dotted `path` (`rules.rule[2].pattern`,
/// `latency_cost.prices."gpt-4o".input_per_million`) is written, as a byte offset: found by
/// walking its tables' headers (`[[rules.rule]]` counted for `[2]`) and then its key.
/// `None` when the text does not spell it in the usual way (inline tables, dotted keys).
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (segment, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            (format!("\"{}\"", &quoted[..end]), &quoted[end + 1..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        let (index, tail) = match tail.strip_prefix('[') {
            Some(inner) => {
                let end = inner.find(']')?;
                (inner[..end].parse().ok(), &inner[end + 1..])
            }
            None => (None, tail),
        };
        segments.push((segment, index));
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0, |at, line| {
            let start = *at;
            *at += line.len();
            Some((start, line.trim()))
        })
        .collect();
    let mut from = 0;
    let mut table = String::new();
    let mut found = None;
    for (n, (segment, index)) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        let name = if table.is_empty() {
            segment.clone()
        } else {
            format!("{table}.{segment}")
        };
        let header = match index {
            Some(_) => format!("[[{name}]]"),
            None => format!("[{name}]"),
        };
        let wanted = index.unwrap_or(0);
        let headers: Vec<usize> = lines[from..]
            .iter()
            .enumerate()
            .filter(|(_, (_, line))| *line == header)
            .map(|(i, _)| from + i)
            .collect();
        if let Some(&line) = headers.get(wanted) {
            from = line + 1;
            found = Some(lines[line].0);
            table = name;
            continue;
        }
        if !last {
            // A table only its sub-tables declare (`[latency_cost.prices."x"]`).
            table = name;
            continue;
        }
        // A key of the current table: the first line setting it, before the next header.
        let key = lines[from..]
            .iter()
            .take_while(|(_, line)| !line.starts_with('['))
            .find(|(_, line)| {
                line.strip_prefix(segment.as_str())
                    .is_some_and(|after| after.trim_start().starts_with('='))
            })?;
        return Some(key.0);
    }
    found
}

impl ScoringConfig {
    /// Parses a configuration file's text, checking the scorer names (the scorers check
    /// their own options when [`crate::ScorerSet::from_config`] builds them).
    pub fn parse(text: &str) -> Result<ScoringConfig, ConfigError> {
        let config: ScoringConfig = toml::from_str(text).map_err(|e| {
            let mut error = ConfigError::new(String::new(), e.message().to_owned());
            if let Some(span) = e.span() {
                error = error.at(text, span.start);
            }
            error
        })?;
        if let Some(names) = &config.scorers {
            for (i, name) in names.iter().enumerate() {
                if !SCORERS.contains(&name.as_str()) {
                    let mut error = ConfigError::new(
                        format!("scorers[{i}]"),
                        format!(
                            "unknown scorer `{name}`, expected one of {}",
                            SCORERS.join(", ")
                        ),
                    );
                    if let Some(offset) = text.find(&format!("\"{name}\"")) {
                        error = error.at(text, offset);
                    }
                    return Err(error);
                }
            }
        }
        Ok(config)
    }

    /// The label threshold of scorer `name`, for the scorers that have one (calibration
    /// tunes it).
    pub fn threshold(&self, name: &str) -> Option<f64> {
        match name {
            "groundedness" => Some(self.groundedness.threshold),
            _ => None,
        }
    }

    /// `text` with `[<name>] threshold` set to `value`, everything else (comments
    /// included) kept: the line replaced when the section has one, else added under the
    /// section's header, else the section appended. The result is checked as a whole.
    pub fn with_threshold(text: &str, name: &str, value: f64) -> Result<String, ConfigError> {
        if ScoringConfig::default().threshold(name).is_none() {
            return Err(ConfigError::new(
                name,
                format!("scorer `{name}` has no threshold to set"),
            ));
        }
        let setting = format!("threshold = {value}");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let header =
            |l: &str| l.trim().trim_end_matches(|c| c != ']').trim() == format!("[{name}]");
        match lines.iter().position(|l| header(l)) {
            Some(at) => {
                let end = lines[at + 1..]
                    .iter()
                    .position(|l| l.trim_start().starts_with('['))
                    .map_or(lines.len(), |i| at + 1 + i);
                let existing = lines[at + 1..end].iter().position(|l| {
                    l.trim_start()
                        .strip_prefix("threshold")
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                });
                match existing {
                    Some(i) => lines[at + 1 + i] = setting,
                    None => lines.insert(at + 1, setting),
                }
            }
            None => {
                if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                    lines.push(String::new());
                }
                lines.push(format!("[{name}]"));
                lines.push(setting);
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        let parsed = crate::Scoring::parse(&out)?;
        if parsed.config().threshold(name) != Some(value) {
            return Err(ConfigError::new(
                format!("{name}.threshold"),
                "the file sets it in a form this edit does not recognise",
            ));
        }
        Ok(out)
    }

    /// Whether scorer `name` runs.
    pub fn enabled(&self, name: &str) -> bool {
        self.scorers
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// How traces are read for this tenant.
    pub fn view_options(&self) -> ViewOptions {
        ViewOptions {
            retrieval_tools: self.retrieval_tools.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_is_set_in_place_keeping_the_rest_of_the_file() {
        let text = "# ours\nretrieval_tools = [\"search\"]\n\n[groundedness]\n# tuned by hand\nthreshold = 0.7\nsentence_threshold = 0.4\n\n[rules]\n";
        let out = ScoringConfig::with_threshold(text, "groundedness", 0.42).unwrap();
        assert_eq!(out, text.replace("threshold = 0.7", "threshold = 0.42"));
        let config = ScoringConfig::parse(&out).unwrap();
        assert_eq!(config.groundedness.sentence_threshold, 0.4);

        // No line: added under the header; no section: appended; no file: just the section.
        let out = ScoringConfig::with_threshold(
            "[groundedness]\nsentence_threshold = 0.4\n",
            "groundedness",
            0.3,
        )
        .unwrap();
        assert_eq!(
            out,
            "[groundedness]\nthreshold = 0.3\nsentence_threshold = 0.4\n"
        );
        let out =
            ScoringConfig::with_threshold("retrieval_tools = []", "groundedness", 0.3).unwrap();
        assert_eq!(
            out,
            "retrieval_tools = []\n\n[groundedness]\nthreshold = 0.3\n"
        );
        assert_eq!(
            ScoringConfig::with_threshold("", "groundedness", 0.3).unwrap(),
            "[groundedness]\nthreshold = 0.3\n"
        );
    }

    #[test]
    fn a_scorer_without_a_threshold_or_a_value_out_of_range_is_refused() {
        let e = ScoringConfig::with_threshold("", "tool_use", 0.5).unwrap_err();
        assert!(e.message.contains("no threshold"), "{e}");
        let e = ScoringConfig::with_threshold("", "groundedness", 1.5).unwrap_err();
        assert_eq!(e.field, "groundedness.threshold");
    }

    #[test]
    fn fields_are_located_through_their_tables() {
        let text = "scorers = [\"rules\"]\n[[rules.rule]]\nid = \"a\"\npattern = \"x\"\n\n[[rules.rule]]\nid = \"b\"\npattern = \"(\"\n[latency_cost.prices.\"gpt-4o\"]\ninput_per_million = -1\n";
        let line = |path: &str| locate(text, path).map(|at| line_of(text, at));
        assert_eq!(line("rules.rule[1].pattern"), Some(8));
        assert_eq!(line("rules.rule[0].id"), Some(3));
        assert_eq!(line("rules.rule[1]"), Some(6));
        assert_eq!(
            line("latency_cost.prices.\"gpt-4o\".input_per_million"),
            Some(10)
        );
        assert_eq!(line("scorers"), Some(1));
        assert_eq!(line("rules.rule[2].pattern"), None);
    }

    #[test]
    fn an_empty_file_enables_every_scorer() {
        let config = ScoringConfig::parse("").unwrap();
        assert!(SCORERS.iter().all(|s| config.enabled(s)));
    }

    #[test]
    fn a_list_enables_only_its_scorers() {
        let config = ScoringConfig::parse("scorers = [\"rules\"]\n").unwrap();
        assert!(config.enabled("rules"));
        assert!(!config.enabled("groundedness"));
    }

    #[test]
    fn unknown_scorers_sections_and_fields_name_the_line() {
        let error =
            ScoringConfig::parse("# comment\nscorers = [\"rules\", \"vibes\"]\n").unwrap_err();
        assert_eq!(error.field, "scorers[1]");
        assert_eq!(error.line, Some(2));
        assert!(error.message.contains("unknown scorer `vibes`"), "{error}");

        let error = ScoringConfig::parse("retrieval_tools = []\n\n[groundednes]\n").unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.message.contains("groundednes"), "{error}");

        let error = ScoringConfig::parse("retrieval_tools = \"search\"\n").unwrap_err();
        assert_eq!(error.line, Some(1), "{error}");
        assert!(error.to_string().starts_with("line 1: "), "{error}");
    }
}
