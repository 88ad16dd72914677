//! `agentwire eval` against `agentwire dev` and a pool of demo agents serving `eval-*`:
//! a dataset run twice through the real agent, compared, and gated.

use std::collections::BTreeSet;
use std::process::{Child, Output, Stdio};

use super::{Dev, agentwire};

/// A pool of one demo agent serving the eval sessions, killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(dev: &Dev, extra: &[&str]) -> Agent {
        let child = agentwire()
            .args(["demo-agent", "--pattern", "eval-*", "--pool", "evals"])
            .args(["--tokens", "40", "--rate", "2000", "--linger-ms", "5"])
            .args(extra)
            .arg("--url")
            .arg(format!("http://{}", dev.addr))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run agentwire demo-agent");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn eval(dev: &Dev, args: &[&str]) -> Output {
    agentwire()
        .arg("eval")
        .args(args)
        .arg("--url")
        .arg(format!("http://{}", dev.addr))
        .env("RUST_LOG", "error")
        .output()
        .expect("run agentwire eval")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run id a finished `eval run` printed (`run <id> of <dataset>@<v>: …`).
fn run_id(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no run line in {stdout}"))
}

const FRUITS: [&str; 20] = [
    "apples", "pears", "plums", "figs", "dates", "limes", "kiwis", "mangos", "grapes", "melons",
    "lemons", "cherries", "peaches", "guavas", "papayas", "lychees", "quinces", "olives",
    "apricots", "oranges",
];

/// Every fourth item (q01, q05, …) asks a "tricky" question: the subset the worse agent
/// answers badly.
fn dataset() -> (String, BTreeSet<String>) {
    let mut lines = String::new();
    let mut tricky = BTreeSet::new();
    for (i, fruit) in FRUITS.iter().enumerate() {
        let id = format!("q{i:02}");
        let hard = i % 4 == 1;
        if hard {
            tricky.insert(id.clone());
        }
        let question = format!(
            "Tell me about {fruit}{}",
            if hard { " (tricky)" } else { "" }
        );
        let item = serde_json::json!({"id": id, "input": question, "expected": {"facts": [fruit]}});
        lines.push_str(&format!("{item}\n"));
    }
    (lines, tricky)
}

#[test]
fn a_dataset_run_twice_through_the_pool_reports_the_worse_subset_and_the_gate_fails_on_it() {
    let dev = Dev::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (lines, tricky) = dataset();
    let file = dir.path().join("smoke.jsonl");
    std::fs::write(&file, lines).expect("write");
    let pushed = eval(&dev, &["dataset", "push", "smoke", file.to_str().unwrap()]);
    assert_eq!(
        text(&pushed.stdout).trim(),
        "dataset smoke@1: 20 items",
        "{}",
        text(&pushed.stderr)
    );

    let live = [
        "--dataset",
        "smoke",
        "--pattern",
        "eval-*",
        "--timeout-ms",
        "30000",
    ];
    let baseline = {
        let _agent = Agent::start(&dev, &[]);
        let out = eval(
            &dev,
            &[
                &["run"][..],
                &live,
                &["--fail-if", "reference.facts.mean < 0.99"],
            ]
            .concat(),
        );
        assert!(
            text(&out.stderr).contains("gate passed"),
            "{}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("20 answered, 0 timed out, 0 errors"),
            "{stdout}"
        );
        run_id(&out)
    };
    let candidate = {
        let _agent = Agent::start(&dev, &["--worse-on", "tricky"]);
        run_id(&eval(
            &dev,
            &[&["run"][..], &live, &["--label", "worse"]].concat(),
        ))
    };

    // The comparison names exactly the tricky items as regressions, and nothing better.
    let out = eval(&dev, &["compare", &baseline, &candidate, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let comparison: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let facts = comparison["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "reference.facts")
        .expect("the facts measure");
    let regressed: BTreeSet<String> = facts["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(regressed, tricky);
    assert_eq!(facts["improvements"].as_array().unwrap().len(), 0);
    assert_eq!(
        (facts["a"]["mean"].as_f64(), facts["b"]["mean"].as_f64()),
        (Some(1.0), Some(0.75))
    );
    assert!(
        facts["regressions"][0]["b_trace"]
            .as_str()
            .is_some_and(|t| t.len() == 32)
    );

    // The gate fails with its reason on one line; on the baseline alone it passes.
    let gated = eval(
        &dev,
        &[
            "compare",
            &baseline,
            &candidate,
            "--fail-if-regressed",
            "reference.facts",
        ],
    );
    assert_eq!(gated.status.code(), Some(1));
    assert_eq!(
        text(&gated.stderr).trim(),
        "gate failed: reference.facts regressed on 5 of 20 items (q01, q05, q09, q13, q17): mean 1.000 -> 0.750"
    );
    let floor = eval(
        &dev,
        &[
            "compare",
            &baseline,
            &candidate,
            "--fail-if",
            "reference.facts.mean < 0.8",
        ],
    );
    assert_eq!(floor.status.code(), Some(1));
    assert!(
        text(&floor.stderr).contains("reference.facts.mean is 0.750"),
        "{}",
        text(&floor.stderr)
    );
    let same = eval(
        &dev,
        &[
            "compare",
            &baseline,
            &baseline,
            "--fail-if-regressed",
            "reference.facts",
        ],
    );
    assert!(same.status.success(), "{}", text(&same.stderr));

    // The candidate's report page shows the same regressions, against the baseline.
    let page = dir.path().join("report.html");
    let saved = eval(
        &dev,
        &["report", &candidate, "--out", page.to_str().unwrap()],
    );
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let html = std::fs::read_to_string(&page).expect("the report");
    assert!(
        html.contains(&format!("<b>{baseline}</b>")),
        "the baseline is named"
    );
    assert!(html.contains("Items that got worse (5)"), "{html}");
    for item in &tricky {
        assert!(
            html.contains(&format!("<th scope=\"row\">{item}</th>")),
            "{item}"
        );
    }

    // Production traces picked by a score filter become a dataset to replay: the eval
    // sessions' traces, scored by the production scorers as they were archived.
    let picked = super::wait_for(
        "the 40 traces scored",
        std::time::Duration::from_secs(30),
        || {
            let out = eval(
                &dev,
                &[
                    "dataset",
                    "from-traces",
                    "picked",
                    "--score-name",
                    "tool_use",
                ],
            );
            let said = text(&out.stdout);
            said.contains(": 40 items").then_some(said)
        },
    );
    assert!(picked.starts_with("dataset picked@"), "{picked}");
    let replayed = eval(&dev, &["run", "--dataset", "picked", "--replay"]);
    let stdout = text(&replayed.stdout);
    assert!(
        replayed.status.success() && stdout.contains("40 answered"),
        "{stdout}"
    );
}

#[test]
fn the_evals_job_runs_a_scheduled_eval_under_agentwire_dev_and_reports_it() {
    let dev = Dev::start(&["--evals-every-seconds", "1"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("smoke.jsonl");
    std::fs::write(&file, dataset().0).expect("write");
    assert!(
        eval(
            &dev,
            &["dataset", "push", "nightly-smoke", file.to_str().unwrap()]
        )
        .status
        .success()
    );
    let _agent = Agent::start(&dev, &[]);
    let config = dev._dir.path().join("config/tenant=local");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("evals.toml"),
        "[[eval]]\nname = \"smoke\"\ndataset = \"nightly-smoke\"\npattern = \"eval-*\"\ntimeout_ms = 30000\n",
    )
    .expect("write");
    let run = super::wait_for(
        "the scheduled run",
        std::time::Duration::from_secs(60),
        || {
            let runs = text(&eval(&dev, &["runs"]).stdout);
            let line = runs
                .lines()
                .find(|l| l.contains(" finished ") && l.contains("nightly smoke"))?;
            line.split(' ').next().map(str::to_owned)
        },
    );
    // Once a day: later ticks start no other run.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(text(&eval(&dev, &["runs"]).stdout).lines().count(), 1);
    let page = dir.path().join("nightly.html");
    assert!(
        eval(&dev, &["report", &run, "--out", page.to_str().unwrap()])
            .status
            .success()
    );
    let html = std::fs::read_to_string(&page).expect("the report");
    assert!(
        html.contains("nightly-smoke@1")
            && html.contains("“nightly smoke”")
            && html.contains("(nightly)"),
        "{html}"
    );
    assert!(html.contains("<svg role=\"img\""), "a plot");
}

#[test]
fn bad_datasets_unknown_versions_and_a_pattern_no_agent_serves_are_named() {
    let dev = Dev::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"a\", \"input\": \"x\"}\n\"just a string\"\n",
    )
    .expect("write");
    let out = eval(&dev, &["dataset", "push", "broken", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("dataset broken: line 2: not an item"),
        "{stderr}"
    );
    let listed = eval(&dev, &["dataset", "list"]);
    assert_eq!(text(&listed.stdout), "", "nothing was stored");

    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"id\": \"a\", \"input\": \"hello\"}\n{\"id\": \"b\", \"input\": \"there\"}\n",
    )
    .expect("write");
    assert!(
        eval(&dev, &["dataset", "push", "two", good.to_str().unwrap()])
            .status
            .success()
    );
    for (dataset, says) in [
        ("nope", "dataset \"nope\" does not exist"),
        ("two@9", "dataset two@9 does not exist"),
    ] {
        let out = eval(&dev, &["run", "--dataset", dataset, "--pattern", "eval-*"]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    let out = eval(&dev, &["run", "--dataset", "two", "--pattern", "eval"]);
    assert!(
        text(&out.stderr).contains("must hold exactly one *"),
        "{}",
        text(&out.stderr)
    );

    // No agent serves `nobody-*`: the run fails after the first items' timeout, saying so.
    let out = eval(
        &dev,
        &[
            "run",
            "--dataset",
            "two",
            "--pattern",
            "nobody-*",
            "--timeout-ms",
            "1000",
            "--concurrency",
            "2",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("failed: no agent answered") && stderr.contains("\"nobody-*\""),
        "{stderr}"
    );
    let runs = text(&eval(&dev, &["runs"]).stdout);
    assert!(
        runs.contains(" failed ") && !runs.contains(" finished "),
        "{runs}"
    );
}
