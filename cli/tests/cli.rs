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
    for line in ["archiver   rate(1 minute)", "expiry     rate(1 minute)"] {
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
        stderr.contains("\"nightly\"") && stderr.contains("archiver, expiry"),
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
