//! `agentwire-quality clusters`: how well `agentwire cluster` separates the datasets' own
//! categories. Reads its `--out` (one line per trace: `session`, `cluster`) and the dataset
//! file the traces were imported from, and prints the adjusted Rand index and V-measure
//! against each category, over every trace (noise as one more cluster) and over the
//! clustered ones, beside a baseline: the same cluster sizes assigned at random.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Debug, Parser)]
pub struct Args {
    /// `agentwire cluster --out` of the imported traces.
    #[arg(long)]
    members: PathBuf,
    /// tau-bench's trajectories file (sessions `tau-<task>-<trial>`).
    #[arg(long)]
    tau_bench: Option<PathBuf>,
    /// RAGTruth's responses file (sessions `ragtruth-<id>`).
    #[arg(long)]
    ragtruth: Option<PathBuf>,
    /// A heading for the table.
    #[arg(long, default_value = "")]
    title: String,
}

/// Read-only tools: what a tau-bench task does is the set of tools that change things.
const LOOKUPS: &[&str] = &[
    "get_user_details",
    "get_reservation_details",
    "search_direct_flight",
    "search_onestop_flight",
    "list_all_airports",
    "calculate",
    "think",
    "get_flight_status",
];

fn categories(args: &Args) -> anyhow::Result<Vec<(String, HashMap<String, String>)>> {
    if let Some(path) = &args.tau_bench {
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path)?)?;
        let mut kind = HashMap::new();
        let mut task = HashMap::new();
        for r in &runs {
            let session = format!("tau-{}-{}", r["task_id"], r["trial"]);
            let mut names: Vec<&str> = r["info"]["task"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["name"].as_str())
                .filter(|n| !LOOKUPS.contains(n))
                .collect();
            names.sort();
            names.dedup();
            let k = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join("+")
            };
            kind.insert(session.clone(), k);
            task.insert(session, r["task_id"].to_string());
        }
        return Ok(vec![
            ("task kind (write actions)".into(), kind),
            ("task".into(), task),
        ]);
    }
    if let Some(path) = &args.ragtruth {
        let text = std::fs::read_to_string(path)?;
        let mut question = HashMap::new();
        let mut model = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let r: serde_json::Value = serde_json::from_str(line)?;
            let session = format!("ragtruth-{}", r["id"].as_str().unwrap_or_default());
            question.insert(session.clone(), r["source_id"].to_string());
            model.insert(session, r["model"].to_string());
        }
        return Ok(vec![
            ("source question".into(), question),
            ("model".into(), model),
        ]);
    }
    bail!("give --tau-bench FILE or --ragtruth FILE")
}

fn choose2(n: usize) -> f64 {
    (n as f64) * (n as f64 - 1.0) / 2.0
}

/// Adjusted Rand index of two labelings of the same items.
pub fn adjusted_rand(a: &[usize], b: &[usize]) -> f64 {
    let mut table: HashMap<(usize, usize), usize> = HashMap::new();
    let mut ra: HashMap<usize, usize> = HashMap::new();
    let mut rb: HashMap<usize, usize> = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *table.entry((*x, *y)).or_default() += 1;
        *ra.entry(*x).or_default() += 1;
        *rb.entry(*y).or_default() += 1;
    }
    let index: f64 = table.values().map(|n| choose2(*n)).sum();
    let sa: f64 = ra.values().map(|n| choose2(*n)).sum();
    let sb: f64 = rb.values().map(|n| choose2(*n)).sum();
    let expected = sa * sb / choose2(a.len()).max(1.0);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        0.0
    } else {
        (index - expected) / (max - expected)
    }
}

fn entropy(counts: impl Iterator<Item = usize>, n: f64) -> f64 {
    counts
        .filter(|c| *c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// V-measure (harmonic mean of homogeneity and completeness) of `clusters` against `classes`.
pub fn v_measure(classes: &[usize], clusters: &[usize]) -> f64 {
    let n = classes.len() as f64;
    let mut joint: HashMap<(usize, usize), usize> = HashMap::new();
    let mut cc: HashMap<usize, usize> = HashMap::new();
    let mut kk: HashMap<usize, usize> = HashMap::new();
    for (c, k) in classes.iter().zip(clusters) {
        *joint.entry((*c, *k)).or_default() += 1;
        *cc.entry(*c).or_default() += 1;
        *kk.entry(*k).or_default() += 1;
    }
    let h_c = entropy(cc.values().copied(), n);
    let h_k = entropy(kk.values().copied(), n);
    let h_c_given_k: f64 = joint
        .iter()
        .map(|((_, k), nck)| {
            let p = *nck as f64 / n;
            -p * (*nck as f64 / kk[k] as f64).ln()
        })
        .sum();
    let h_k_given_c: f64 = joint
        .iter()
        .map(|((c, _), nck)| {
            let p = *nck as f64 / n;
            -p * (*nck as f64 / cc[c] as f64).ln()
        })
        .sum();
    let homogeneity = if h_c == 0.0 {
        1.0
    } else {
        1.0 - h_c_given_k / h_c
    };
    let completeness = if h_k == 0.0 {
        1.0
    } else {
        1.0 - h_k_given_c / h_k
    };
    if homogeneity + completeness == 0.0 {
        0.0
    } else {
        2.0 * homogeneity * completeness / (homogeneity + completeness)
    }
}

fn numbered(labels: &[&str]) -> Vec<usize> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    labels
        .iter()
        .map(|l| {
            let next = ids.len();
            *ids.entry(*l).or_insert(next)
        })
        .collect()
}

/// The same multiset of labels in a shuffled order (a fixed seed): what chance scores.
fn shuffled(labels: &[usize]) -> Vec<usize> {
    let mut out = labels.to_vec();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.members)
        .with_context(|| format!("reading {}", args.members.display()))?;
    let mut members: Vec<(String, String)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: serde_json::Value = serde_json::from_str(line)?;
        let session = m["session"].as_str().unwrap_or_default().to_owned();
        let cluster = m["cluster"].as_str().unwrap_or("noise").to_owned();
        members.push((session, cluster));
    }
    let clusters = members
        .iter()
        .filter(|m| m.1 != "noise")
        .map(|m| &m.1)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let noise = members.iter().filter(|m| m.1 == "noise").count();
    println!("### {}\n", args.title);
    println!(
        "{} traces, {clusters} clusters, {noise} noise ({:.0} %).\n",
        members.len(),
        100.0 * noise as f64 / members.len().max(1) as f64
    );
    println!(
        "| category | classes | ARI (all) | V-measure (all) | ARI (clustered) | V-measure (clustered) | ARI, random of the same sizes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, of) in categories(args)? {
        let known: Vec<&(String, String)> =
            members.iter().filter(|m| of.contains_key(&m.0)).collect();
        if known.is_empty() {
            bail!("no member's session is in the dataset file");
        }
        let classes: Vec<&str> = known.iter().map(|m| of[&m.0].as_str()).collect();
        let labels: Vec<&str> = known.iter().map(|m| m.1.as_str()).collect();
        let (c, k) = (numbered(&classes), numbered(&labels));
        let clustered: Vec<usize> = (0..known.len()).filter(|&i| labels[i] != "noise").collect();
        let cc: Vec<usize> = clustered.iter().map(|&i| c[i]).collect();
        let ck: Vec<usize> = clustered.iter().map(|&i| k[i]).collect();
        let distinct: BTreeMap<&str, ()> = classes.iter().map(|c| (*c, ())).collect();
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            distinct.len(),
            adjusted_rand(&c, &k),
            v_measure(&c, &k),
            adjusted_rand(&cc, &ck),
            v_measure(&cc, &ck),
            adjusted_rand(&c, &shuffled(&k)),
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_partitions_score_one_and_independent_ones_near_zero() {
        let a = [0, 0, 1, 1, 2, 2];
        assert!((adjusted_rand(&a, &[5, 5, 3, 3, 9, 9]) - 1.0).abs() < 1e-12);
        assert!((v_measure(&a, &[5, 5, 3, 3, 9, 9]) - 1.0).abs() < 1e-12);
        // sklearn: adjusted_rand_score([0,0,1,1], [0,1,0,1]) == -0.5
        assert!((adjusted_rand(&[0, 0, 1, 1], &[0, 1, 0, 1]) + 0.5).abs() < 1e-12);
        // sklearn: v_measure_score([0,0,1,1], [0,0,1,2]) == 0.8
        assert!((v_measure(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.8).abs() < 1e-12);
    }
}
