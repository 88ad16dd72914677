//! A tenant's judge configuration: `config/tenant=<t>/judge.toml` beside its scoring
//! configuration. No file, no judge.
//!
//! ```toml
//! [endpoint]
//! kind = "openai"                       # openai | bedrock
//! base_url = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"        # or api_key_secret = "<Secrets Manager id>"
//! structured = "json_schema"            # json_schema | tool | json_object | none
//!
//! [budget]
//! daily_tokens = 2000000
//! daily_usd = 5.0
//!
//! [prices."gpt-4o-mini"]
//! input_per_million = 0.15
//! output_per_million = 0.60
//!
//! [redaction]
//! mask = ["email", "phone", "card", "iban"]
//!
//! [[rubric]]
//! name = "advice"
//! sample = 0.1
//! always_if_flagged = ["groundedness", "rules.*"]
//! ```

use std::collections::BTreeMap;

use agentwire_scoring::ConfigError;
use agentwire_scoring::scorers::latency_cost::{Price, PriceTable};
use agentwire_scoring::scorers::rules::PiiKind;
use serde::Deserialize;

use crate::budget::Caps;
use crate::endpoint::{RetryPolicy, Structured};

/// A tenant's `judge.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    pub endpoint: EndpointConfig,
    #[serde(default)]
    pub budget: BudgetConfig,
    /// USD per million tokens, by model (exact name ignoring case, else longest prefix).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// How traces are rendered into the prompt.
    #[serde(default)]
    pub prompt: PromptConfig,
    /// The rubrics judged, each with its sampling.
    #[serde(default)]
    pub rubric: Vec<RubricConfig>,
}

/// Which protocol an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// `POST <base_url>/chat/completions`.
    Openai,
    /// Amazon Bedrock's Converse API, in the function's region (AWS only).
    Bedrock,
}

/// `[endpoint]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub kind: EndpointKind,
    /// For `openai`: the API's base, the part before `/chat/completions`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The model name (`openai`) or model id / inference profile (`bedrock`).
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A Secrets Manager secret holding the API key (AWS).
    #[serde(default)]
    pub api_key_secret: Option<String>,
    #[serde(default)]
    pub structured: Structured,
    /// Ask for streamed replies (some local servers only stream).
    #[serde(default)]
    pub stream: bool,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Calls in flight at once, per process.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The reply's token limit (and what the budget reserves for it).
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    /// The model's context window, in tokens: a prompt that cannot fit is not sent.
    #[serde(default = "default_context")]
    pub context_tokens: u64,
    #[serde(default)]
    pub temperature: f32,
}

fn default_timeout_ms() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    3
}
fn default_concurrency() -> usize {
    4
}
fn default_max_output() -> u32 {
    1024
}
fn default_context() -> u64 {
    128_000
}

impl EndpointConfig {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            ..RetryPolicy::default()
        }
    }
}

/// `[budget]`: a day's caps (UTC days). With neither, only the sampling bounds spend.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub daily_tokens: Option<u64>,
    pub daily_usd: Option<f64>,
}

impl BudgetConfig {
    pub fn caps(&self) -> Caps {
        Caps {
            tokens: self.daily_tokens,
            micro_usd: self.daily_usd.map(micro_usd),
        }
    }
}

/// Dollars as whole micro-dollars, rounded up (a cap or a cost is never understated).
pub fn micro_usd(usd: f64) -> u64 {
    (usd * 1_000_000.0).ceil().max(0.0) as u64
}

/// `[redaction]`: what is masked before any text leaves for the endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// `false` forbids sending anything: every trace is recorded as not sent.
    #[serde(default = "yes")]
    pub send: bool,
    /// The PII detectors whose matches are masked; all four by default.
    #[serde(default = "all_pii")]
    pub mask: Vec<PiiKind>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            send: true,
            mask: all_pii(),
        }
    }
}

fn yes() -> bool {
    true
}
fn all_pii() -> Vec<PiiKind> {
    PiiKind::ALL.to_vec()
}

/// `[prompt]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// The most characters of trace text in one prompt; beyond it the trace is cut, and
    /// the prompt says where and how much.
    #[serde(default = "default_trace_chars")]
    pub max_trace_chars: usize,
    /// The most characters of each few-shot example's trace.
    #[serde(default = "default_example_chars")]
    pub max_example_chars: usize,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            max_trace_chars: default_trace_chars(),
            max_example_chars: default_example_chars(),
        }
    }
}

fn default_trace_chars() -> usize {
    24_000
}
fn default_example_chars() -> usize {
    3_000
}

/// One `[[rubric]]`: a rubric of the grading store, and which traces it judges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubricConfig {
    pub name: String,
    /// A pinned version; the latest when absent.
    #[serde(default)]
    pub version: Option<u32>,
    /// The share of other traces judged, in [0, 1], picked by trace id.
    #[serde(default)]
    pub sample: f64,
    /// Score record names (a trailing `*` matches a prefix) whose failing verdicts mean
    /// the trace is always judged.
    #[serde(default)]
    pub always_if_flagged: Vec<String>,
    /// A flagged scorer's value within this distance of its threshold also means always.
    #[serde(default = "default_near")]
    pub near_threshold: f64,
    /// Few-shot examples taken from graded items of this rubric.
    #[serde(default = "default_few_shot")]
    pub few_shot: usize,
}

fn default_near() -> f64 {
    0.1
}
fn default_few_shot() -> usize {
    3
}

impl JudgeConfig {
    /// Parses and checks a `judge.toml`; an error names the field and, where the text has
    /// it, the line.
    pub fn parse(text: &str) -> Result<JudgeConfig, ConfigError> {
        let config: JudgeConfig = toml::from_str(text).map_err(|e| {
            let mut error = ConfigError::new(String::new(), e.message().to_owned());
            if let Some(span) = e.span() {
                error = error.at(text, span.start);
            }
            error
        })?;
        config.validate().map_err(|mut e| {
            if e.line.is_none() {
                e.line = agentwire_scoring::config::locate(text, &e.field)
                    .map(|at| agentwire_scoring::config::line_of(text, at));
            }
            e
        })?;
        Ok(config)
    }

    /// The price table, checked.
    pub fn price_table(&self) -> Result<PriceTable, ConfigError> {
        PriceTable::new(&self.prices, "")
    }

    /// Checks every field (what [`JudgeConfig::parse`] does after reading the text).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.endpoint;
        match e.kind {
            EndpointKind::Openai => {
                let url = e.base_url.as_deref().unwrap_or_default();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "endpoint.base_url",
                        "an openai endpoint needs a base_url starting http:// or https://",
                    ));
                }
            }
            EndpointKind::Bedrock => {
                if e.base_url.is_some() {
                    return Err(ConfigError::new(
                        "endpoint.base_url",
                        "a bedrock endpoint takes no base_url (it is the region's)",
                    ));
                }
            }
        }
        if e.model.trim().is_empty() {
            return Err(ConfigError::new("endpoint.model", "a model is required"));
        }
        if e.api_key_env.is_some() && e.api_key_secret.is_some() {
            return Err(ConfigError::new(
                "endpoint.api_key_secret",
                "give api_key_env or api_key_secret, not both",
            ));
        }
        if e.concurrency == 0 || e.concurrency > 256 {
            return Err(ConfigError::new("endpoint.concurrency", "must be 1 to 256"));
        }
        if e.timeout_ms == 0 {
            return Err(ConfigError::new("endpoint.timeout_ms", "must be above 0"));
        }
        if e.max_retries > 10 {
            return Err(ConfigError::new("endpoint.max_retries", "at most 10"));
        }
        if e.max_output_tokens == 0 || u64::from(e.max_output_tokens) >= e.context_tokens {
            return Err(ConfigError::new(
                "endpoint.max_output_tokens",
                "must be above 0 and below context_tokens",
            ));
        }
        if !(0.0..=2.0).contains(&e.temperature) {
            return Err(ConfigError::new("endpoint.temperature", "must be 0 to 2"));
        }
        if let Some(usd) = self.budget.daily_usd {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(ConfigError::new(
                    "budget.daily_usd",
                    format!("{usd} is not a finite number of at least 0"),
                ));
            }
            let table = self.price_table()?;
            if table.price(&e.model).is_none() {
                return Err(ConfigError::new(
                    "budget.daily_usd",
                    format!(
                        "a dollar budget needs a price for model `{}` under [prices.\"…\"]",
                        e.model
                    ),
                ));
            }
        } else {
            self.price_table()?;
        }
        if self.prompt.max_trace_chars < 1000 {
            return Err(ConfigError::new("prompt.max_trace_chars", "at least 1000"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rubric.iter().enumerate() {
            let field = |f: &str| format!("rubric[{i}].{f}");
            if !agentwire_grading::rubric::valid_name(&r.name) {
                return Err(ConfigError::new(
                    field("name"),
                    "a rubric name is 1 to 64 letters, digits, `-` and `_`",
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(ConfigError::new(
                    field("name"),
                    "another [[rubric]] has this name",
                ));
            }
            if !(r.sample.is_finite() && (0.0..=1.0).contains(&r.sample)) {
                return Err(ConfigError::new(field("sample"), "must be 0 to 1"));
            }
            if !(r.near_threshold.is_finite() && (0.0..=1.0).contains(&r.near_threshold)) {
                return Err(ConfigError::new(field("near_threshold"), "must be 0 to 1"));
            }
            if r.few_shot > 10 {
                return Err(ConfigError::new(field("few_shot"), "at most 10"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "[endpoint]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"gpt-4o-mini\"\n\n[budget]\ndaily_usd = 5.0\n\n[prices.\"gpt-4o-mini\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n\n[[rubric]]\nname = \"advice\"\nsample = 0.1\n";

    /// The configuration the README shows is one that works.
    #[test]
    fn the_readme_configuration_parses() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("```toml\n[endpoint]")
            .expect("the README's judge configuration");
        let body = &readme[start + "```toml\n".len()..];
        let config = JudgeConfig::parse(&body[..body.find("```").unwrap()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.rubric[0].always_if_flagged,
            ["groundedness", "rules.*"]
        );
        assert_eq!(config.budget.caps().micro_usd, Some(5_000_000));
    }

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let config = JudgeConfig::parse(README).unwrap();
        assert_eq!(config.endpoint.structured, Structured::JsonSchema);
        assert_eq!(config.budget.caps().micro_usd, Some(5_000_000));
        assert!(config.redaction.send);
        assert_eq!(config.redaction.mask.len(), 4);
        assert_eq!(config.rubric[0].few_shot, 3);
    }

    #[test]
    fn bad_fields_are_named_with_their_line() {
        let e = JudgeConfig::parse(&README.replace("sample = 0.1", "sample = 1.5")).unwrap_err();
        assert_eq!(e.field, "rubric[0].sample");
        assert_eq!(e.line, Some(15), "{e}");
        let e =
            JudgeConfig::parse(&README.replace("http://127.0.0.1:9/v1", "ftp://x")).unwrap_err();
        assert_eq!(e.field, "endpoint.base_url");
        let e =
            JudgeConfig::parse(&README.replace("[prices.\"gpt-4o-mini\"]", "[prices.\"other\"]"))
                .unwrap_err();
        assert!(e.message.contains("needs a price"), "{e}");
        let e = JudgeConfig::parse(&format!("{README}colour = 1\n")).unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
    }
}
