//! The tracing setup of every agentwire binary (`agentwire`, the Lambda functions).
//!
//! `RUST_LOG` filters as usual, except that the targets of libraries that log message
//! bodies at debug or trace ([`PAYLOAD_TARGETS`]) are capped at `info`, whatever
//! `RUST_LOG` says: sessions are users' conversations, and must not reach logs at any
//! level.

use tracing::Level;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Library targets that log payloads below `info`, capped at `info`:
/// - `tungstenite`, `tokio_tungstenite`: every WebSocket frame and message at trace;
/// - `hyper`, `hyper_util`, `h2`: HTTP reads, writes and frames at trace;
/// - `lambda_runtime`, `lambda_http`: the raw Lambda event (request bodies) at trace;
/// - `aws_smithy_*`, `aws_sdk_*`, `aws_sigv4`, `aws_config`: SDK requests and responses
///   (DynamoDB items, S3 objects) at debug and trace;
/// - `reqwest`: the HTTP client of the SDK and the CLI.
pub const PAYLOAD_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_smithy_json",
    "aws_smithy_xml",
    "aws_sdk_dynamodb",
    "aws_sdk_s3",
    "aws_sdk_apigatewaymanagement",
    "aws_sdk_secretsmanager",
    "aws_sigv4",
    "aws_config",
    "reqwest",
];

/// How log lines are written (always to stderr by [`init`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines with a timestamp.
    Text,
    /// One JSON object per line with a timestamp.
    Json,
    /// One JSON object per line, without a timestamp (CloudWatch adds its own).
    JsonWithoutTime,
}

/// The caps of [`PAYLOAD_TARGETS`]: `info` for those targets (and their modules),
/// everything else passes to the `RUST_LOG` filter.
pub fn payload_caps() -> Targets {
    PAYLOAD_TARGETS
        .iter()
        .fold(Targets::new().with_default(Level::TRACE), |caps, target| {
            caps.with_target(*target, Level::INFO)
        })
}

/// The filter for `directives` (`RUST_LOG`: comma-separated `target=level`, bare `level`
/// or bare `target`; `default` when they do not parse or are empty), with
/// [`payload_caps`] applied on top of it. `Targets`, not `EnvFilter`: span and field
/// directives are not taken, and no regex engine is linked into every Lambda bootstrap.
pub fn filter<S>(
    directives: Option<&str>,
    default: &str,
) -> impl tracing_subscriber::layer::Filter<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let env = directives
        .filter(|d| !d.trim().is_empty())
        .and_then(parse)
        .or_else(|| parse(default))
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    env.and(payload_caps())
}

/// `directives` as [`Targets`], or `None` when one names something other than a module
/// path (`Targets` would take any string as a target, and enable it at `trace`).
fn parse(directives: &str) -> Option<Targets> {
    let paths = directives.split(',').all(|directive| {
        let target = directive
            .split_once('=')
            .map_or(directive, |(target, _)| target);
        target
            .trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    });
    paths.then(|| directives.parse().ok()).flatten()
}

/// A subscriber writing `format` lines to `writer`, filtered by [`filter`]. [`init`]
/// installs it globally; tests use it with `tracing::subscriber::with_default`.
pub fn subscriber<W>(
    directives: Option<&str>,
    default: &str,
    format: Format,
    writer: W,
) -> impl Subscriber + Send + Sync + use<W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = match format {
        Format::Text => fmt.boxed(),
        Format::Json => fmt.json().boxed(),
        Format::JsonWithoutTime => fmt.json().without_time().boxed(),
    };
    tracing_subscriber::registry().with(layer.with_filter(filter(directives, default)))
}

/// Installs the process's subscriber: `format` lines on stderr, filtered by `RUST_LOG`
/// (`default` when unset or invalid) with payload targets capped. Records of the `log`
/// crate (tungstenite logs through it) go through the same filter. A second call does
/// nothing.
pub fn init(format: Format, default: &str) {
    let directives = std::env::var("RUST_LOG").ok();
    let _ = subscriber(directives.as_deref(), default, format, std::io::stderr).try_init();
}
