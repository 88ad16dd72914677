//! The `agentwire` command line: help, and clear errors for bad settings.

use std::process::Command;

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
        stderr.contains("\"nightly\"") && stderr.contains("archiver, rescore, expiry"),
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
    assert!(stderr.contains("admin or ingest"), "{stderr}");
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
    let out = agentwire()
        .args(["import", "ragtruth", "--responses"])
        .arg(&responses)
        .arg("--sources")
        .arg(&sources)
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run agentwire");
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
