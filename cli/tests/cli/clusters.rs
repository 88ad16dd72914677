//! `agentwire cluster` and `agentwire report` on files: two nights of archived traces, the
//! second clustered against the first's output (`--previous`), then the night's report
//! page written from the directory; and bad input refused by name.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use agentwire_trace::{SessionEvent, TraceContext, build_trace, encode_jsonl_gz, object_key};
use serde_json::{Value, json};

use super::agentwire;

/// 2025-11-01T10:00:00Z.
const NIGHT_1: i64 = 1_761_991_200_000;
const DAY: i64 = 86_400_000;

const KINDS: &[(&str, &str)] = &[
    ("refund", "I want a refund for order {n} it arrived broken"),
    ("flight", "change my flight {n} to next Tuesday morning"),
    ("invoice", "send me the VAT invoice for payment {n}"),
    ("cancel", "cancel my subscription {n} and stop charging me"),
];

fn write_trace(root: &Path, session: &str, text: &str, at_ms: i64) {
    let events = [
        json!({"type": "message.start", "id": "u1", "role": "user", "ts": at_ms}),
        json!({"type": "message.delta", "id": "u1", "data": {"text": text}}),
        json!({"type": "message.end", "id": "u1", "role": "user"}),
        json!({"type": "message.start", "id": "m1", "agent": "bot", "role": "assistant"}),
        json!({"type": "message.delta", "id": "m1", "agent": "bot", "data": {"text": "Done."}}),
        json!({"type": "message.end", "id": "m1", "agent": "bot"}),
    ];
    let json: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    let offsets: Vec<String> = (0..events.len()).map(|i| format!("{i:016}")).collect();
    let stored: Vec<SessionEvent> = json
        .iter()
        .zip(&offsets)
        .map(|(json, offset)| SessionEvent {
            offset,
            json,
            at_ms: Some(at_ms),
        })
        .collect();
    let ctx = TraceContext {
        tenant: "acme",
        session,
        archived_at_ms: at_ms,
    };
    let path = root.join(object_key("acme", session, at_ms));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encode_jsonl_gz(&build_trace(&ctx, &stored)).unwrap()).unwrap();
}

fn night(root: &Path, at_ms: i64, sessions: &[(String, String)]) {
    for (session, text) in sessions {
        write_trace(root, session, text, at_ms);
    }
}

fn requests(kind: &str, template: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let text = template.replace("{n}", &(1000 + i * 37).to_string());
            let text = if i % 2 == 0 {
                text
            } else {
                format!("{text} thanks")
            };
            (format!("{kind}-{i}"), text)
        })
        .collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn cluster(traces: &Path, out: &Path, previous: Option<&Path>) -> std::process::Output {
    let mut command = agentwire();
    command
        .arg("cluster")
        .arg("--traces")
        .arg(traces)
        .arg("--out")
        .arg(out);
    if let Some(p) = previous {
        command.arg("--previous").arg(p);
    }
    command.output().expect("run agentwire cluster")
}

#[test]
fn a_second_night_keeps_the_ids_of_the_first_and_the_report_shows_its_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let first: Vec<(String, String)> = KINDS.iter().flat_map(|(k, t)| requests(k, t, 20)).collect();
    night(&one, NIGHT_1, &first);
    let out1 = dir.path().join("night-1.jsonl");
    let run = cluster(&one, &out1, None);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let members1 = lines(&out1);
    assert_eq!(members1.len(), first.len());
    for m in &members1 {
        for field in ["session", "cluster", "label", "new"] {
            assert!(m.get(field).is_some(), "{field} missing in {m}");
        }
    }
    let clusters1 = lines(&dir.path().join("night-1.clusters.jsonl"));
    let ids1: HashSet<&str> = clusters1
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids1.len() >= KINDS.len(), "{clusters1:?}");

    // Night 2: the first night's sessions, a tenth of them replaced by a new kind.
    let mut second: Vec<(String, String)> = first
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, s)| s.clone())
        .collect();
    let new_kind = requests(
        "locked",
        "password reset for account {n} never arrives",
        first.len() / 10,
    );
    second.extend(new_kind.iter().cloned());
    night(&two, NIGHT_1 + DAY, &second);
    let out2 = dir.path().join("night-2.jsonl");
    let run = cluster(&two, &out2, Some(&out1));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let members2 = lines(&out2);
    let ids2: HashSet<&str> = members2
        .iter()
        .filter_map(|m| m["cluster"].as_str())
        .collect();
    let kept = ids1.intersection(&ids2).count() as f64 / ids1.len() as f64;
    assert!(kept >= 0.9, "kept {kept}");
    let mut of_new: BTreeMap<&str, usize> = BTreeMap::new();
    for m in members2
        .iter()
        .filter(|m| m["session"].as_str().unwrap().starts_with("locked"))
    {
        assert_eq!(m["new"], true, "{m}");
        *of_new.entry(m["cluster"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(
        of_new.len(),
        1,
        "the new kind is one new cluster: {of_new:?}"
    );
    assert!(!ids1.contains(of_new.keys().next().unwrap()));

    // The report of night 2, from the directory the traces are in (after the job's layout).
    let report = agentwire()
        .args([
            "job",
            "run",
            "clusters",
            "--day",
            "2025-11-02",
            "--data-dir",
        ])
        .arg(&two)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let pages = dir.path().join("pages");
    let written = agentwire()
        .args(["report", "--day", "2025-11-02", "--data-dir"])
        .arg(&two)
        .arg("--out")
        .arg(&pages)
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let page = std::fs::read_to_string(pages.join("tenant=acme/index.html")).unwrap();
    assert!(page.contains("What people asked for"));
    assert!(
        page.contains("password"),
        "the new kind's label is on the page"
    );
    assert!(!page.contains("<script"), "nothing runs on the page");
}

#[test]
fn bad_input_is_refused_by_name_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = cluster(&dir.path().join("missing"), &out, None);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run = agentwire()
        .args(["cluster", "--view", "moods", "--traces", "x", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("requests or failures"));
    // A previous night that is not clusters output is named by its line.
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    write_trace(&dir.path().join("t"), "s", "hello there", NIGHT_1);
    let previous = dir.path().join("previous.jsonl");
    std::fs::write(&previous, "{\"session\": 3}\n").unwrap();
    let run = cluster(&dir.path().join("t"), &out, Some(&previous));
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out.exists(), "nothing written");
    let run = agentwire()
        .args(["report", "--day", "2025-13-01", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("2025-13-01"));
}
