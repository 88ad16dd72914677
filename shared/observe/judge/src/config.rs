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
//! prompt = "strict"                     # one of its variants; the built-in prompt without
//!
//! [[rubric.variant]]                    # what `agentwire calibrate --judge` compares
//! name = "strict"
//! instructions = "A dosage without a retrieved source fails `sound`."
//! few_shot = 5
//! ```

use std::collections::BTreeMap;

use agentwire_scoring::ConfigError;
use agentwire_scoring::scorers::latency_cost::{Price, PriceTable};
use agentwire_scoring::scorers::rules::PiiKind;
use serde::Deserialize;
use sha2::Digest;

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
    /// The variant of [`RubricConfig::variant`] the judge uses; the built-in prompt
    /// ([`DEFAULT_PROMPT`]) when absent.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Prompt variants to choose between (`agentwire calibrate --judge` compares them on
    /// items the experts graded and sets `prompt` to the one that agrees best).
    #[serde(default)]
    pub variant: Vec<VariantConfig>,
}

/// The name of the built-in prompt, which has no instructions of its own.
pub const DEFAULT_PROMPT: &str = "default";
/// The most characters of a variant's instructions.
const MAX_INSTRUCTIONS: usize = 8_000;

/// One `[[rubric.variant]]`: the built-in prompt with the tenant's own instructions for
/// the rubric, and its own number of few-shot examples.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Added to the judge's instructions, after the built-in ones.
    #[serde(default)]
    pub instructions: String,
    /// Few-shot examples; the rubric's `few_shot` when absent.
    #[serde(default)]
    pub few_shot: Option<usize>,
}

/// The prompt a rubric is judged with: a variant resolved against its rubric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptChoice {
    /// The variant's name, [`DEFAULT_PROMPT`] for the built-in prompt.
    pub name: String,
    pub instructions: String,
    pub few_shot: usize,
    /// What records carry as the prompt version (and the cache keys on): the template's
    /// [`PROMPT_VERSION`](crate::prompt::PROMPT_VERSION) alone for the built-in prompt,
    /// else with the variant's name and a digest of its instructions and few-shot count, so
    /// editing a variant re-judges.
    pub version: String,
}

impl RubricConfig {
    /// The variants to choose between: the built-in prompt first, then each variant.
    pub fn choices(&self) -> Vec<PromptChoice> {
        let mut out = vec![self.choice_of(None)];
        out.extend(self.variant.iter().map(|v| self.choice_of(Some(v))));
        out
    }

    /// The prompt named `name` ([`DEFAULT_PROMPT`] or a variant's name).
    pub fn choice(&self, name: &str) -> Option<PromptChoice> {
        if name == DEFAULT_PROMPT {
            return Some(self.choice_of(None));
        }
        let variant = self.variant.iter().find(|v| v.name == name)?;
        Some(self.choice_of(Some(variant)))
    }

    /// The prompt in use: `prompt`'s variant, else the built-in one. A validated
    /// configuration names only variants it has.
    pub fn current(&self) -> PromptChoice {
        self.prompt
            .as_deref()
            .and_then(|name| self.choice(name))
            .unwrap_or_else(|| self.choice_of(None))
    }

    fn choice_of(&self, variant: Option<&VariantConfig>) -> PromptChoice {
        let template = crate::prompt::PROMPT_VERSION;
        match variant {
            None => PromptChoice {
                name: DEFAULT_PROMPT.to_owned(),
                instructions: String::new(),
                few_shot: self.few_shot,
                version: template.to_owned(),
            },
            Some(v) => {
                let few_shot = v.few_shot.unwrap_or(self.few_shot);
                let digest = sha2::Sha256::digest(format!("{few_shot}\n{}", v.instructions));
                let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
                PromptChoice {
                    name: v.name.clone(),
                    instructions: v.instructions.clone(),
                    few_shot,
                    version: format!("{template}+{}.{short}", v.name),
                }
            }
        }
    }
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
            if r.few_shot > crate::prompt::MAX_EXAMPLES {
                return Err(ConfigError::new(field("few_shot"), "at most 10"));
            }
            let mut variants = std::collections::HashSet::new();
            for (j, v) in r.variant.iter().enumerate() {
                let field = |f: &str| format!("rubric[{i}].variant[{j}].{f}");
                if !agentwire_grading::rubric::valid_name(&v.name) || v.name == DEFAULT_PROMPT {
                    return Err(ConfigError::new(
                        field("name"),
                        format!(
                            "a variant name is 1 to 64 letters, digits, `-` and `_`, and not `{DEFAULT_PROMPT}` (the built-in prompt's)"
                        ),
                    ));
                }
                if !variants.insert(v.name.as_str()) {
                    return Err(ConfigError::new(
                        field("name"),
                        "another variant of this rubric has this name",
                    ));
                }
                if v.instructions.chars().count() > MAX_INSTRUCTIONS {
                    return Err(ConfigError::new(
                        field("instructions"),
                        format!("at most {MAX_INSTRUCTIONS} characters"),
                    ));
                }
                if v.few_shot.is_some_and(|n| n > crate::prompt::MAX_EXAMPLES) {
                    return Err(ConfigError::new(field("few_shot"), "at most 10"));
                }
            }
            if let Some(name) = &r.prompt
                && r.choice(name).is_none()
            {
                return Err(ConfigError::new(
                    field("prompt"),
                    format!("no [[rubric.variant]] of this rubric is named `{name}`"),
                ));
            }
        }
        Ok(())
    }

    /// `text` (a valid `judge.toml`) with rubric `rubric`'s `prompt` set to `name` (removed
    /// for [`DEFAULT_PROMPT`]), everything else as it was, comments included.
    pub fn with_prompt(text: &str, rubric: &str, name: &str) -> Result<String, ConfigError> {
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::new("", e.message().to_owned()))?;
        let entry = doc
            .get_mut("rubric")
            .and_then(|r| r.as_array_of_tables_mut())
            .and_then(|rubrics| {
                rubrics
                    .iter_mut()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(rubric))
            })
            .ok_or_else(|| {
                ConfigError::new("rubric", format!("no [[rubric]] is named `{rubric}`"))
            })?;
        if name == DEFAULT_PROMPT {
            entry.remove("prompt");
        } else {
            entry.insert("prompt", toml_edit::value(name));
        }
        let out = doc.to_string();
        JudgeConfig::parse(&out)?;
        Ok(out)
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

    const VARIANTS: &str = "\n[[rubric.variant]]\nname = \"strict\"\ninstructions = \"Fail a refund promise without the receipt rule.\"\nfew_shot = 5\n";

    #[test]
    fn variants_resolve_to_prompt_versions_that_change_with_their_text() {
        let config = JudgeConfig::parse(&format!("{README}{VARIANTS}")).unwrap();
        let rubric = &config.rubric[0];
        let current = rubric.current();
        assert_eq!(
            (current.name.as_str(), current.version.as_str()),
            ("default", "judge-1")
        );
        assert_eq!(current.few_shot, 3);
        let strict = rubric.choice("strict").unwrap();
        assert_eq!(strict.few_shot, 5);
        assert!(
            strict.version.starts_with("judge-1+strict."),
            "{}",
            strict.version
        );
        assert_eq!(strict.version.len(), "judge-1+strict.".len() + 8);
        let edited = JudgeConfig::parse(&format!(
            "{README}{}",
            VARIANTS.replace("receipt rule", "receipt rule, always")
        ))
        .unwrap();
        assert_ne!(
            edited.rubric[0].choice("strict").unwrap().version,
            strict.version
        );
        let names: Vec<String> = rubric.choices().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["default", "strict"]);
        let chosen =
            JudgeConfig::parse(&format!("{README}prompt = \"strict\"\n{VARIANTS}")).unwrap();
        assert_eq!(chosen.rubric[0].current(), strict);
    }

    #[test]
    fn bad_variants_are_named() {
        let e = JudgeConfig::parse(&format!("{README}prompt = \"loud\"\n{VARIANTS}")).unwrap_err();
        assert_eq!(e.field, "rubric[0].prompt");
        assert!(e.message.contains("`loud`"), "{e}");
        let e = JudgeConfig::parse(&format!("{README}{VARIANTS}{VARIANTS}")).unwrap_err();
        assert_eq!(e.field, "rubric[0].variant[1].name");
        let e = JudgeConfig::parse(&format!(
            "{README}{}",
            VARIANTS.replace("strict", "default")
        ))
        .unwrap_err();
        assert!(e.message.contains("built-in"), "{e}");
        let e = JudgeConfig::parse(&format!("{README}{}", VARIANTS.replace("= 5", "= 11")))
            .unwrap_err();
        assert_eq!(e.field, "rubric[0].variant[0].few_shot");
    }

    #[test]
    fn setting_the_prompt_keeps_the_rest_of_the_file() {
        let text = format!("# the team's judge\n{README}# our variant\n{VARIANTS}");
        let set = JudgeConfig::with_prompt(&text, "advice", "strict").unwrap();
        assert!(set.starts_with("# the team's judge\n"), "{set}");
        assert!(set.contains("# our variant"), "{set}");
        let config = JudgeConfig::parse(&set).unwrap();
        assert_eq!(config.rubric[0].prompt.as_deref(), Some("strict"));
        assert_eq!(config.rubric[0].sample, 0.1);
        // And back: the built-in prompt is no setting at all.
        let back = JudgeConfig::with_prompt(&set, "advice", "default").unwrap();
        assert!(!back.contains("prompt = "), "{back}");
        let e = JudgeConfig::with_prompt(&text, "other", "strict").unwrap_err();
        assert!(e.message.contains("`other`"), "{e}");
        let e = JudgeConfig::with_prompt(&text, "advice", "loud").unwrap_err();
        assert_eq!(e.field, "rubric[0].prompt");
    }
}
