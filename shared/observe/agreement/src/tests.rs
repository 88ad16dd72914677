//! Checks against the fixtures (values from krippendorff, statsmodels and scikit-learn), and
//! the properties the statistics must have.

use serde::Deserialize;

use super::*;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixtures {
    tables: Vec<Fixture>,
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
    scale: Scale,
    grades: Vec<(String, String, Value)>,
    #[serde(default)]
    published: std::collections::HashMap<String, f64>,
    #[serde(default)]
    scorer: Option<ScorerInput>,
    expected: Expected,
}

#[derive(Deserialize)]
struct ScorerInput {
    name: String,
    values: Vec<(String, Value)>,
}

#[derive(Deserialize)]
struct Expected {
    alpha_nominal: Option<f64>,
    #[serde(default)]
    alpha_ordinal: Option<f64>,
    #[serde(default)]
    alpha_interval: Option<f64>,
    fleiss: Option<f64>,
    pairwise: Vec<ExpectedPair>,
    mean_pairwise_kappa: Option<f64>,
    #[serde(default)]
    scorer: Option<ExpectedScorer>,
}

#[derive(Deserialize)]
struct ExpectedPair {
    a: String,
    b: String,
    items: usize,
    kappa: Option<f64>,
}

#[derive(Deserialize)]
struct ExpectedScorer {
    vs_consensus: Option<f64>,
    mean_kappa_with_graders: Option<f64>,
    leave_one_out: Vec<ExpectedLoo>,
    graders_vs_others_mean: Option<f64>,
    scorer_vs_others_mean: Option<f64>,
    alpha_graders: Option<f64>,
    alpha_with_scorer: Option<f64>,
}

#[derive(Deserialize)]
struct ExpectedLoo {
    grader: String,
    items: usize,
    grader_kappa: Option<f64>,
    scorer_kappa: Option<f64>,
}

fn fixtures() -> Vec<Fixture> {
    let text = include_str!("../fixtures/tables.json");
    match serde_json::from_str::<Fixtures>(text) {
        Ok(f) => f.tables,
        Err(e) => panic!("fixtures/tables.json: {e}"),
    }
}

fn table_of(name: &str, grades: &[(String, String, Value)]) -> GradeTable {
    let mut table = GradeTable::new(name);
    for (item, grader, value) in grades {
        table
            .add(item.clone(), grader.clone(), value.clone())
            .expect("fixture grade");
    }
    table
}

#[track_caller]
fn close(what: &str, got: &Estimate, want: Option<f64>) {
    match (got.value, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() < TOLERANCE, "{what}: got {g}, want {w}"),
        (None, None) => assert!(got.reason.is_some(), "{what}: undefined without a reason"),
        (g, w) => panic!("{what}: got {g:?} ({:?}), want {w:?}", got.reason),
    }
}

#[test]
fn every_statistic_matches_the_independent_implementations_to_1e_6() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 8, "{} fixture tables", fixtures.len());
    let options = Options {
        resamples: 0,
        ..Options::default()
    };
    for f in &fixtures {
        let table = table_of(&f.name, &f.grades);
        let got = agreement_with(&table, f.scale, &options).expect("agreement");
        let e = &f.expected;
        let name = &f.name;
        close(
            &format!("{name} alpha nominal"),
            &got.krippendorff_alpha_levels.nominal,
            e.alpha_nominal,
        );
        if f.scale == Scale::Ordinal {
            let levels = &got.krippendorff_alpha_levels;
            close(
                &format!("{name} alpha ordinal"),
                levels.ordinal.as_ref().expect("ordinal"),
                e.alpha_ordinal,
            );
            close(
                &format!("{name} alpha interval"),
                levels.interval.as_ref().expect("interval"),
                e.alpha_interval,
            );
            close(
                &format!("{name} alpha (scale)"),
                &got.krippendorff_alpha,
                e.alpha_ordinal,
            );
        } else {
            close(
                &format!("{name} alpha (scale)"),
                &got.krippendorff_alpha,
                e.alpha_nominal,
            );
        }
        close(&format!("{name} fleiss"), &got.fleiss_kappa, e.fleiss);
        assert_eq!(got.pairwise.len(), e.pairwise.len(), "{name} pairs");
        for (g, w) in got.pairwise.iter().zip(&e.pairwise) {
            assert_eq!((&g.a, &g.b, g.items), (&w.a, &w.b, w.items), "{name} pair");
            close(&format!("{name} kappa {}-{}", w.a, w.b), &g.kappa, w.kappa);
        }
        close(
            &format!("{name} mean pairwise"),
            &got.mean_pairwise_kappa,
            e.mean_pairwise_kappa,
        );

        // Published figures, to the digits they were published with.
        for (stat, want) in &f.published {
            let got = match stat.as_str() {
                "alpha_nominal" => got.krippendorff_alpha_levels.nominal.value,
                "alpha_ordinal" => got
                    .krippendorff_alpha_levels
                    .ordinal
                    .as_ref()
                    .and_then(|e| e.value),
                "alpha_interval" => got
                    .krippendorff_alpha_levels
                    .interval
                    .as_ref()
                    .and_then(|e| e.value),
                "fleiss" => got.fleiss_kappa.value,
                other => panic!("{name}: unknown published statistic {other}"),
            };
            let got = got.expect("published statistic defined");
            assert!(
                (got - want).abs() < 0.0005,
                "{name} {stat}: {got} vs published {want}"
            );
        }

        if let (Some(s), Some(want)) = (&f.scorer, &e.scorer) {
            let got =
                scorer_agreement(&table, &s.name, &s.values, f.scale, &options).expect("scorer");
            close(
                &format!("{name} scorer vs consensus"),
                &got.vs_consensus,
                want.vs_consensus,
            );
            close(
                &format!("{name} scorer with graders"),
                &got.mean_kappa_with_graders,
                want.mean_kappa_with_graders,
            );
            close(
                &format!("{name} graders pairwise"),
                &got.graders_mean_pairwise_kappa,
                e.mean_pairwise_kappa,
            );
            assert_eq!(got.leave_one_out.len(), want.leave_one_out.len());
            for (g, w) in got.leave_one_out.iter().zip(&want.leave_one_out) {
                assert_eq!(
                    (&g.grader, g.items),
                    (&w.grader, w.items),
                    "{name} leave-one-out"
                );
                close(
                    &format!("{name} loo grader {}", w.grader),
                    &g.grader_kappa,
                    w.grader_kappa,
                );
                close(
                    &format!("{name} loo scorer {}", w.grader),
                    &g.scorer_kappa,
                    w.scorer_kappa,
                );
            }
            close(
                &format!("{name} graders vs others"),
                &got.graders_vs_others_mean,
                want.graders_vs_others_mean,
            );
            close(
                &format!("{name} scorer vs others"),
                &got.scorer_vs_others_mean,
                want.scorer_vs_others_mean,
            );
            close(
                &format!("{name} alpha graders"),
                &got.alpha_graders,
                want.alpha_graders,
            );
            close(
                &format!("{name} alpha with scorer"),
                &got.alpha_with_scorer,
                want.alpha_with_scorer,
            );
        }
    }
}

fn grid(criterion: &str, rows: &[&[Option<f64>]]) -> GradeTable {
    let mut table = GradeTable::new(criterion);
    for (g, row) in rows.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            if let Some(v) = v {
                table
                    .add(format!("i{i}"), format!("g{g}"), Value::Number(*v))
                    .expect("grade");
            }
        }
    }
    table
}

#[test]
fn the_bootstrap_repeats_with_its_seed_and_brackets_the_estimate() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "ordinal-1-5-four-graders-missing")
        .expect("fixture");
    let table = table_of(&f.name, &f.grades);
    let first = agreement(&table, Scale::Ordinal).expect("agreement");
    let again = agreement(&table, Scale::Ordinal).expect("agreement");
    assert_eq!(first, again, "same seed, same intervals");
    let other = agreement_with(
        &table,
        Scale::Ordinal,
        &Options {
            seed: 15,
            ..Options::default()
        },
    )
    .expect("agreement");
    assert_ne!(
        first.krippendorff_alpha.ci, other.krippendorff_alpha.ci,
        "the seed is used"
    );
    for (what, est) in [
        ("alpha", &first.krippendorff_alpha),
        ("fleiss", &first.fleiss_kappa),
        ("mean pairwise", &first.mean_pairwise_kappa),
    ]
    .into_iter()
    .chain(first.pairwise.iter().map(|p| ("pair", &p.kappa)))
    {
        let (value, ci) = (est.value.expect("defined"), est.ci.expect("interval"));
        assert!(
            ci.low <= value && value <= ci.high,
            "{what}: {value} outside {ci:?}"
        );
        assert!(ci.low < ci.high, "{what}: empty interval {ci:?}");
        assert_eq!(ci.level, 0.95);
        assert!(ci.resamples > 900 && ci.resamples <= 1000, "{what}: {ci:?}");
    }
}

#[test]
fn perfect_agreement_is_one_on_every_statistic() {
    let row: &[Option<f64>] = &[
        Some(1.0),
        Some(2.0),
        Some(3.0),
        Some(3.0),
        Some(5.0),
        Some(1.0),
    ];
    let table = grid("c", &[row, row, row]);
    for scale in [Scale::Nominal, Scale::Ordinal, Scale::Interval] {
        let got = agreement(&table, scale).expect("agreement");
        assert_eq!(got.krippendorff_alpha.value, Some(1.0), "{scale}");
        assert_eq!(got.fleiss_kappa.value, Some(1.0), "{scale}");
        assert!(
            got.pairwise.iter().all(|p| p.kappa.value == Some(1.0)),
            "{scale}"
        );
        assert_eq!(got.disagreement_count, 0);
        let ci = got.krippendorff_alpha.ci.expect("interval");
        assert_eq!((ci.low, ci.high), (1.0, 1.0));
    }
}

#[test]
fn swapping_graders_or_relabelling_nominal_values_changes_nothing() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "four-labels-five-graders-missing")
        .expect("fixture");
    let options = Options {
        resamples: 0,
        ..Options::default()
    };
    let base = agreement_with(&table_of("c", &f.grades), Scale::Nominal, &options).expect("base");
    let relabelled: Vec<(String, String, Value)> = f
        .grades
        .iter()
        .rev()
        .map(|(i, g, v)| {
            (
                i.clone(),
                format!("x-{g}"),
                Value::Text(format!("label {v}")),
            )
        })
        .collect();
    let other =
        agreement_with(&table_of("c", &relabelled), Scale::Nominal, &options).expect("other");
    for (a, b) in [
        (&base.krippendorff_alpha, &other.krippendorff_alpha),
        (&base.fleiss_kappa, &other.fleiss_kappa),
        (&base.mean_pairwise_kappa, &other.mean_pairwise_kappa),
    ] {
        let (a, b) = (a.value.expect("a"), b.value.expect("b"));
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert_eq!(base.disagreement_count, other.disagreement_count);
}

#[test]
fn degenerate_tables_give_reasons_not_nan_or_panics() {
    // One category only.
    let same: &[Option<f64>] = &[Some(2.0), Some(2.0), Some(2.0)];
    let got = agreement(&grid("c", &[same, same]), Scale::Ordinal).expect("agreement");
    assert_eq!(got.krippendorff_alpha.value, None);
    assert_eq!(got.krippendorff_alpha.reason, Some(Undefined::NoVariation));
    assert_eq!(got.fleiss_kappa.reason, Some(Undefined::NoVariation));
    assert_eq!(got.pairwise[0].kappa.reason, Some(Undefined::NoVariation));
    assert_eq!(got.mean_pairwise_kappa.reason, Some(Undefined::NoVariation));

    // A single grader.
    let one = agreement(&grid("c", &[&[Some(1.0), Some(2.0)]]), Scale::Nominal).expect("agreement");
    assert_eq!(
        one.krippendorff_alpha.reason,
        Some(Undefined::FewerThanTwoGraders)
    );
    assert_eq!(
        one.fleiss_kappa.reason,
        Some(Undefined::FewerThanTwoGraders)
    );
    assert_eq!(
        one.mean_pairwise_kappa.reason,
        Some(Undefined::FewerThanTwoGraders)
    );
    assert!(one.pairwise.is_empty());

    // Two graders who never graded the same item.
    let apart = grid(
        "c",
        &[
            &[Some(1.0), Some(2.0), None, None],
            &[None, None, Some(1.0), Some(2.0)],
        ],
    );
    let got = agreement(&apart, Scale::Ordinal).expect("agreement");
    assert_eq!(got.pairwise[0].kappa.reason, Some(Undefined::NoOverlap));
    assert_eq!(got.pairwise[0].items, 0);
    assert_eq!(
        got.krippendorff_alpha.reason,
        Some(Undefined::NoPairableItems)
    );
    assert_eq!(got.fleiss_kappa.reason, Some(Undefined::NoPairableItems));
    assert_eq!(got.pairable_items, 0);

    // Nothing at all.
    let empty = agreement(&GradeTable::new("c"), Scale::Nominal).expect("agreement");
    assert_eq!(empty.items, 0);
    assert_eq!(
        empty.krippendorff_alpha.reason,
        Some(Undefined::FewerThanTwoGraders)
    );

    // No NaN anywhere in what is serialised.
    for got in [&got, &one, &empty] {
        let json = serde_json::to_string(got).expect("json");
        assert!(
            !json.contains("NaN") && !json.contains("null,\"reason\":null"),
            "{json}"
        );
    }
}

#[test]
fn bad_input_is_refused_and_leaves_the_table_as_it_was() {
    let mut table = GradeTable::new("c");
    table.add("i1", "g1", Value::Number(3.0)).expect("first");
    assert_eq!(
        table.add("i1", "g1", Value::Number(4.0)),
        Err(AgreementError::Duplicate {
            item: "i1".into(),
            grader: "g1".into()
        })
    );
    assert!(matches!(
        table.add("i2", "g1", Value::Number(f64::NAN)),
        Err(AgreementError::NotFinite { .. })
    ));
    assert_eq!(table.len(), 1);
    assert_eq!(table.items(), ["i1"]);
    assert_eq!(table.get("i1", "g1"), Some(&Value::Number(3.0)));

    table
        .add("i1", "g2", Value::Text("good".into()))
        .expect("label");
    let err = agreement(&table, Scale::Ordinal).expect_err("label on an ordinal scale");
    assert!(
        err.to_string().contains("\"good\" is not a number"),
        "{err}"
    );
    assert!(agreement(&table, Scale::Nominal).is_ok());
    let bad = Options {
        level: 1.5,
        ..Options::default()
    };
    assert!(matches!(
        agreement_with(&table, Scale::Nominal, &bad),
        Err(AgreementError::BadOption(_))
    ));
}

#[test]
fn disagreements_list_items_with_more_than_one_value_widest_first() {
    let table = grid(
        "c",
        &[
            &[Some(1.0), Some(2.0), Some(3.0), Some(1.0)],
            &[Some(1.0), Some(3.0), Some(3.0), Some(5.0)],
            &[None, Some(2.0), Some(3.0), None],
        ],
    );
    let got = agreement(&table, Scale::Ordinal).expect("agreement");
    let listed: Vec<(&str, Option<f64>)> = got
        .disagreements
        .iter()
        .map(|d| (d.item.as_str(), d.spread))
        .collect();
    assert_eq!(listed, [("i3", Some(4.0)), ("i1", Some(1.0))]);
    assert_eq!(got.disagreement_count, 2);
    assert_eq!(got.disagreements[1].values.len(), 3);
    let nominal = agreement(&table, Scale::Nominal).expect("agreement");
    let items: Vec<&str> = nominal
        .disagreements
        .iter()
        .map(|d| d.item.as_str())
        .collect();
    assert_eq!(items, ["i1", "i3"], "item order, no spread");
    assert!(nominal.disagreements.iter().all(|d| d.spread.is_none()));
}

#[test]
fn consensus_ties_go_to_the_first_value_and_the_lower_median() {
    // Two graders: i0 split 1/3 (tie), i1 split 5/4.
    let table = grid("c", &[&[Some(1.0), Some(5.0)], &[Some(3.0), Some(4.0)]]);
    let d = Dense::build(&table, None, Scale::Ordinal).expect("dense");
    let value = |c: Option<u32>| c.map(|c| d.categories[c as usize].clone());
    for scale in [Scale::Nominal, Scale::Ordinal] {
        assert_eq!(
            value(stats::consensus(&d, 0, &[0, 1], scale)),
            Some(Value::Number(1.0))
        );
        assert_eq!(
            value(stats::consensus(&d, 1, &[0, 1], scale)),
            Some(Value::Number(4.0))
        );
    }
    assert_eq!(stats::consensus(&d, 0, &[], Scale::Nominal), None);
}

#[test]
fn a_scorer_that_copies_the_consensus_agrees_perfectly() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "ordinal-three-graders-and-a-scorer")
        .expect("fixture");
    let table = table_of(&f.name, &f.grades);
    let d = Dense::build(&table, None, Scale::Ordinal).expect("dense");
    let columns: Vec<usize> = (0..table.graders().len()).collect();
    let copy: Vec<(String, Value)> = (0..d.items.len())
        .filter_map(|i| {
            let c = stats::consensus(&d, i, &columns, Scale::Ordinal)?;
            Some((d.items[i].clone(), d.categories[c as usize].clone()))
        })
        .collect();
    let got = scorer_agreement(&table, "copy", &copy, Scale::Ordinal, &Options::default())
        .expect("scorer");
    assert_eq!(got.vs_consensus.value, Some(1.0));
    assert_eq!(got.items, table.items().len());
    let ci = got.vs_consensus.ci.expect("interval");
    assert_eq!((ci.low, ci.high), (1.0, 1.0));
}

#[test]
fn a_scorer_that_copies_a_grader_is_trusted_and_one_that_contradicts_them_is_not() {
    // Three graders on pass/fail: g1 and g2 copy g0 except one item each.
    let g0 = [
        "pass", "fail", "pass", "pass", "fail", "pass", "fail", "fail",
    ];
    let mut table = GradeTable::new("c");
    for (i, v) in g0.iter().enumerate() {
        let flip = |v: &str| if v == "pass" { "fail" } else { "pass" };
        for (g, value) in [
            ("g0", *v),
            ("g1", if i == 1 { flip(v) } else { v }),
            ("g2", if i == 4 { flip(v) } else { v }),
        ] {
            table
                .add(format!("i{i}"), g, Value::Text(value.to_string()))
                .expect("grade");
        }
    }
    let scored = |f: &dyn Fn(&'static str) -> &'static str| -> Vec<(String, Value)> {
        g0.iter()
            .enumerate()
            .map(|(i, v)| (format!("i{i}"), Value::Text(f(v).to_string())))
            .collect()
    };
    let options = Options {
        resamples: 0,
        ..Options::default()
    };
    let copy = scored(&|v| v);
    let got = scorer_agreement(&table, "copy", &copy, Scale::Nominal, &options).expect("copy");
    assert_eq!(got.trusted, Some(true), "{got:?}");

    let opposite = scored(&|v| if v == "pass" { "fail" } else { "pass" });
    let got =
        scorer_agreement(&table, "opposite", &opposite, Scale::Nominal, &options).expect("opp");
    assert!(
        got.scorer_vs_others_mean.value < got.graders_vs_others_mean.value,
        "{got:?}"
    );
    assert_eq!(got.trusted, Some(false));

    // One grader: no leave-one-out consensus, so no verdict either way.
    let mut alone = GradeTable::new("c");
    for (i, v) in g0.iter().enumerate() {
        alone
            .add(format!("i{i}"), "g0", Value::Text(v.to_string()))
            .expect("grade");
    }
    let got = scorer_agreement(&alone, "copy", &copy, Scale::Nominal, &options).expect("alone");
    assert_eq!(got.trusted, None);
}
