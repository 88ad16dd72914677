//! `latency_cost`: how long the trace took, and what its model calls used and cost.
//!
//! **What it measures.** Up to four records, each a measurement in its unit (so, unlike most
//! scores, lower is better and the value is not in [0, 1]), one number per dashboard chart:
//!
//! - `latency.time_to_first_token_ms`: from the first user message to the first token of
//!   the assistant's reply to it (the view's time to first token); only when the trace has
//!   both;
//! - `latency.total_ms`: from the trace's first span start to its last span end; only when
//!   that is more than zero (imported datasets without times have none);
//! - `usage.tokens`: input plus output tokens over every model call that reported usage;
//!   only when one did. The explanation splits input and output;
//! - `cost.usd`: those tokens priced by the tenant's price table; only when at least one
//!   call's model has a price. A model matches a price exactly (ignoring ASCII case), else
//!   by the longest price name it starts with (`gpt-4o` prices `gpt-4o-2024-08-06`, and
//!   `gpt-4o-mini` wins for `gpt-4o-mini-2024-07-18`). Calls of an unknown model are not
//!   costed, and the explanation (of `cost.usd`, else of `usage.tokens`) names them.
//!
//! Labels, when the threshold is set: `slow` or `ok` for the latencies (`ttft_ms_max`,
//! `total_ms_max`), `over_budget` or `ok` for tokens and cost (`tokens_max`,
//! `cost_usd_max`); above the threshold is `slow` / `over_budget`. No label without one.
//! There is no built-in price table: prices change, and a stale one would be wrong silently.
//!
//! ```toml
//! [latency_cost]
//! ttft_ms_max = 2000          # optional
//! total_ms_max = 30000        # optional
//! tokens_max = 50000          # optional
//! cost_usd_max = 0.05         # optional
//!
//! [latency_cost.prices."gpt-4o"]
//! input_per_million = 2.5     # USD per million input tokens
//! output_per_million = 10.0   # USD per million output tokens
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::scorers::{Outcome, Scorer};
use crate::view::TraceView;

/// The `[latency_cost]` section. Every field is optional; no thresholds and no prices by
/// default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCostOptions {
    /// Time to first token above which the label is `slow`, ms.
    pub ttft_ms_max: Option<f64>,
    /// Total time above which the label is `slow`, ms.
    pub total_ms_max: Option<f64>,
    /// Tokens above which the label is `over_budget`.
    pub tokens_max: Option<u64>,
    /// Cost above which the label is `over_budget`, USD.
    pub cost_usd_max: Option<f64>,
    /// USD per million tokens, by model name (or model name prefix).
    pub prices: BTreeMap<String, Price>,
}

/// One model's price.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input (prompt) tokens.
    pub input_per_million: f64,
    /// USD per million output (completion) tokens.
    pub output_per_million: f64,
}

/// A price table checked and ready for lookups: by exact model name (ignoring ASCII case),
/// else by the longest name the model starts with. The judge's budget prices its calls
/// with the same rules.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// Lowercased names, longest first (the prefix match takes the first).
    prices: Vec<(String, Price)>,
}

impl PriceTable {
    /// Checks `prices` (a name each, finite non-negative prices, no two names equal
    /// ignoring case); errors name `<section>.prices."<model>"…` (`prices."<model>"…` when
    /// `section` is empty).
    pub fn new(prices: &BTreeMap<String, Price>, section: &str) -> Result<PriceTable, ConfigError> {
        let path = |field: &str| {
            if section.is_empty() {
                field.to_owned()
            } else {
                format!("{section}.{field}")
            }
        };
        let check = |field: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    path(field),
                    format!("{value} is not a finite number of at least 0"),
                ))
            }
        };
        let mut table: Vec<(String, Price)> = Vec::with_capacity(prices.len());
        for (name, price) in prices {
            let field = format!("prices.\"{name}\"");
            if name.trim().is_empty() {
                return Err(ConfigError::new(path(&field), "a price needs a model name"));
            }
            check(
                &format!("{field}.input_per_million"),
                price.input_per_million,
            )?;
            check(
                &format!("{field}.output_per_million"),
                price.output_per_million,
            )?;
            let key = name.to_ascii_lowercase();
            if table.iter().any(|(k, _)| *k == key) {
                return Err(ConfigError::new(
                    path(&field),
                    "another price has the same model name (ignoring case)",
                ));
            }
            table.push((key, *price));
        }
        table.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(PriceTable { prices: table })
    }

    /// The price of `model`: exact, else the longest prefix.
    pub fn price(&self, model: &str) -> Option<Price> {
        let model = model.to_ascii_lowercase();
        self.prices
            .iter()
            .find(|(name, _)| *name == model)
            .or_else(|| {
                self.prices
                    .iter()
                    .find(|(name, _)| model.starts_with(name.as_str()))
            })
            .map(|(_, price)| *price)
    }
}

/// The `latency_cost` scorer.
#[derive(Debug, Clone)]
pub struct LatencyCost {
    options: LatencyCostOptions,
    prices: PriceTable,
}

impl LatencyCost {
    /// Checks `options`: thresholds and prices finite and not negative, price names not
    /// empty and distinct ignoring case. An error names the field, e.g.
    /// `latency_cost.prices."gpt-4o".input_per_million`.
    pub fn new(options: &LatencyCostOptions) -> Result<LatencyCost, ConfigError> {
        let check = |field: &str, value: Option<f64>| match value {
            Some(v) if !(v.is_finite() && v >= 0.0) => Err(ConfigError::new(
                format!("latency_cost.{field}"),
                format!("{v} is not a finite number of at least 0"),
            )),
            _ => Ok(()),
        };
        check("ttft_ms_max", options.ttft_ms_max)?;
        check("total_ms_max", options.total_ms_max)?;
        check("cost_usd_max", options.cost_usd_max)?;
        let prices = PriceTable::new(&options.prices, "latency_cost")?;
        Ok(LatencyCost {
            options: options.clone(),
            prices,
        })
    }
}

fn over(value: f64, max: Option<f64>, bad: &str) -> Option<String> {
    max.map(|max| if value > max { bad } else { "ok" }.to_owned())
}

fn limit(max: Option<f64>, unit: &str) -> String {
    max.map(|m| format!(" (limit {}{unit})", number(m)))
        .unwrap_or_default()
}

/// A number without needless decimals: `1234`, `12.5`, `0.00042`.
fn number(value: f64) -> String {
    let text = if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 0.01 {
        format!("{value:.2}")
    } else {
        format!("{value:.6}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn calls(n: usize) -> String {
    format!("{n} model {}", if n == 1 { "call" } else { "calls" })
}

impl Scorer for LatencyCost {
    fn name(&self) -> &'static str {
        "latency_cost"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn score(&self, view: &TraceView) -> Vec<Outcome> {
        let o = &self.options;
        let mut outcomes = Vec::new();
        if let Some(ttft) = view.time_to_first_token_ms() {
            let mut outcome =
                Outcome::new("latency.time_to_first_token_ms", ttft).explanation(format!(
                    "first token {} ms after the user's message{}",
                    number(ttft),
                    limit(o.ttft_ms_max, " ms")
                ));
            outcome.label = over(ttft, o.ttft_ms_max, "slow");
            outcomes.push(outcome);
        }
        let total = view.total_ms();
        if total > 0.0 {
            let mut outcome = Outcome::new("latency.total_ms", total).explanation(format!(
                "the trace took {} ms{}",
                number(total),
                limit(o.total_ms_max, " ms")
            ));
            outcome.label = over(total, o.total_ms_max, "slow");
            outcomes.push(outcome);
        }
        if view.usage.is_empty() {
            return outcomes;
        }

        let (mut input, mut output) = (0u64, 0u64);
        let mut cost = 0.0;
        let mut priced = 0usize;
        // Unpriced models, with how many calls each.
        let mut unpriced: Vec<(String, usize)> = Vec::new();
        for usage in &view.usage {
            let (i, out) = (
                usage.input_tokens.unwrap_or(0),
                usage.output_tokens.unwrap_or(0),
            );
            input = input.saturating_add(i);
            output = output.saturating_add(out);
            match usage.model.as_deref().and_then(|m| self.prices.price(m)) {
                Some(price) => {
                    priced += 1;
                    cost += i as f64 * price.input_per_million / 1e6
                        + out as f64 * price.output_per_million / 1e6;
                }
                None => {
                    let model = usage
                        .model
                        .clone()
                        .unwrap_or_else(|| "(unnamed)".to_owned());
                    match unpriced.iter_mut().find(|(m, _)| *m == model) {
                        Some((_, n)) => *n += 1,
                        None => unpriced.push((model, 1)),
                    }
                }
            }
        }
        let unpriced_note = if unpriced.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = unpriced
                .iter()
                .map(|(m, n)| format!("`{m}` ({})", calls(*n)))
                .collect();
            format!("no price for model {}", list.join(", "))
        };

        let tokens = input.saturating_add(output);
        let mut explanation = format!(
            "{} input + {} output tokens over {}{}",
            input,
            output,
            calls(view.usage.len()),
            o.tokens_max
                .map(|m| format!(" (limit {m})"))
                .unwrap_or_default()
        );
        if priced == 0 {
            explanation.push_str(&format!("; no cost: {unpriced_note}"));
        }
        let mut outcome = Outcome::new("usage.tokens", tokens as f64).explanation(explanation);
        outcome.label = o
            .tokens_max
            .map(|max| if tokens > max { "over_budget" } else { "ok" }.to_owned());
        outcomes.push(outcome);

        if priced > 0 {
            let mut explanation = format!(
                "${} for {}{}",
                number(cost),
                calls(priced),
                limit(o.cost_usd_max, " USD")
            );
            if !unpriced.is_empty() {
                explanation.push_str(&format!("; not counted: {unpriced_note}"));
            }
            let mut outcome = Outcome::new("cost.usd", cost).explanation(explanation);
            outcome.label = over(cost, o.cost_usd_max, "over_budget");
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::rules::tests::{message, view};
    use crate::view::Usage;

    fn usage(model: Option<&str>, input: u64, output: u64) -> Usage {
        Usage {
            span_id: "s".into(),
            model: model.map(str::to_owned),
            input_tokens: Some(input),
            output_tokens: Some(output),
        }
    }

    fn parse(text: &str) -> Result<LatencyCost, ConfigError> {
        LatencyCost::new(&toml::from_str::<LatencyCostOptions>(text).expect("toml"))
    }

    fn named<'a>(outcomes: &'a [Outcome], name: &str) -> Option<&'a Outcome> {
        outcomes.iter().find(|o| o.name == name)
    }

    const PRICES: &str = "[prices.\"gpt-4o\"]\ninput_per_million = 2.5\noutput_per_million = 10.0\n\
                          [prices.\"gpt-4o-mini\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n";

    #[test]
    fn latencies_are_measured_and_labelled_against_their_thresholds() {
        let mut trace = view(vec![
            message("u", "user", "hi", 1_000, 1_010),
            message("a", "assistant", "hello", 2_510, 4_000),
        ]);
        trace.start_ns = 1_000_000_000;
        trace.end_ns = 4_000_000_000;
        let scorer = parse("ttft_ms_max = 1000\ntotal_ms_max = 5000\n").unwrap();
        let outcomes = scorer.score(&trace);
        assert_eq!(
            outcomes.len(),
            2,
            "no usage, no token or cost record: {outcomes:?}"
        );
        let ttft = named(&outcomes, "latency.time_to_first_token_ms").unwrap();
        assert_eq!((ttft.value, ttft.label.as_deref()), (1_500.0, Some("slow")));
        assert_eq!(
            ttft.explanation.as_deref(),
            Some("first token 1500 ms after the user's message (limit 1000 ms)")
        );
        let total = named(&outcomes, "latency.total_ms").unwrap();
        assert_eq!((total.value, total.label.as_deref()), (3_000.0, Some("ok")));
        let unlabelled = parse("").unwrap().score(&trace);
        assert!(unlabelled.iter().all(|o| o.label.is_none()));
        // No user message, no times: nothing to measure.
        assert!(
            parse("")
                .unwrap()
                .score(&view(vec![message("a", "assistant", "x", 0, 0)]))
                .is_empty()
        );
    }

    #[test]
    fn cost_prices_each_call_by_exact_then_longest_prefix_match() {
        let mut trace = view(vec![message("a", "assistant", "x", 0, 0)]);
        trace.usage = vec![
            usage(Some("gpt-4o"), 1_000_000, 100_000),
            usage(Some("GPT-4o-mini-2024-07-18"), 1_000_000, 1_000_000),
            usage(Some("gpt-4o-2024-08-06"), 0, 1_000_000),
        ];
        let outcomes = parse(&format!(
            "cost_usd_max = 10\ntokens_max = 4000000\n{PRICES}"
        ))
        .unwrap()
        .score(&trace);
        let tokens = named(&outcomes, "usage.tokens").unwrap();
        assert_eq!(
            (tokens.value, tokens.label.as_deref()),
            (4_100_000.0, Some("over_budget"))
        );
        assert_eq!(
            tokens.explanation.as_deref(),
            Some("2000000 input + 2100000 output tokens over 3 model calls (limit 4000000)")
        );
        let cost = named(&outcomes, "cost.usd").unwrap();
        // 2.5 + 1.0, 0.15 + 0.6, 10.0.
        assert!((cost.value - 14.25).abs() < 1e-9, "{}", cost.value);
        assert_eq!(cost.label.as_deref(), Some("over_budget"));
        assert_eq!(
            cost.explanation.as_deref(),
            Some("$14.25 for 3 model calls (limit 10 USD)")
        );
    }

    #[test]
    fn unknown_models_are_not_costed_and_say_so() {
        let mut trace = view(vec![message("a", "assistant", "x", 0, 0)]);
        trace.usage = vec![usage(Some("claude-x"), 10, 20), usage(None, 1, 2)];
        let outcomes = parse(PRICES).unwrap().score(&trace);
        assert!(named(&outcomes, "cost.usd").is_none());
        assert_eq!(
            named(&outcomes, "usage.tokens")
                .unwrap()
                .explanation
                .as_deref(),
            Some(
                "11 input + 22 output tokens over 2 model calls; no cost: no price for model `claude-x` (1 model call), `(unnamed)` (1 model call)"
            )
        );
        trace.usage.push(usage(Some("gpt-4o"), 1_000, 0));
        let outcomes = parse(PRICES).unwrap().score(&trace);
        let cost = named(&outcomes, "cost.usd").unwrap();
        assert!((cost.value - 0.0025).abs() < 1e-12);
        assert_eq!(
            cost.explanation.as_deref(),
            Some(
                "$0.0025 for 1 model call; not counted: no price for model `claude-x` (1 model call), `(unnamed)` (1 model call)"
            )
        );
        assert!(cost.label.is_none());
    }

    #[test]
    fn bad_options_are_refused_naming_the_field() {
        let field = |text: &str| parse(text).unwrap_err().field;
        assert_eq!(field("ttft_ms_max = -1.0\n"), "latency_cost.ttft_ms_max");
        assert_eq!(field("cost_usd_max = nan\n"), "latency_cost.cost_usd_max");
        assert_eq!(
            field("[prices.\"gpt-4o\"]\ninput_per_million = -2.5\noutput_per_million = 10.0\n"),
            "latency_cost.prices.\"gpt-4o\".input_per_million"
        );
        assert_eq!(
            field(&format!(
                "{PRICES}[prices.\"GPT-4O\"]\ninput_per_million = 1\noutput_per_million = 1\n"
            )),
            "latency_cost.prices.\"gpt-4o\""
        );
        assert_eq!(
            field("[prices.\" \"]\ninput_per_million = 1\noutput_per_million = 1\n"),
            "latency_cost.prices.\" \""
        );
        // A price missing a field, or with an unknown one, does not parse.
        for text in [
            "[prices.\"m\"]\ninput_per_million = 1\n",
            "[prices.\"m\"]\ninput_per_million = 1\noutput_per_million = 1\ncached = 1\n",
            "ttft_max = 1\n",
        ] {
            assert!(
                toml::from_str::<LatencyCostOptions>(text).is_err(),
                "{text}"
            );
        }
    }
}
