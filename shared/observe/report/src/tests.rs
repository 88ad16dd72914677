use super::*;
use agentwire_evals::run::{Metric, Mode, RunSpec, Summary};
use agentwire_evals::stats::Interval;

fn run(id: &str, facts: f64) -> Run {
    Run {
        spec: RunSpec {
            id: id.into(),
            tenant: "acme".into(),
            dataset: "smoke".into(),
            version: 1,
            mode: Mode::Live,
            pattern: Some("eval-*".into()),
            timeout_ms: 1000,
            concurrency: 1,
            label: Some("<b>v2</b>".into()),
            origin: "api".into(),
            created_ms: 1_764_633_600_000,
        },
        status: Status::Finished,
        items: 2,
        error: None,
        finished_ms: None,
        summary: Some(Summary {
            answered: 2,
            metrics: vec![Metric {
                name: "reference.facts".into(),
                n: 2,
                mean: facts,
                ci: Interval {
                    low: facts / 2.0,
                    high: 1.0,
                },
                passed: Some(1),
            }],
            ..Summary::default()
        }),
    }
}

#[test]
fn a_report_shows_the_measures_plots_and_escapes_what_people_wrote() {
    let history = [run("r1", 1.0), run("r2", 0.5)];
    let comparison = agentwire_evals::compare(&history[0], &[], &history[1], &[], 0.1);
    let html = render(&history[1], &[], Some(&comparison), &history);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("Eval run r2") && html.contains("smoke@1"));
    assert!(
        html.contains("&lt;b&gt;v2&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;v2&lt;/b&gt;"),
        "the label is escaped"
    );
    assert!(!html.contains("<b>v2</b>"));
    assert_eq!(
        html.matches("<svg role=\"img\"").count(),
        2,
        "the measures and the trend"
    );
    assert!(html.contains("aria-label=\"Means with 95 % intervals of reference.facts\""));
    assert!(html.contains("previous finished run of this dataset, <b>r1</b>"));
    // Alone, a run has no baseline and no trend.
    let alone = render(&history[0], &[], None, &history[..1]);
    assert_eq!(alone.matches("<svg role=\"img\"").count(), 1);
    assert!(alone.contains("No earlier finished run"));
}

#[tokio::test]
async fn each_finished_run_is_reported_against_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = EvalStore::new(std::sync::Arc::new(agentwire_fs::DirTraceArchive::new(
        dir.path(),
    )));
    for r in [
        run("20261201-000000-0001", 1.0),
        run("20261202-000000-0002", 0.5),
    ] {
        assert!(store.create_run(&r).await.unwrap());
    }
    let latest = store
        .run("acme", "20261202-000000-0002")
        .await
        .unwrap()
        .unwrap();
    RunReports.finished(&store, &latest).await;
    let html = String::from_utf8(
        store
            .report("acme", "20261202-000000-0002")
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        html.contains("<b>20261201-000000-0001</b>"),
        "the previous run is the baseline"
    );
    assert!(html.contains("Over the last 2 runs"));
}
