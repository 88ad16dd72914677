//! OTLP JSON files (`agentwire import otlp`): one `ExportTraceServiceRequest` per file, or
//! JSON lines of them, as the OpenTelemetry Collector's file exporter writes. Spans are
//! mapped and grouped by session exactly as `POST /v1/traces` does
//! ([`crate::otlp::map_request`], [`crate::otlp::merge_session`]): one trace per session,
//! however many lines its spans came on.

use std::collections::HashMap;

use agentwire_trace::Span;

use super::{Import, ImportError, RowError};
use crate::otlp;

/// The traces of `json`, the contents of the file named `file`, in `tenant`.
///
/// The whole file is tried as one request first; when it is not one, each non-blank line is
/// a request of its own. A line that is not a request, and a span rejected by validation,
/// is reported in [`Import::skipped`] (`line N`, 1-based) and skipped. A file with no
/// request at all (every line bad, or empty) is an [`ImportError`].
pub fn read(json: &[u8], file: &str, tenant: &str) -> Result<Import, ImportError> {
    let mut skipped = Vec::new();
    let mut requests = Vec::new();
    match otlp::decode_json(json) {
        Ok(request) => requests.push((None, request)),
        Err(_) => {
            for (index, line) in json.split(|&b| b == b'\n').enumerate() {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match otlp::decode_json(line) {
                    Ok(request) => requests.push((Some(index + 1), request)),
                    Err(e) => skipped.push(RowError {
                        file: file.to_owned(),
                        location: format!("line {}", index + 1),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
    if requests.is_empty() {
        let message = match skipped.first() {
            Some(first) => format!(
                "no OTLP/JSON ExportTraceServiceRequest in the file (first error: {}: {})",
                first.location, first.message
            ),
            None => "the file is empty: expected OTLP/JSON ExportTraceServiceRequests".to_owned(),
        };
        return Err(ImportError {
            file: file.to_owned(),
            message,
        });
    }
    let mut order: Vec<String> = Vec::new();
    let mut sessions: HashMap<String, Vec<Span>> = HashMap::new();
    for (line, request) in requests {
        let ingested = otlp::map_request(&request);
        for error in &ingested.errors {
            skipped.push(RowError {
                file: file.to_owned(),
                location: match line {
                    Some(line) => format!("line {line}"),
                    None => "request".to_owned(),
                },
                message: error.clone(),
            });
        }
        for session in ingested.sessions {
            let spans = sessions.entry(session.session.clone()).or_insert_with(|| {
                order.push(session.session.clone());
                Vec::new()
            });
            spans.extend(session.spans);
        }
    }
    let traces = order
        .into_iter()
        .map(|session| {
            let spans = sessions.remove(&session).unwrap_or_default();
            otlp::merge_session(tenant, &session, Vec::new(), spans)
        })
        .collect();
    Ok(Import { traces, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(trace: &str, span: &str, session: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{span}","name":"x","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{{"key":"session.id","value":{{"stringValue":"{session}"}}}}]}}]}}]}}]}}"#
        )
    }

    #[test]
    fn json_lines_group_by_session_and_bad_lines_are_reported() {
        let t1 = "0102030405060708090a0b0c0d0e0f10";
        let text = [
            request(t1, "0102030405060708", "s-1"),
            "not json".to_owned(),
            String::new(),
            request(t1, "0102030405060709", "s-1"),
            request(
                "00000000000000000000000000000000",
                "0102030405060708",
                "s-2",
            ),
        ]
        .join("\n");
        let import = read(text.as_bytes(), "spans.jsonl", "acme").unwrap();
        assert_eq!(import.traces.len(), 1, "one session");
        assert_eq!(import.traces[0].len(), 3, "root and both spans");
        assert_eq!(import.traces[0][0].attributes["agentwire.session"], "s-1");
        assert_eq!(import.skipped.len(), 2);
        assert_eq!(import.skipped[0].location, "line 2");
        assert_eq!(import.skipped[1].location, "line 5");
        assert!(
            import.skipped[1]
                .to_string()
                .starts_with("spans.jsonl: line 5: ")
        );
    }

    #[test]
    fn a_whole_file_request_and_an_unreadable_file() {
        let pretty = request("0102030405060708090a0b0c0d0e0f10", "0102030405060708", "s")
            .replace(",", ",\n");
        let import = read(pretty.as_bytes(), "one.json", "acme").unwrap();
        assert_eq!(import.traces.len(), 1);
        assert!(import.skipped.is_empty());
        let e = read(b"nope\n", "bad.json", "acme").unwrap_err();
        assert!(e.to_string().starts_with("bad.json: no OTLP/JSON"), "{e}");
    }
}
