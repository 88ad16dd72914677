//! The `agentwire` command line: help, and clear errors for bad settings.

use std::process::Command;

#[path = "cli/clusters.rs"]
mod clusters;
#[path = "cli/evals.rs"]
mod evals;

fn agentwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentwire"))
}

#[test]
fn help_lists_dev() {
    let out = agentwire().arg("--help").output().expect("run agentwire");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("dev"));
}

#[test]
fn dev_help_names_every_setting_and_its_env_var() {
    let out = agentwire()
        .args(["dev", "--help"])
        .output()
        .expect("run agentwire");
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "--listen",
        "AGENTWIRE_LISTEN",
        "--data-dir",
        "AGENTWIRE_DATA_DIR",
        "--max-body-bytes",
        "--header-timeout-ms",
        "AGENTWIRE_HEADER_TIMEOUT_MS",
        "--idle-timeout-ms",
        "AGENTWIRE_IDLE_TIMEOUT_MS",
        "--max-connections",
        "AGENTWIRE_MAX_CONNECTIONS",
        "--read-chunk-bytes",
        "--max-concurrent-reads",
        "--read-queue-ms",
        "--sqlite-readers",
        "--sqlite-reader-idle-seconds",
        "--grading-dir",
        "AGENTWIRE_GRADING_DIR",
    ] {
        assert!(help.contains(setting), "missing {setting} in:\n{help}");
    }
}

#[test]
fn a_bad_listen_address_is_refused_by_name() {
    let out = agentwire()
        .args(["dev", "--listen", "nowhere"])
        .output()
        .expect("run agentwire");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn a_data_dir_that_is_a_file_is_refused_by_name() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let out = agentwire()
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.path())
        .output()
        .expect("run agentwire");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file.path().display().to_string()),
        "{stderr}"
    );
}

#[test]
fn job_list_names_every_job_with_its_schedule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = agentwire()
        .args(["job", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&out.stdout);
    for line in [
        "archiver   rate(1 minute)",
        "rescore    rate(1 day)",
        "clusters   rate(1 hour)",
        "expiry     rate(1 minute)",
    ] {
        assert!(list.contains(line), "missing {line:?} in:\n{list}");
    }
}

#[test]
fn job_run_of_an_unknown_job_names_the_known_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = agentwire()
        .args(["job", "run", "nightly", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"nightly\"")
            && stderr.contains("archiver, rescore, evals, clusters, expiry"),
        "{stderr}"
    );
}

#[test]
fn job_run_archiver_reports_what_it_did() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = agentwire()
        // As README gives it: the job settings after the job's name.
        .args([
            "job",
            "run",
            "archiver",
            "--idle-seconds",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("archiver: archived 0 session(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn token_refuses_to_mint_for_a_tenant_with_a_slash() {
    let dir = tempfile::tempdir().expect("temp dir");
    for tenant in ["acme/prod", "", "..", "café"] {
        let out = agentwire()
            .args(["token", "--tenant", tenant, "--data-dir"])
            .arg(dir.path())
            .output()
            .expect("run agentwire");
        assert_eq!(out.status.code(), Some(2), "a usage error for {tenant:?}");
        assert!(out.stdout.is_empty(), "no token is printed for {tenant:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--tenant") && stderr.contains("tenant name"),
            "{stderr}"
        );
    }
    let out = agentwire()
        .args(["token", "--tenant", "acme/prod", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'/'"),
        "the error names the character"
    );
    let ok = agentwire()
        .args(["token", "--tenant", "acme-prod", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("aw1."));
}

#[test]
fn dev_refuses_a_tenant_with_a_slash_even_when_insecure() {
    // A data directory that is a file: were the tenant accepted, dev would stop at it
    // (with another message) rather than serve.
    let dir = tempfile::NamedTempFile::new().expect("temp file");
    let out = agentwire()
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--no-demo-agent",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("AGENTWIRE_TENANT", "acme/prod")
        .output()
        .expect("run agentwire");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tenant") && stderr.contains("'/'"),
        "{stderr}"
    );
}

/// A running `agentwire dev` (insecure, no demo agent) with `args`, killed on drop.
struct Dev {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start(args: &[&str]) -> Dev {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = agentwire()
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--insecure",
                "--no-demo-agent",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run agentwire dev");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().expect("a first line").expect("stdout");
        let addr = first
            .strip_prefix("agentwire dev listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("an address");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Dev {
            child,
            addr,
            _dir: dir,
        }
    }

    fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        stream
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes the connection (or 10 s pass); returns what it sent.
fn read_to_close(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(e),
    }
}

const HALF_SENT: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

#[test]
fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    use std::io::Write;
    let dev = Dev::start(&["--header-timeout-ms", "500"]);
    let mut slow = dev.connect();
    slow.write_all(HALF_SENT).expect("write");
    let started = std::time::Instant::now();
    let got = read_to_close(&mut slow).expect("the server closes the connection");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(400)
            && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // A client that sends its head in time is served.
    let mut quick = dev.connect();
    quick.write_all(HEALTHZ).expect("write");
    let mut reply = [0u8; 64];
    let n = std::io::Read::read(&mut quick, &mut reply).expect("a reply");
    assert!(reply[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &reply[..n]);
}

#[test]
fn the_connection_cap_holds_and_a_waiting_request_is_served_once_a_slot_frees() {
    use std::io::{Read, Write};
    let dev = Dev::start(&["--max-connections", "4", "--header-timeout-ms", "1500"]);
    let mut holders: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = dev.connect();
            stream.write_all(HALF_SENT).expect("write");
            stream
        })
        .collect();
    // Let the server accept all four before the fifth arrives.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut waiting = dev.connect();
    waiting.write_all(HEALTHZ).expect("write");
    // Not served while the four hold every slot...
    waiting
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("timeout");
    let mut reply = [0u8; 64];
    match waiting.read(&mut reply) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("served over the connection limit: {other:?}"),
    }
    // ...and served once the header timeout has closed them.
    waiting
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let n = waiting.read(&mut reply).expect("a reply once a slot freed");
    assert!(reply[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &reply[..n]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    for holder in &mut holders {
        read_to_close(holder).expect("the half-sent request was closed");
    }
}

#[test]
fn idle_connections_are_closed_but_a_long_poll_outlasting_the_idle_timeout_is_not() {
    use std::io::{Read, Write};
    let dev = Dev::start(&["--idle-timeout-ms", "300", "--long-poll-timeout-ms", "1000"]);
    let mut stream = dev.connect();
    let create = b"PUT /v1/stream/s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
    stream.write_all(create).expect("write");
    let mut reply = [0u8; 1024];
    let n = stream.read(&mut reply).expect("a reply");
    assert!(
        reply[..n].starts_with(b"HTTP/1.1 201"),
        "{:?}",
        String::from_utf8_lossy(&reply[..n])
    );
    // A long-poll waits 1 s, longer than the idle timeout, on the same connection.
    let poll = b"GET /v1/stream/s?offset=-1&live=long-poll HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(poll).expect("write");
    let started = std::time::Instant::now();
    let n = stream.read(&mut reply).expect("the long-poll's answer");
    assert!(
        reply[..n].starts_with(b"HTTP/1.1 204"),
        "{:?}",
        String::from_utf8_lossy(&reply[..n])
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // Then, with nothing in progress, the connection is closed after the idle timeout.
    let idle = std::time::Instant::now();
    let rest = read_to_close(&mut stream).expect("closed when idle");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let waited = idle.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(250)
            && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn token_mints_an_ingest_role_and_names_it_among_the_roles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ok = agentwire()
        .args(["token", "--role", "ingest", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("aw1."));
    let bad = agentwire()
        .args(["token", "--role", "exporter", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("admin, ingest or grader"), "{stderr}");
}

#[test]
fn token_mints_grader_tokens_only_with_a_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ok = agentwire()
        .args([
            "token",
            "--tenant",
            "acme",
            "--role",
            "grader",
            "--sessions",
            "review-1",
            "--user",
            "alice",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let token = String::from_utf8_lossy(&ok.stdout).trim().to_string();
    let secret = std::fs::read_to_string(dir.path().join("secret")).expect("the secret");
    let claims = agentwire_auth::Signer::new(secret.trim().as_bytes().to_vec())
        .verify(&token, 0)
        .expect("a valid token");
    assert_eq!(claims.role, agentwire_auth::Role::Grader);
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.sessions, "review-1");
    assert_eq!(claims.user.as_deref(), Some("alice"));
    let anonymous = agentwire()
        .args([
            "token",
            "--role",
            "grader",
            "--sessions",
            "review-1",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    assert!(!anonymous.status.success());
    assert!(anonymous.stdout.is_empty(), "no token is printed");
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(stderr.contains("--user"), "{stderr}");
}

#[test]
fn dev_serves_otlp_trace_ingest_into_the_data_directory() {
    use std::io::Write;
    let dev = Dev::start(&[]);
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat","kind":3,"startTimeUnixNano":"1749988800000000000","endTimeUnixNano":"1749988801000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.conversation.id","value":{"stringValue":"conv-1"}}]}]}]}]}"#;
    let mut stream = dev.connect();
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let reply = String::from_utf8_lossy(&read_to_close(&mut stream).expect("a reply")).into_owned();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("application/json"), "{reply}");
    let object = dev
        ._dir
        .path()
        .join("traces/dt=2025-06-15/tenant=local/conv-1.jsonl.gz");
    assert!(object.is_file(), "{} was not written", object.display());
}

/// Gzip of `text`, as a trace file's bytes.
fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// `agentwire import ragtruth` of `responses` and `sources` into `out`.
fn import_ragtruth(
    responses: &std::path::Path,
    sources: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Output {
    agentwire()
        .args(["import", "ragtruth", "--responses"])
        .arg(responses)
        .arg("--sources")
        .arg(sources)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run agentwire")
}

#[test]
fn import_then_score_writes_records_and_names_bad_input_by_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sources = dir.path().join("sources.jsonl");
    std::fs::write(
        &sources,
        r#"{"source_id": "s1", "task_type": "QA", "source": "MARCO", "source_info": {"question": "when does the museum open", "passages": "passage 1:The museum opens at 9am.\n\npassage 2:It closes at 5pm.\n\n"}, "prompt": "p"}
"#,
    )
    .unwrap();
    let responses = dir.path().join("responses.jsonl");
    std::fs::write(
        &responses,
        r#"{"id": "1", "source_id": "s1", "model": "m", "temperature": 0.7, "labels": [], "split": "train", "quality": "good", "response": "The museum opens at 9am."}
{"id": "2", "source_id": "s1", "model": "m", "temperature": 0.7, "labels": [{"start": 20, "end": 24, "text": "11am", "label_type": "Evident Conflict"}], "split": "train", "quality": "good", "response": "The museum opens at 11am."}
{"id": "3", "source_id": "nowhere", "model": "m", "temperature": 0.7, "labels": [], "split": "train", "quality": "good", "response": "x"}
"#,
    )
    .unwrap();
    let out = import_ragtruth(&responses, &sources, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 2 traces") && stderr.contains("responses.jsonl: line 3"),
        "{stderr}"
    );
    let day = std::fs::read_dir(dir.path().join("traces"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let tenant = day.join("tenant=local");
    assert!(tenant.join("ragtruth-1.jsonl.gz").is_file());
    // Not an archive: its first line is not a span.
    std::fs::write(
        tenant.join("broken.jsonl.gz"),
        gzip("{\"start_time_unix_nano\": \"user text\"}\n"),
    )
    .unwrap();

    let scores = dir.path().join("scores.jsonl");
    let out = agentwire()
        .args(["score", "--traces"])
        .arg(dir.path().join("traces"))
        .arg("--out")
        .arg(&scores)
        .output()
        .expect("run agentwire");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.jsonl.gz: line 1") && stderr.contains("scored 2 traces"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("user text"),
        "trace content in the report: {stderr}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let grounded: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["name"] == "groundedness")
        .collect();
    assert_eq!(grounded.len(), 2, "{records:?}");
    assert!(
        grounded
            .iter()
            .all(|r| r["source"] == "code" && r["tenant"] == "local")
    );

    let config = dir.path().join("scoring.toml");
    std::fs::write(&config, "retrieval_tools = []\nscorers = [\"vibes\"]\n").unwrap();
    let out = agentwire()
        .args(["score", "--traces"])
        .arg(dir.path().join("traces"))
        .arg("--out")
        .arg(&scores)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run agentwire");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("scoring.toml: line 2: scorers[0]: unknown scorer `vibes`"),
        "{stderr}"
    );
}

/// Grades for `agentwire agreement`: two criteria, three graders (one grade missing) and a
/// scorer named `judge`, as (item, grader, criterion, value).
const AGREEMENT_GRADES: &[(&str, &str, &str, u8)] = &[
    ("t1", "ana", "correct", 5),
    ("t1", "bo", "correct", 4),
    ("t1", "cy", "correct", 5),
    ("t2", "ana", "correct", 2),
    ("t2", "bo", "correct", 2),
    ("t2", "cy", "correct", 3),
    ("t3", "ana", "correct", 1),
    ("t3", "bo", "correct", 1),
    ("t4", "ana", "correct", 4),
    ("t4", "bo", "correct", 5),
    ("t4", "cy", "correct", 4),
    ("t5", "ana", "correct", 3),
    ("t5", "bo", "correct", 3),
    ("t5", "cy", "correct", 1),
    ("t6", "ana", "correct", 2),
    ("t6", "bo", "correct", 1),
    ("t6", "cy", "correct", 2),
    ("t1", "judge", "correct", 4),
    ("t2", "judge", "correct", 2),
    ("t3", "judge", "correct", 2),
    ("t4", "judge", "correct", 4),
    ("t5", "judge", "correct", 3),
    ("t6", "judge", "correct", 1),
    ("t1", "ana", "tone", 1),
    ("t1", "bo", "tone", 1),
    ("t1", "cy", "tone", 2),
    ("t2", "ana", "tone", 3),
    ("t2", "bo", "tone", 3),
    ("t2", "cy", "tone", 3),
    ("t3", "ana", "tone", 2),
    ("t3", "bo", "tone", 1),
    ("t3", "cy", "tone", 2),
];

#[test]
fn agreement_json_is_the_libraries_statistics_per_criterion() {
    use agentwire_agreement::{GradeTable, Options, Scale, Value};
    let dir = tempfile::tempdir().expect("temp dir");
    let grades = dir.path().join("grades.jsonl");
    let lines: Vec<String> = AGREEMENT_GRADES
        .iter()
        .map(|(item, grader, criterion, value)| {
            serde_json::json!({"item": item, "grader": grader, "criterion": criterion, "value": value})
                .to_string()
        })
        .collect();
    std::fs::write(&grades, lines.join("\n") + "\n\n").expect("write grades");
    let out = agentwire()
        .args([
            "agreement",
            "--scale",
            "ordinal",
            "--json",
            "--resamples",
            "200",
            "--scorer",
            "judge",
            "--grades",
        ])
        .arg(&grades)
        .output()
        .expect("run agentwire");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(printed.len(), 2, "one line per criterion");

    let options = Options {
        resamples: 200,
        ..Options::default()
    };
    for (line, criterion) in printed.iter().zip(["correct", "tone"]) {
        let mut table = GradeTable::new(criterion);
        let mut judge = Vec::new();
        for (item, grader, _, value) in AGREEMENT_GRADES.iter().filter(|g| g.2 == criterion) {
            let value = Value::Number(f64::from(*value));
            if *grader == "judge" {
                judge.push((item.to_string(), value));
            } else {
                table.add(*item, *grader, value).expect("grade");
            }
        }
        let mut want = agentwire_agreement::agreement_with(&table, Scale::Ordinal, &options)
            .expect("agreement");
        if !judge.is_empty() {
            want.scorers.push(
                agentwire_agreement::scorer_agreement(
                    &table,
                    "judge",
                    &judge,
                    Scale::Ordinal,
                    &options,
                )
                .expect("scorer"),
            );
        }
        assert_eq!(
            line,
            &serde_json::to_value(&want).expect("json"),
            "{criterion}"
        );
        for key in [
            "criterion",
            "items",
            "graders",
            "krippendorff_alpha",
            "fleiss_kappa",
            "pairwise",
        ] {
            assert!(line.get(key).is_some(), "{criterion}: no {key} in {line}");
        }
        assert_eq!(
            line["graders"], 3,
            "the scorer is not counted among the graders"
        );
        assert!(line["krippendorff_alpha"]["value"].is_f64(), "{line}");
        assert!(line["krippendorff_alpha"]["ci"]["low"].is_f64(), "{line}");
    }
    assert_eq!(printed[0]["items"], 6);
    assert_eq!(printed[0]["pairwise"][0]["a"], "ana");
    assert_eq!(printed[0]["pairwise"][0]["items"], 6);
    assert_eq!(printed[0]["scorers"][0]["scorer"], "judge");

    let out = agentwire()
        .args(["agreement", "--scale", "ordinal", "--grades"])
        .arg(&grades)
        .output()
        .expect("run agentwire");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for shown in [
        "criterion \"correct\"",
        "Krippendorff's alpha (ordinal)",
        "Fleiss' kappa",
        "ana  bo",
        "disagreements:",
    ] {
        assert!(text.contains(shown), "no {shown:?} in:\n{text}");
    }
}

#[test]
fn agreement_names_the_bad_line_and_prints_no_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = r#"{"item":"t1","grader":"ana","criterion":"correct","value":4}"#;
    for (scale, bad, problem) in [
        (
            "ordinal",
            r#"{"item":"t1","grader":"bo","criterion":"correct","value":"good"}"#,
            "line 2: value \"good\" is not a number; --scale ordinal needs numeric codes",
        ),
        (
            "nominal",
            r#"{"item":"t1","grader":"bo","criterion":"correct","value":null}"#,
            "line 2: \"value\" must be a string or a number",
        ),
        (
            "nominal",
            r#"{"item":"t1","grader":"ana","criterion":"correct","value":3}"#,
            "line 2: item \"t1\" already has a grade from \"ana\" for criterion \"correct\" (line 1)",
        ),
        (
            "nominal",
            r#"{"item":"t1","grader":"bo","value":3}"#,
            "line 2: missing \"criterion\"",
        ),
        ("nominal", "{not json", "line 2: not JSON"),
    ] {
        let grades = dir.path().join("grades.jsonl");
        std::fs::write(&grades, format!("{good}\n{bad}\n{good}\n")).expect("write grades");
        let out = agentwire()
            .args(["agreement", "--json", "--scale", scale, "--grades"])
            .arg(&grades)
            .output()
            .expect("run agentwire");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains(problem), "want {problem:?} in: {stderr}");
        assert!(stderr.contains("grades.jsonl"), "names the file: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "printed a result: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// One `Connection: close` request to `dev`; returns the whole reply as text.
fn request(dev: &Dev, head: &str, body: &str) -> String {
    use std::io::Write;
    let mut stream = dev.connect();
    write!(
        stream,
        "{head}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    String::from_utf8_lossy(&read_to_close(&mut stream).expect("a reply")).into_owned()
}

#[test]
fn dev_serves_the_grading_page_at_grade_and_the_grading_api() {
    let page = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        page.path().join("index.html"),
        "<title>grading page</title>",
    )
    .expect("write");
    std::fs::write(page.path().join("app.js"), "// grading app").expect("write");
    let dir = page.path().to_str().expect("utf-8 path");
    let dev = Dev::start(&["--grading-dir", dir]);

    let reply = request(&dev, "GET /grade HTTP/1.1", "");
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("location: /grade/"),
        "{reply}"
    );
    let reply = request(&dev, "GET /grade/ HTTP/1.1", "");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("grading page"), "{reply}");
    let reply = request(&dev, "GET /grade/app.js HTTP/1.1", "");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("// grading app"), "{reply}");

    // The grading API is served beside the others, on the data directory's SQLite file.
    let rubric = r#"{"name":"r","version":1,"criteria":[{"key":"ok","title":"OK?","scale":{"kind":"pass_fail"}}]}"#;
    let reply = request(&dev, "PUT /v1/rubrics/r/1 HTTP/1.1", rubric);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let reply = request(&dev, "GET /v1/rubrics/r HTTP/1.1", "");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = request(&dev, "GET /v1/queues/none HTTP/1.1", "");
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(
        reply.contains(r#"{"error":"no queue \"none\""}"#),
        "{reply}"
    );
}

/// Grades of `n` items by two graders who fail everything scored below 0.3, and the score
/// records of a scorer whose values are spread evenly over [0, 1).
fn calibration_files(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let (mut grades, mut scores) = (String::new(), String::new());
    for i in 0..n {
        let item = format!("{i:032x}");
        let value = i as f64 / n as f64;
        let verdict = if value >= 0.3 { "pass" } else { "fail" };
        for grader in ["ana", "bo"] {
            let row = serde_json::json!({"item": item, "grader": grader, "criterion": "grounded", "value": verdict});
            grades.push_str(&format!("{row}\n"));
        }
        let record = serde_json::json!({
            "trace_id": item, "session": "s", "tenant": "local", "name": "groundedness",
            "value": value, "source": "code", "scorer": "groundedness", "scorer_version": "1",
            "trace_digest": "d", "scored_at_ms": 0
        });
        scores.push_str(&format!("{record}\n"));
    }
    let (g, s) = (dir.join("grades.jsonl"), dir.join("scores.jsonl"));
    std::fs::write(&g, grades).expect("write grades");
    std::fs::write(&s, scores).expect("write scores");
    (g, s)
}

#[test]
fn calibrate_moves_the_threshold_to_the_graders_line_and_writes_it_only_when_it_helps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (grades, scores) = calibration_files(dir.path(), 200);
    let config = dir.path().join("scoring.toml");
    std::fs::write(&config, "# ours\n[groundedness]\nthreshold = 0.7\n").expect("write config");
    let out_file = dir.path().join("tuned.toml");
    let out = agentwire()
        .args([
            "calibrate",
            "--scorer",
            "groundedness",
            "--criterion",
            "grounded",
            "--json",
        ])
        .arg("--grades")
        .arg(&grades)
        .arg("--scores")
        .arg(&scores)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out_file)
        .output()
        .expect("run agentwire");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["items"], 200);
    assert_eq!(report["threshold_before"], 0.7);
    let after = report["threshold_after"].as_f64().expect("a threshold");
    assert!((after - 0.3).abs() < 0.05, "{report}");
    assert_eq!(report["improves"], true);
    // A held-back item can fall between the two tuning items the threshold splits.
    let (before, after_kappa) = (
        report["held_back_kappa_before"].as_f64().unwrap(),
        report["held_back_kappa_after"].as_f64().unwrap(),
    );
    assert!(after_kappa > 0.9 && before < 0.5, "{report}");
    assert_eq!(
        report["tuned_on"].as_u64().unwrap() + report["held_back"].as_u64().unwrap(),
        200
    );
    let tuned = std::fs::read_to_string(&out_file).expect("the tuned configuration");
    assert!(
        tuned.starts_with("# groundedness.threshold 0.7000 -> "),
        "{tuned}"
    );
    assert!(
        tuned.contains("# ours\n[groundedness]\nthreshold = "),
        "{tuned}"
    );

    // Already at the graders' line: nothing to gain on the held-back items, nothing written.
    std::fs::write(&config, format!("[groundedness]\nthreshold = {after}\n")).expect("write");
    std::fs::remove_file(&out_file).expect("remove");
    let out = agentwire()
        .args([
            "calibrate",
            "--scorer",
            "groundedness",
            "--criterion",
            "grounded",
        ])
        .arg("--grades")
        .arg(&grades)
        .arg("--scores")
        .arg(&scores)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out_file)
        .output()
        .expect("run agentwire");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not help"));
    assert!(!out_file.exists());
}

#[test]
fn calibrate_names_a_bad_grade_line_and_a_scorer_it_cannot_tune() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (grades, scores) = calibration_files(dir.path(), 40);
    let mut text = std::fs::read_to_string(&grades).expect("read");
    text.push_str(r#"{"item":"x","grader":"ana","criterion":"grounded","value":"maybe"}"#);
    std::fs::write(&grades, text).expect("write");
    let run = |scorer: &str| {
        agentwire()
            .args(["calibrate", "--scorer", scorer, "--criterion", "grounded"])
            .arg("--grades")
            .arg(&grades)
            .arg("--scores")
            .arg(&scores)
            .output()
            .expect("run agentwire")
    };
    let out = run("groundedness");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 81: value \"maybe\" is not `pass` or `fail`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let out = run("tool_use");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scorer `tool_use` has no threshold to tune"),
        "{stderr}"
    );
}

#[test]
fn calibrate_on_a_queue_writes_the_tenants_next_configuration_version() {
    use agentwire_grading::{
        Answer, Criterion, GradingStore, Rubric, Scale, ScorerLink, plan_items,
    };
    use agentwire_scoring::{ScoreIndex, ScoreRecord, Source};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sessions.db");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = agentwire_sqlite::SqliteGradingStore::open(&db).expect("grading store");
        let index = agentwire_sqlite::SqliteScoreIndex::open(&db).expect("score index");
        let rubric = Rubric {
            name: "answers".into(),
            version: 1,
            title: String::new(),
            criteria: vec![Criterion {
                key: "grounded".into(),
                title: "Grounded?".into(),
                guidance: String::new(),
                scale: Scale::PassFail,
                justification_required: false,
                scorers: vec![ScorerLink {
                    name: "groundedness".into(),
                    threshold: 0.5,
                }],
            }],
        };
        store.put_rubric("local", &rubric).await.expect("rubric");
        let spec: agentwire_grading::QueueSpec = serde_json::from_value(serde_json::json!({
            "name": "week", "rubric": {"name": "answers", "version": 1},
            "graders": ["ana"], "per_item": 1
        }))
        .expect("spec");
        let n = 120;
        let traces: Vec<(String, String)> = (0..n)
            .map(|i| (format!("{i:032x}"), format!("s{i}")))
            .collect();
        store
            .create_queue("local", &spec, &plan_items(&spec, &traces))
            .await
            .expect("queue");
        for (i, (trace, session)) in traces.iter().enumerate() {
            let value = i as f64 / n as f64;
            let claim = store
                .claim("local", "week", "ana", 1_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&claim.item.trace_id, trace);
            let verdict = if value >= 0.3 { "pass" } else { "fail" };
            let grade = agentwire_grading::Grade {
                queue: "week".into(),
                trace_id: trace.clone(),
                session: session.clone(),
                grader: "ana".into(),
                rubric: rubric.reference(),
                answers: [(
                    "grounded".to_string(),
                    Answer {
                        value: verdict.into(),
                        justification: None,
                    },
                )]
                .into(),
                graded_ms: 2_000,
            };
            store.submit("local", &grade, 2_000).await.expect("submit");
            let record = ScoreRecord {
                trace_id: trace.clone(),
                span_id: None,
                session: session.clone(),
                tenant: "local".into(),
                name: "groundedness".into(),
                value,
                label: None,
                source: Source::Code,
                explanation: None,
                evidence: Vec::new(),
                scorer: "groundedness".into(),
                scorer_version: "1".into(),
                trace_digest: "d".into(),
                scored_at_ms: 0,
                usage: None,
            };
            index
                .replace("local", trace, Source::Code, &[record])
                .await
                .expect("index");
        }
    });
    let out = agentwire()
        .args([
            "calibrate",
            "--scorer",
            "groundedness",
            "--queue",
            "week",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run agentwire");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("written version 1"), "{stdout}");
    let config = dir.path().join("config/tenant=local");
    let live = std::fs::read_to_string(config.join("scoring.toml")).expect("the live file");
    let kept = std::fs::read_to_string(config.join("scoring/v000001.toml")).expect("version 1");
    assert_eq!(live, kept);
    assert!(live.contains("on queue week of tenant local"), "{live}");
    let tuned = agentwire_scoring::ScoringConfig::parse(&live).expect("a valid configuration");
    // Within the gap between two tuning items around the graders' line.
    assert!((tuned.groundedness.threshold - 0.3).abs() < 0.05, "{live}");
}

#[test]
fn judge_writes_judgements_reuses_them_on_a_rerun_and_keeps_to_its_budget() {
    use agentwire_judge::fake::{FakeModel, Script};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let model = runtime.block_on(FakeModel::start(Script::answer_with(|_| {
        serde_json::json!({"criteria": {"grounded": {"value": "pass", "explanation": "every hour is in the passages"}}})
    })));
    let dir = tempfile::tempdir().expect("temp dir");
    let sources = dir.path().join("sources.jsonl");
    std::fs::write(
        &sources,
        r#"{"source_id": "s1", "task_type": "QA", "source": "MARCO", "source_info": {"question": "when does the museum open", "passages": "passage 1:The museum opens at 9am.\n\n"}, "prompt": "p"}
"#,
    )
    .unwrap();
    let responses = dir.path().join("responses.jsonl");
    let lines: String = (1..=4)
        .map(|i| format!("{{\"id\": \"{i}\", \"source_id\": \"s1\", \"model\": \"m\", \"temperature\": 0.7, \"labels\": [], \"split\": \"train\", \"quality\": \"good\", \"response\": \"The museum opens at {i}am.\"}}\n"))
        .collect();
    std::fs::write(&responses, lines).unwrap();
    let out = import_ragtruth(&responses, &sources, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rubric = dir.path().join("rubric.json");
    std::fs::write(
        &rubric,
        r#"{"name": "answers", "version": 1, "criteria": [{"key": "grounded", "title": "Grounded?", "scale": {"kind": "pass_fail"}}]}"#,
    )
    .unwrap();
    let judge = |out_file: &str, extra: &[&str]| {
        agentwire()
            .args(["judge", "--traces"])
            .arg(dir.path().join("traces"))
            .arg("--rubric")
            .arg(&rubric)
            .args([
                "--endpoint",
                &model.base_url(),
                "--model",
                "judge-model",
                "--out",
            ])
            .arg(dir.path().join(out_file))
            .args(extra)
            .output()
            .expect("run agentwire judge")
    };
    let read = |out_file: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(out_file))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let out = judge("judged.jsonl", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 judged"), "{stderr}");
    let judgements = read("judged.jsonl");
    assert_eq!(judgements.len(), 4);
    for j in &judgements {
        assert_eq!(j["outcome"], "judged", "{j}");
        assert_eq!(j["records"][0]["name"], "answers.grounded");
        assert_eq!(j["records"][0]["source"], "judge");
        assert!(j["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(model.requests(), 4);

    // Again with the same --out: every verdict is reused, nothing is sent.
    let out = judge("judged.jsonl", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("4 cached"),
        "{stderr}"
    );
    assert_eq!(model.requests(), 4);

    // A budget smaller than one call: nothing is sent, each trace says why.
    let out = judge("poor.jsonl", &["--budget-tokens", "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        read("poor.jsonl")
            .iter()
            .all(|j| j["outcome"] == "skipped" && j["reason"] == "budget")
    );
    assert_eq!(model.requests(), 4);

    // Bad input is refused, naming it, before anything is sent.
    let out = judge("bad.jsonl", &["--sample", "1.5"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sample"), "{stderr}");
    assert_eq!(model.requests(), 4);
}

/// Traces of 40 answers about opening hours (`It opens at 9am.` is right) imported into
/// `dir`, with each trace's id and whether the experts pass it.
fn hour_traces(dir: &std::path::Path) -> Vec<(String, String, bool)> {
    let sources = dir.join("sources.jsonl");
    std::fs::write(
        &sources,
        r#"{"source_id": "s1", "task_type": "QA", "source": "MARCO", "source_info": {"question": "when does the museum open", "passages": "passage 1:The museum opens at 9am.\n\n"}, "prompt": "p"}
"#,
    )
    .unwrap();
    let hour = |i: usize| {
        if i.is_multiple_of(2) {
            9
        } else {
            [1, 3, 5, 7, 10, 11][i % 6]
        }
    };
    let responses = dir.join("responses.jsonl");
    let lines: String = (1..=40)
        .map(|i| format!("{{\"id\": \"{i}\", \"source_id\": \"s1\", \"model\": \"m\", \"temperature\": 0.7, \"labels\": [], \"split\": \"train\", \"quality\": \"good\", \"response\": \"It opens at {}am.\"}}\n", hour(i)))
        .collect();
    std::fs::write(&responses, lines).unwrap();
    let out = import_ragtruth(&responses, &sources, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (1..=40)
        .map(|i| {
            let file = dir.join(format!(
                "traces/dt=2024-01-01/tenant=local/ragtruth-{i}.jsonl.gz"
            ));
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()),
                &mut text,
            )
            .unwrap();
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            let trace = first["trace_id"].as_str().unwrap().to_owned();
            (trace, format!("ragtruth-{i}"), hour(i) == 9)
        })
        .collect()
}

#[test]
fn calibrate_judge_keeps_the_prompt_that_agrees_with_the_experts() {
    use agentwire_judge::fake::{FakeModel, Reply, Script};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // With the STRICT variant the model passes exactly the right hour; without, it passes
    // the hours that start with 1.
    let model = runtime.block_on(FakeModel::start(Script::reply_with(|request| {
        let system = request["messages"][0]["content"].as_str().unwrap_or_default();
        let user = request["messages"][1]["content"].as_str().unwrap_or_default();
        let pass = if system.contains("STRICT") {
            user.contains("It opens at 9am")
        } else {
            user.contains("It opens at 1")
        };
        let value = if pass { "pass" } else { "fail" };
        Reply::Verdict(serde_json::json!({"criteria": {"grounded": {"value": value, "explanation": "the hour against the passage"}}}))
    })));
    let dir = tempfile::tempdir().expect("temp dir");
    let traces = hour_traces(dir.path());
    let judge_toml = format!(
        "# our judge\n[endpoint]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"judge-model\"\nmax_retries = 0\n\n[[rubric]]\nname = \"answers\"\nsample = 0.2\nfew_shot = 2\n\n[[rubric.variant]]\nname = \"strict\"\ninstructions = \"STRICT: pass only the hour the passage gives.\"\n",
        model.base_url()
    );

    // From files: grades as JSON lines, the rubric as JSON, the traces, --out.
    let rubric = dir.path().join("rubric.json");
    std::fs::write(
        &rubric,
        r#"{"name": "answers", "version": 1, "criteria": [{"key": "grounded", "title": "Grounded?", "scale": {"kind": "pass_fail"}}]}"#,
    )
    .unwrap();
    let config = dir.path().join("judge.toml");
    std::fs::write(&config, &judge_toml).unwrap();
    let grades = dir.path().join("grades.jsonl");
    let mut lines = String::new();
    for (trace, _, pass) in &traces {
        for grader in ["ana", "ben"] {
            let value = if *pass { "pass" } else { "fail" };
            lines.push_str(&format!(
                "{{\"item\": \"{trace}\", \"grader\": \"{grader}\", \"criterion\": \"grounded\", \"value\": \"{value}\", \"justification\": \"the passage says 9am\"}}\n"
            ));
        }
    }
    let from_files = |grades: &std::path::Path, out: &str| {
        agentwire()
            .args(["calibrate", "--judge", "--holdout", "0.5", "--grades"])
            .arg(grades)
            .arg("--judge-config")
            .arg(&config)
            .arg("--rubric-file")
            .arg(&rubric)
            .arg("--traces")
            .arg(dir.path().join("traces"))
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .expect("run agentwire calibrate")
    };
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{lines}{{\"item\": \"x\", \"grader\": \"ana\", \"criterion\": \"grounded\", \"value\": \"maybe\"}}\n"),
    )
    .unwrap();
    let out = from_files(&bad, "never.toml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 81") && stderr.contains("`maybe`"),
        "{stderr}"
    );
    assert_eq!(model.requests(), 0, "nothing is sent for bad input");
    assert!(!dir.path().join("never.toml").exists());

    std::fs::write(&grades, &lines).unwrap();
    // A rubric file that is not judge.toml's rubric is refused before any call.
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        std::fs::read_to_string(&rubric)
            .unwrap()
            .replace("\"answers\"", "\"other\""),
    )
    .unwrap();
    let out = agentwire()
        .args(["calibrate", "--judge", "--grades"])
        .arg(&grades)
        .arg("--judge-config")
        .arg(&config)
        .arg("--rubric-file")
        .arg(&other)
        .arg("--traces")
        .arg(dir.path().join("traces"))
        .output()
        .expect("run agentwire calibrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("must be the same rubric"),
        "{stderr}"
    );
    assert_eq!(model.requests(), 0);

    let out = from_files(&grades, "chosen.toml");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("strict") && stdout.contains("(best)"),
        "{stdout}"
    );
    let chosen = std::fs::read_to_string(dir.path().join("chosen.toml")).unwrap();
    assert!(
        chosen.starts_with("# answers: prompt default -> strict by `agentwire calibrate --judge`"),
        "{chosen}"
    );
    assert!(
        chosen.contains("# our judge"),
        "the file's own comments stay: {chosen}"
    );
    let parsed = agentwire_judge::config::JudgeConfig::parse(&chosen).unwrap();
    assert_eq!(parsed.rubric[0].prompt.as_deref(), Some("strict"));
    let held = model.requests() / 2;
    assert!(held >= 10, "{held} held-back items");

    // Again from the new file: `strict` is current, and nothing beats it.
    std::fs::copy(dir.path().join("chosen.toml"), &config).unwrap();
    assert_eq!(chosen.matches("agentwire calibrate --judge").count(), 1);
    let out = from_files(&grades, "again.toml");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("nothing written"),
        "{stdout}"
    );
    assert!(!dir.path().join("again.toml").exists());

    // From agentwire dev's data directory: the rubric's queue, the archive's traces and
    // judge.toml, which is rewritten in place; the calls count against the day's budget.
    std::fs::write(&config, &judge_toml).unwrap();
    let tenant_config = dir.path().join("config/tenant=local");
    std::fs::create_dir_all(&tenant_config).unwrap();
    std::fs::write(tenant_config.join("judge.toml"), &judge_toml).unwrap();
    let db = dir.path().join("sessions.db");
    runtime.block_on(async {
        use agentwire_grading::{Answer, Criterion, GradingStore, Rubric, Scale, plan_items};
        let store = agentwire_sqlite::SqliteGradingStore::open(&db).expect("grading store");
        let rubric = Rubric {
            name: "answers".into(),
            version: 1,
            title: String::new(),
            criteria: vec![Criterion {
                key: "grounded".into(),
                title: "Grounded?".into(),
                guidance: String::new(),
                scale: Scale::PassFail,
                justification_required: false,
                scorers: Vec::new(),
            }],
        };
        store.put_rubric("local", &rubric).await.expect("rubric");
        let spec: agentwire_grading::QueueSpec = serde_json::from_value(serde_json::json!({
            "name": "week", "rubric": {"name": "answers", "version": 1},
            "graders": ["ana"], "per_item": 1
        }))
        .expect("spec");
        let items: Vec<(String, String)> = traces
            .iter()
            .map(|(t, s, _)| (t.clone(), s.clone()))
            .collect();
        store
            .create_queue("local", &spec, &plan_items(&spec, &items))
            .await
            .expect("queue");
        let at = 1_704_067_200_000;
        for _ in &traces {
            let claim = store
                .claim("local", "week", "ana", at)
                .await
                .unwrap()
                .unwrap();
            let (_, _, pass) = traces
                .iter()
                .find(|(t, _, _)| *t == claim.item.trace_id)
                .unwrap();
            let grade = agentwire_grading::Grade {
                queue: "week".into(),
                trace_id: claim.item.trace_id.clone(),
                session: claim.item.session.clone(),
                grader: "ana".into(),
                rubric: rubric.reference(),
                answers: [(
                    "grounded".to_string(),
                    Answer {
                        value: if *pass { "pass" } else { "fail" }.into(),
                        justification: Some("the passage says 9am".into()),
                    },
                )]
                .into(),
                graded_ms: at,
            };
            store.submit("local", &grade, at).await.expect("submit");
        }
    });
    let before = model.requests();
    let out = agentwire()
        .args([
            "calibrate",
            "--judge",
            "--holdout",
            "0.5",
            "--json",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run agentwire calibrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["best"], "strict", "{report}");
    assert_eq!(report["improves"], true);
    assert_eq!(report["items"], 40);
    assert_eq!(report["missing_traces"], 0);
    assert_eq!(report["written"], "config/tenant=local/judge.toml");
    assert_eq!(report["from"], "queues week of tenant local");
    let live = std::fs::read_to_string(tenant_config.join("judge.toml")).unwrap();
    assert!(live.contains("prompt = \"strict\""), "{live}");
    assert!(live.contains("on queues week of tenant local"), "{live}");
    let calls = model.requests() - before;
    assert_eq!(calls as u64, 2 * report["compared_on"].as_u64().unwrap());
    let spent = runtime.block_on(async {
        use agentwire_judge::BudgetLedger;
        let ledger = agentwire_sqlite::SqliteBudgetLedger::open(&db).unwrap();
        let day = agentwire_trace::utc_day(agentwire_session::Clock::now_ms(
            &agentwire_session::SystemClock,
        ));
        ledger.spent("local", &day).await.unwrap()
    });
    assert!(spent.tokens > 0, "the calls are the tenant's spend");
}

/// A pool of `agentwire demo-agent --pattern` workers against `agentwire dev`.
struct Pool {
    workers: Vec<(String, std::process::Child)>,
}

impl Pool {
    fn spawn(&mut self, dev: &Dev, name: &str, reply_tokens: &str, rate: &str) {
        let pattern = ["--pattern", "chat-*", "--lease-ttl-ms", "4000"];
        let shape = [
            "--linger-ms",
            "10",
            "--tokens",
            reply_tokens,
            "--rate",
            rate,
        ];
        let args = [&pattern[..], &shape, &["--worker-name", name]].concat();
        self.spawn_with(dev, name, &args);
    }

    /// `agentwire demo-agent ARGS --url <dev>`, known as `name`.
    fn spawn_with(&mut self, dev: &Dev, name: &str, args: &[&str]) {
        let child = agentwire()
            .arg("demo-agent")
            .args(args)
            .arg("--url")
            .arg(format!("http://{}", dev.addr))
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run agentwire demo-agent");
        self.workers.push((name.to_owned(), child));
    }

    /// SIGKILL: no goodbye, no last write.
    fn kill(&mut self, name: &str) {
        let at = self
            .workers
            .iter()
            .position(|(n, _)| n == name)
            .expect("a worker");
        let (_, mut child) = self.workers.remove(at);
        child.kill().expect("kill");
        child.wait().expect("reaped");
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A session's events, from the start.
fn session_events(dev: &Dev, name: &str) -> Vec<serde_json::Value> {
    let reply = request(
        dev,
        &format!("GET /v1/stream/{name}?offset=-1 HTTP/1.1"),
        "",
    );
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_default()
}

/// The assistant messages of a session: (id, finished).
fn replies(events: &[serde_json::Value]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for event in events {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match event["type"].as_str() {
            Some("message.start") if event["role"] == "assistant" => out.push((id, false)),
            Some("message.end") => {
                if let Some(reply) = out.iter_mut().find(|(r, _)| *r == id) {
                    reply.1 = true;
                }
            }
            _ => {}
        }
    }
    out
}

fn wait_for<T>(what: &str, within: std::time::Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn post_user_message(dev: &Dev, session: &str, text: &str) {
    let id = format!("u_{session}");
    let body = serde_json::json!([
        {"type": "message.start", "id": id, "role": "user"},
        {"type": "message.delta", "id": id, "data": {"text": text}},
        {"type": "message.end", "id": id, "role": "user"},
    ]);
    let reply = request(
        dev,
        &format!("PUT /v1/stream/{session} HTTP/1.1"),
        &body.to_string(),
    );
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
}

/// A demo agent started after the messages came answers the one without a finished reply,
/// once, and leaves the answered one alone.
#[test]
fn a_demo_agent_started_late_answers_only_the_unanswered_message() {
    let dev = Dev::start(&[]);
    let history = serde_json::json!([
        {"type": "message.start", "id": "u1", "role": "user"},
        {"type": "message.delta", "id": "u1", "data": {"text": "first"}},
        {"type": "message.end", "id": "u1", "role": "user"},
        {"type": "message.start", "id": "a1", "role": "assistant", "parent": "u1"},
        {"type": "message.end", "id": "a1", "role": "assistant"},
        {"type": "message.start", "id": "u2", "role": "user"},
        {"type": "message.delta", "id": "u2", "data": {"text": "second"}},
        {"type": "message.end", "id": "u2", "role": "user"},
    ]);
    let reply = request(&dev, "PUT /v1/stream/late HTTP/1.1", &history.to_string());
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let mut agent = Pool {
        workers: Vec::new(),
    };
    let args = [
        "--session",
        "late",
        "--linger-ms",
        "10",
        "--tokens",
        "3",
        "--rate",
        "500",
    ];
    agent.spawn_with(&dev, "late", &args);
    let answered = wait_for(
        "the reply to u2",
        std::time::Duration::from_secs(20),
        || {
            let events = session_events(&dev, "late");
            let done = replies(&events)
                .into_iter()
                .filter(|(id, done)| *done && id != "a1");
            (done.count() > 0).then_some(events)
        },
    );
    // Settled: nothing more comes after the one reply.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = session_events(&dev, "late");
    assert_eq!(events.len(), answered.len(), "one reply, then nothing");
    let parents: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "message.start" && e["role"] == "assistant")
        .filter_map(|e| e["parent"].as_str())
        .collect();
    assert_eq!(parents, ["u1", "u2"], "u2 answered, u1 not again");
}

/// Four workers share a hundred sessions through one pull-wake subscription with a lease
/// per session: every message is answered exactly once. Then a worker killed mid-reply
/// loses its lease: the session gets `agent.lost` naming the reply within the lease TTL,
/// and another worker answers.
#[test]
fn a_pool_of_workers_answers_every_message_once_and_a_killed_ones_session_is_answered_again() {
    let dev = Dev::start(&[]);
    let mut pool = Pool {
        workers: Vec::new(),
    };
    for n in 1..=4 {
        pool.spawn(&dev, &format!("w{n}"), "5", "500");
    }
    wait_for(
        "the pool's subscription",
        std::time::Duration::from_secs(20),
        || {
            let reply = request(
                &dev,
                "GET /v1/stream/__ds/subscriptions/demo-agents HTTP/1.1",
                "",
            );
            reply.starts_with("HTTP/1.1 200").then_some(())
        },
    );
    // Every worker follows the wake stream before the messages come.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sessions: Vec<String> = (0..100).map(|i| format!("chat-{i:03}")).collect();
    for session in &sessions {
        post_user_message(&dev, session, "hello");
    }
    let answered = wait_for(
        "every session's reply",
        std::time::Duration::from_secs(90),
        || {
            let all: Vec<Vec<(String, bool)>> = sessions
                .iter()
                .map(|s| replies(&session_events(&dev, s)))
                .collect();
            all.iter()
                .all(|r| r.iter().any(|(_, done)| *done))
                .then_some(all)
        },
    );
    // Settled: nothing more arrives after every session has its reply.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for (session, before) in sessions.iter().zip(&answered) {
        let now = replies(&session_events(&dev, session));
        assert_eq!(now.len(), 1, "{session} was answered once, not {now:?}");
        assert_eq!(&now, before);
        let worker = now[0].0.split('_').nth(1).unwrap_or_default().to_owned();
        *by_worker.entry(worker).or_default() += 1;
    }
    assert!(
        by_worker.len() >= 2,
        "the pool shared the load: {by_worker:?}"
    );

    // Only a slow worker is left; it is killed while it writes.
    for n in 1..=4 {
        pool.kill(&format!("w{n}"));
    }
    pool.spawn(&dev, "slow", "400", "20");
    std::thread::sleep(std::time::Duration::from_millis(500));
    post_user_message(&dev, "chat-kill", "hello again");
    let lost_reply = wait_for(
        "the slow worker's reply",
        std::time::Duration::from_secs(20),
        || {
            let events = session_events(&dev, "chat-kill");
            let (id, _) = replies(&events).into_iter().next()?;
            let writing = events
                .iter()
                .any(|e| e["type"] == "message.delta" && e["id"] == id.as_str());
            writing.then_some(id)
        },
    );
    assert!(lost_reply.starts_with("m_slow_"), "{lost_reply}");
    pool.kill("slow");
    let killed = std::time::Instant::now();
    pool.spawn(&dev, "rescuer", "5", "500");
    let lost = wait_for("agent.lost", std::time::Duration::from_secs(10), || {
        session_events(&dev, "chat-kill")
            .into_iter()
            .find(|e| e["type"] == "agent.lost")
    });
    let elapsed = killed.elapsed();
    // Within the TTL of the last heartbeat, plus the sweep's interval, this poll's and slack
    // for a loaded machine.
    assert!(
        elapsed < std::time::Duration::from_millis(4_000 + 2_000),
        "after {elapsed:?}"
    );
    assert_eq!(
        lost["id"],
        lost_reply.as_str(),
        "it names the reply: {lost}"
    );
    assert_eq!(lost["data"]["worker"], "slow");
    let rescued = wait_for(
        "another worker's answer",
        std::time::Duration::from_secs(20),
        || {
            let now = replies(&session_events(&dev, "chat-kill"));
            now.iter()
                .any(|(id, done)| *done && id.starts_with("m_rescuer_"))
                .then_some(now)
        },
    );
    assert_eq!(
        rescued.len(),
        2,
        "the lost reply and one answer: {rescued:?}"
    );
    assert!(!rescued[0].1, "the lost reply never ended");
}
