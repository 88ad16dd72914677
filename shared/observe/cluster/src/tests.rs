//! Nights of synthetic requests: families of differently worded requests about one thing,
//! with names, numbers and filler varying, so clusters are found the way real ones are.

use std::collections::{BTreeMap, HashSet};

use crate::features::tfidf;
use crate::night::{Doc, Night, Outcome, Previous, Settings, Status, View, cluster_night};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Each family is one way of asking, with the order number, the sender's name and the
/// words around it varying: what the local TF-IDF groups (it sees wording, not meaning).
const FAMILIES: &[(&str, &[&str])] = &[
    (
        "refund",
        &[
            "I want a refund for order {n} it arrived broken",
            "I want a refund for order {n} it arrived broken today",
        ],
    ),
    (
        "flight",
        &[
            "change my flight {n} to next Tuesday morning",
            "change my flight {n} to next Tuesday morning if possible",
        ],
    ),
    (
        "baggage",
        &[
            "how many checked bags can I bring on booking {n}",
            "how many checked bags can I bring on booking {n} tomorrow",
        ],
    ),
    (
        "invoice",
        &[
            "send me the VAT invoice for payment {n}",
            "send me the VAT invoice for payment {n} by email",
        ],
    ),
    (
        "shipping",
        &[
            "where is my package {n} tracking shows nothing",
            "where is my package {n} tracking shows nothing since Monday",
        ],
    ),
    (
        "cancel",
        &[
            "cancel my subscription {n} and stop charging me",
            "cancel my subscription {n} and stop charging me now",
        ],
    ),
];

const NEW_FAMILY: &[&str] = &[
    "password reset for account {n} the reset email never arrives",
    "password reset for account {n} the reset email never arrives again",
];

/// Names: each rare across a night, as the words people add around a request are.
const NAMES: &[&str] = &[
    "Ana", "Omar", "Li", "Sofia", "Raj", "Chen", "Maria", "Yusuf", "Ines", "Kofi", "Lena", "Tomas",
    "Aiko", "Priya", "Jonas", "Mina", "Pavel", "Zara", "Eli", "Noor", "Hugo", "Ada", "Ravi",
    "Olga", "Sami", "Iris", "Luca", "Nia", "Theo", "Vera", "Amir", "Cleo", "Dara", "Emil", "Faye",
    "Gus", "Hana", "Ivo", "Juno", "Kai",
];

fn doc(rng: &mut Rng, family: &str, templates: &[&str], i: usize) -> (Doc, &'static str) {
    let n = format!("{}", 1000 + rng.next() % 9000);
    let text = match rng.next() % 3 {
        0 => rng.pick(templates).replace("{n}", &n),
        1 => format!(
            "{} regards {}",
            rng.pick(templates).replace("{n}", &n),
            rng.pick(NAMES)
        ),
        _ => format!(
            "I am {} {}",
            rng.pick(NAMES),
            rng.pick(templates).replace("{n}", &n)
        ),
    };
    let failed = rng.next().is_multiple_of(4);
    (
        Doc {
            session: format!("{family}-{i}-{}", rng.next() % 100_000),
            trace_id: format!("{:032x}", rng.next()),
            text,
            scores: BTreeMap::from([("health".to_owned(), if failed { 0.0 } else { 1.0 })]),
            failed,
        },
        "",
    )
}

fn night_of(rng: &mut Rng, per_family: usize) -> Vec<(Doc, String)> {
    let mut out = Vec::new();
    for (family, templates) in FAMILIES {
        for i in 0..per_family {
            out.push((doc(rng, family, templates, i).0, family.to_string()));
        }
    }
    out
}

fn run(day: &str, docs: &[(Doc, String)], previous: &Previous) -> Outcome {
    let docs: Vec<Doc> = docs.iter().map(|(d, _)| d.clone()).collect();
    let texts: Vec<String> = docs.iter().map(|d| d.text.clone()).collect();
    let night = Night {
        day: day.into(),
        tenant: "t".into(),
        view: View::Requests,
        embedding: "tfidf".into(),
    };
    cluster_night(
        &night,
        &docs,
        &tfidf(&texts),
        previous,
        &Settings::default(),
    )
}

/// The share of each family's traces in the family's most common cluster.
fn purity(outcome: &Outcome, docs: &[(Doc, String)]) -> f64 {
    let mut by_family: BTreeMap<&str, BTreeMap<Option<&str>, usize>> = BTreeMap::new();
    for (m, (_, family)) in outcome.members.iter().zip(docs) {
        *by_family
            .entry(family)
            .or_default()
            .entry(m.cluster.as_deref())
            .or_default() += 1;
    }
    let top: usize = by_family
        .values()
        .map(|c| {
            c.iter()
                .filter(|(k, _)| k.is_some())
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0)
        })
        .sum();
    top as f64 / docs.len() as f64
}

#[test]
fn families_of_requests_come_out_as_clusters_with_distinctive_labels() {
    let mut rng = Rng(0x1234_5678);
    let docs = night_of(&mut rng, 50);
    let outcome = run("2026-11-01", &docs, &Previous::default());
    let live: Vec<_> = outcome.clusters.iter().filter(|c| c.size > 0).collect();
    assert!(live.len() >= FAMILIES.len(), "{} clusters", live.len());
    assert!(
        purity(&outcome, &docs) >= 0.8,
        "purity {}",
        purity(&outcome, &docs)
    );
    // The largest cluster of refund requests is labelled by what they share.
    let refund = outcome
        .clusters
        .iter()
        .max_by_key(|c| {
            c.representatives
                .iter()
                .filter(|r| r.session.starts_with("refund"))
                .count()
                * 1000
                + c.size
        })
        .unwrap();
    assert!(
        refund
            .terms
            .iter()
            .any(|t| t.contains("refund") || t.contains("order")),
        "{:?}",
        refund.terms
    );
    // Every figure is from the members: the failure rate is the failed share.
    for c in &live {
        let members: Vec<_> = outcome
            .members
            .iter()
            .filter(|m| m.cluster.as_deref() == Some(&c.id))
            .collect();
        assert_eq!(members.len(), c.size);
        let failed = members.iter().filter(|m| m.failed).count() as f64 / c.size as f64;
        assert!((failed - c.failure_rate).abs() < 1e-9);
        assert_eq!(c.status, Status::New);
    }
}

#[test]
fn night_two_keeps_nine_in_ten_ids_and_a_new_family_is_a_new_cluster() {
    let mut rng = Rng(0xfeed_beef);
    let night1 = night_of(&mut rng, 50);
    let first = run("2026-11-01", &night1, &Previous::default());
    let ids1: HashSet<&str> = first
        .clusters
        .iter()
        .filter(|c| c.size > 0)
        .map(|c| c.id.as_str())
        .collect();

    // Night 2: night 1's traces with 10 % replaced by a family never seen before.
    let replaced = night1.len() / 10;
    let mut night2: Vec<(Doc, String)> = night1.clone();
    let mut gone = HashSet::new();
    while gone.len() < replaced {
        gone.insert((rng.next() % night1.len() as u64) as usize);
    }
    night2 = night2
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, d)| d)
        .collect();
    for i in 0..replaced {
        night2.push((doc(&mut rng, "locked", NEW_FAMILY, i).0, "locked".into()));
    }
    let previous = Previous {
        clusters: first.clusters.clone(),
        members: first.members.clone(),
    };
    let second = run("2026-11-02", &night2, &previous);
    let ids2: HashSet<&str> = second
        .clusters
        .iter()
        .filter(|c| c.size > 0)
        .map(|c| c.id.as_str())
        .collect();
    let kept = ids1.intersection(&ids2).count() as f64 / ids1.len() as f64;
    assert!(kept >= 0.9, "kept {kept}: {ids1:?} -> {ids2:?}");

    // The new family: most of its traces in one cluster, flagged new, made mostly of them.
    let locked: Vec<_> = second
        .members
        .iter()
        .filter(|m| m.session.starts_with("locked"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &locked {
        if let Some(c) = &m.cluster {
            *counts.entry(c).or_default() += 1;
        }
    }
    let (id, n) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("the new family is clustered");
    assert!(
        *n as f64 >= 0.7 * locked.len() as f64,
        "{counts:?} of {}",
        locked.len()
    );
    let cluster = second.clusters.iter().find(|c| c.id == *id).unwrap();
    assert_eq!(cluster.status, Status::New, "{cluster:?}");
    assert!(!ids1.contains(id));
    assert!(
        *n as f64 >= 0.8 * cluster.size as f64,
        "the new cluster is the new family"
    );
    assert!(
        locked
            .iter()
            .filter(|m| m.cluster.as_deref() == Some(id))
            .all(|m| m.new)
    );
    // Kept clusters say what they were the night before.
    let kept_one = second
        .clusters
        .iter()
        .find(|c| c.status == Status::Kept)
        .unwrap();
    assert_eq!(kept_one.previous.as_ref().unwrap().day, "2026-11-01");
    assert_eq!(kept_one.history.len(), 2);
    assert_eq!(kept_one.matched_by.as_deref(), Some("members"));
}

#[test]
fn the_same_families_with_all_new_traces_keep_their_ids_by_centroid() {
    let mut rng = Rng(0xabcdef);
    let night1 = night_of(&mut rng, 50);
    let first = run("2026-11-01", &night1, &Previous::default());
    let night2 = night_of(&mut rng, 50);
    let previous = Previous {
        clusters: first.clusters.clone(),
        members: first.members.clone(),
    };
    let second = run("2026-11-02", &night2, &previous);
    let live1: Vec<_> = first.clusters.iter().filter(|c| c.size > 0).collect();
    let kept: Vec<_> = second
        .clusters
        .iter()
        .filter(|c| c.status == Status::Kept)
        .collect();
    assert!(
        kept.len() as f64 >= 0.8 * live1.len() as f64,
        "{} of {}",
        kept.len(),
        live1.len()
    );
    assert!(
        kept.iter()
            .all(|c| c.matched_by.as_deref() == Some("centroid"))
    );
    // A previous cluster nothing continues is reported gone, not dropped.
    let gone = second
        .clusters
        .iter()
        .filter(|c| c.status == Status::Gone)
        .count();
    let continued = kept.len();
    assert_eq!(continued + gone, live1.len());
}

#[test]
fn beyond_the_sample_rows_are_assigned_and_the_night_says_how_many_were_clustered() {
    let mut rng = Rng(42);
    let docs = night_of(&mut rng, 100);
    let texts: Vec<String> = docs.iter().map(|(d, _)| d.text.clone()).collect();
    let plain: Vec<Doc> = docs.iter().map(|(d, _)| d.clone()).collect();
    let night = Night {
        day: "2026-11-01".into(),
        tenant: "t".into(),
        view: View::Requests,
        embedding: "tfidf".into(),
    };
    let settings = Settings {
        sample: 200,
        ..Settings::default()
    };
    let outcome = cluster_night(
        &night,
        &plain,
        &tfidf(&texts),
        &Previous::default(),
        &settings,
    );
    let c = outcome.clusters.iter().find(|c| c.size > 0).unwrap();
    assert_eq!((c.traces, c.sampled), (600, 200));
    assert!(
        purity(&outcome, &docs) >= 0.7,
        "purity {}",
        purity(&outcome, &docs)
    );
}
