//! Payload-logging library targets stay at `info` whatever `RUST_LOG` says, in every format.

use std::io::Write;
use std::sync::{Arc, Mutex};

use agentwire_logging::{Format, subscriber};
use tracing_subscriber::fmt::MakeWriter;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

/// Emits, under `directives`, what tungstenite, hyper, lambda_runtime and the SDK log at
/// trace and debug, plus our own events; returns the output.
fn logged(directives: &str, format: Format) -> String {
    let out = Captured::default();
    let subscriber = subscriber(Some(directives), "info", format, out.clone());
    tracing::subscriber::with_default(subscriber, || {
        tracing::trace!(target: "tungstenite::protocol", "Received message SECRET-ws-trace");
        tracing::debug!(target: "tungstenite::protocol", "Received close frame SECRET-ws-debug");
        tracing::trace!(target: "tokio_tungstenite", "SECRET-tokio-ws");
        tracing::trace!(target: "hyper::proto::h1::io", "SECRET-hyper");
        tracing::trace!(target: "lambda_runtime::layers::api_response", body = "SECRET-lambda");
        tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "SECRET-sdk");
        tracing::info!(target: "tungstenite::protocol", "tungstenite-info-kept");
        tracing::debug!(target: "agentwire_realtime", "our-debug-kept");
    });
    let bytes = out.0.lock().expect("lock").clone();
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn payload_targets_are_capped_at_info_whatever_rust_log_says() {
    for directives in [
        "trace",
        "debug",
        "tungstenite=trace,trace",
        "tungstenite::protocol=trace,hyper=trace,lambda_runtime=trace,aws_smithy_runtime=trace,trace",
    ] {
        for format in [Format::Text, Format::Json, Format::JsonWithoutTime] {
            let out = logged(directives, format);
            assert!(
                !out.contains("SECRET"),
                "RUST_LOG={directives} ({format:?}) logged a payload:\n{out}"
            );
            assert!(out.contains("tungstenite-info-kept"), "{directives}: {out}");
            assert!(out.contains("our-debug-kept"), "{directives}: {out}");
        }
    }
}

#[test]
fn rust_log_still_filters_everything_else() {
    let out = logged("warn", Format::Text);
    assert!(!out.contains("our-debug-kept"), "{out}");
    assert!(!out.contains("tungstenite-info-kept"), "{out}");
    // Unparsable directives fall back to the default (info), not to everything.
    let out = logged("not a [valid filter", Format::Text);
    assert!(!out.contains("our-debug-kept"), "{out}");
    assert!(out.contains("tungstenite-info-kept"), "{out}");
}

#[test]
fn rust_log_takes_a_level_per_target() {
    let out = logged("agentwire_realtime=debug,warn", Format::Text);
    assert!(out.contains("our-debug-kept"), "{out}");
    assert!(!out.contains("tungstenite-info-kept"), "{out}");
}

#[test]
fn a_span_directive_falls_back_to_the_default() {
    // Only `target=level` directives are taken: a span filter is not read as a target
    // name (which would enable that "target" at its level and turn off everything else).
    let out = logged("agentwire_realtime[conn]=debug", Format::Text);
    assert!(!out.contains("our-debug-kept"), "{out}");
    assert!(out.contains("tungstenite-info-kept"), "{out}");
}
