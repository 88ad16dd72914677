//! One night of one tenant and view: rows embedded, reduced, clustered, labelled, matched
//! to the previous night's clusters, and summed up per cluster.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::features::Sparse;
use crate::group;
use crate::label::{distinctive_terms, label};
use crate::reduce::{Map, Projection};
use crate::track::{Side, match_clusters};

/// What is clustered of each trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The user's messages: what people asked for.
    Requests,
    /// The explanations of the trace's failing scores: how it went wrong.
    Failures,
}

impl View {
    pub const ALL: [View; 2] = [View::Requests, View::Failures];

    pub fn as_str(self) -> &'static str {
        match self {
            View::Requests => "requests",
            View::Failures => "failures",
        }
    }

    pub fn parse(text: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.as_str() == text)
    }
}

/// One trace to cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub session: String,
    pub trace_id: String,
    /// The text the view clusters.
    pub text: String,
    /// The mean value of each score name on the trace.
    pub scores: BTreeMap<String, f64>,
    /// Whether any score failed (see [`crate::FAILING`]).
    pub failed: bool,
}

/// How a night is clustered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The fewest traces a cluster has; smaller groups are noise.
    pub min_cluster_size: usize,
    /// HDBSCAN's density neighbourhood (`None`: the smaller of the cluster size and 5).
    pub min_samples: Option<usize>,
    /// The most traces HDBSCAN clusters; the others are assigned to the nearest cluster.
    pub sample: usize,
    /// Dimensions the features are reduced to.
    pub dims: usize,
    /// HDBSCAN's cluster selection epsilon: clusters closer than this (in the reduced,
    /// unit-length space) are not split further.
    #[serde(default)]
    pub epsilon: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            min_cluster_size: 5,
            min_samples: None,
            sample: DEFAULT_SAMPLE,
            dims: 24,
            epsilon: DEFAULT_EPSILON,
        }
    }
}

/// Groups closer than this are one cluster: in the unit-length reduced space, 0.7 is a
/// cosine of about 0.75, which rewordings of one request reach and different requests do
/// not (HDBSCAN alone splits a family at every small variation of its wording).
pub const DEFAULT_EPSILON: f64 = 0.7;

/// HDBSCAN here is quadratic in the rows it clusters; 4,000 take a few seconds on one core.
pub const DEFAULT_SAMPLE: usize = 4_000;

/// Representative traces kept per cluster.
pub const REPRESENTATIVES: usize = 3;
/// Characters of a representative's text kept.
pub const EXCERPT_CHARS: usize = 400;
/// Entries of a stored centroid.
pub const CENTROID_ENTRIES: usize = 256;
/// Nights of figures a cluster's history keeps.
pub const HISTORY_NIGHTS: usize = 30;

/// A trace's place in the night's clustering: one line of `members.jsonl.gz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub day: String,
    pub tenant: String,
    pub view: View,
    pub session: String,
    pub trace_id: String,
    /// `None`: noise (no cluster).
    pub cluster: Option<String>,
    pub label: Option<String>,
    /// The cluster is new tonight.
    pub new: bool,
    pub failed: bool,
    /// Position on the night's 2-D map.
    pub x: f32,
    pub y: f32,
}

/// `new`: no previous cluster continues into it; `kept`: it continues one; `gone`: a
/// previous cluster nothing continues (size 0 tonight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Kept,
    Gone,
}

/// One night's figures of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub day: String,
    pub size: usize,
    pub failure_rate: f64,
}

/// A trace near a cluster's centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Representative {
    pub session: String,
    pub trace_id: String,
    pub text: String,
}

/// One line of `clusters.jsonl.gz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub day: String,
    pub tenant: String,
    pub view: View,
    pub id: String,
    pub status: Status,
    pub label: String,
    pub terms: Vec<String>,
    /// A one-line label from the judge's endpoint, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub size: usize,
    pub failure_rate: f64,
    /// The mean of each score over the members that have it.
    pub scores: BTreeMap<String, f64>,
    pub representatives: Vec<Representative>,
    pub x: f32,
    pub y: f32,
    /// The previous night's figures, for a kept or gone cluster.
    pub previous: Option<Figures>,
    /// How a kept cluster was matched (`members` or `centroid`) and how closely.
    pub matched_by: Option<String>,
    pub similarity: Option<f64>,
    /// Figures of the last nights, oldest first, tonight's last.
    pub history: Vec<Figures>,
    /// Unit-length centroid in the feature space (its largest entries).
    pub centroid: Sparse,
    /// The embedding that ran (`tfidf-hashed-65536`, `openai:<model>`, …).
    pub embedding: String,
    /// Traces of the view tonight, and how many of them HDBSCAN clustered.
    pub traces: usize,
    pub sampled: usize,
}

/// Which night, tenant and view, and the embedding that ran.
#[derive(Debug, Clone)]
pub struct Night {
    pub day: String,
    pub tenant: String,
    pub view: View,
    pub embedding: String,
}

/// The previous night's result of the same tenant and view.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub clusters: Vec<ClusterRecord>,
    pub members: Vec<Member>,
}

/// What a night produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub members: Vec<Member>,
    pub clusters: Vec<ClusterRecord>,
}

fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.as_bytes().iter().chain([&0u8]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The rows HDBSCAN clusters: all of them, or `n` picked by a hash of the session, so the
/// same traces are picked every time the night is run.
pub fn sample_rows(docs: &[Doc], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..docs.len()).collect();
    if docs.len() > n {
        order.sort_by_key(|&i| (stable_hash(&[&docs[i].session, &docs[i].trace_id]), i));
        order.truncate(n);
        order.sort_unstable();
    }
    order
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Clusters one night. `vectors[i]` are `docs[i]`'s features.
pub fn cluster_night(
    night: &Night,
    docs: &[Doc],
    vectors: &[Sparse],
    previous: &Previous,
    settings: &Settings,
) -> Outcome {
    assert_eq!(docs.len(), vectors.len(), "a vector per doc");
    let sample = sample_rows(docs, settings.sample.max(1));
    let dim = vectors
        .iter()
        .filter_map(|v| v.idx.last())
        .max()
        .map_or(1, |m| *m as usize + 1);
    let fit_rows: Vec<&Sparse> = sample.iter().map(|&i| &vectors[i]).collect();
    let projection = Projection::fit(&fit_rows, dim, settings.dims, 0x5eed);
    let points: Vec<Vec<f32>> = vectors.iter().map(|v| projection.apply(v)).collect();
    let min_samples = settings
        .min_samples
        .unwrap_or(settings.min_cluster_size.min(5));
    let labels = group::cluster(
        &points,
        &sample,
        settings.min_cluster_size,
        min_samples,
        settings.epsilon,
    );
    let sampled: Vec<Vec<f32>> = sample.iter().map(|&i| points[i].clone()).collect();
    let map = Map::fit(&sampled);
    let places: Vec<(f32, f32)> = points.iter().map(|p| map.place(p)).collect();

    let k = labels.iter().flatten().max().map_or(0, |m| m + 1);
    let members_of: Vec<Vec<usize>> = (0..k)
        .map(|c| (0..docs.len()).filter(|&i| labels[i] == Some(c)).collect())
        .collect();
    // Labels: every cluster a class, noise one more.
    let mut classes: Vec<Vec<&str>> = members_of
        .iter()
        .map(|m| m.iter().map(|&i| docs[i].text.as_str()).collect())
        .collect();
    classes.push(
        (0..docs.len())
            .filter(|&i| labels[i].is_none())
            .map(|i| docs[i].text.as_str())
            .collect(),
    );
    let terms = distinctive_terms(&classes, 6);
    let centroids: Vec<Sparse> = members_of
        .iter()
        .map(|m| {
            Sparse::mean(m.iter().map(|&i| &vectors[i]))
                .top(CENTROID_ENTRIES)
                .normalized()
        })
        .collect();

    // Tonight's clusters against the previous night's live ones.
    let before: Vec<&ClusterRecord> = previous
        .clusters
        .iter()
        .filter(|c| c.status != Status::Gone && c.view == night.view)
        .collect();
    let mut before_members: HashMap<&str, HashSet<&str>> = HashMap::new();
    for m in &previous.members {
        if let Some(c) = &m.cluster {
            before_members
                .entry(c.as_str())
                .or_default()
                .insert(m.session.as_str());
        }
    }
    let tonight_sides: Vec<Side> = members_of
        .iter()
        .zip(&centroids)
        .map(|(m, c)| Side {
            members: m.iter().map(|&i| docs[i].session.as_str()).collect(),
            centroid: c,
        })
        .collect();
    let before_sides: Vec<Side> = before
        .iter()
        .map(|c| Side {
            members: before_members.remove(c.id.as_str()).unwrap_or_default(),
            centroid: &c.centroid,
        })
        .collect();
    let matches = match_clusters(&tonight_sides, &before_sides);

    let mut used: HashSet<String> = previous.clusters.iter().map(|c| c.id.clone()).collect();
    let mut clusters = Vec::new();
    for c in 0..k {
        let members = &members_of[c];
        let size = members.len();
        let failed = members.iter().filter(|&&i| docs[i].failed).count();
        let failure_rate = failed as f64 / size.max(1) as f64;
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for &i in members {
            for (name, v) in &docs[i].scores {
                let e = sums.entry(name.clone()).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        let scores = sums
            .into_iter()
            .map(|(n, (s, c))| (n, s / c as f64))
            .collect();
        let centre = group::centre(members.iter().map(|&i| &points[i]));
        let mut by_distance: Vec<(f32, usize)> = members
            .iter()
            .map(|&i| {
                let d: f32 = points[i]
                    .iter()
                    .zip(&centre)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                (d, i)
            })
            .collect();
        by_distance.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let representatives = by_distance
            .iter()
            .take(REPRESENTATIVES)
            .map(|&(_, i)| Representative {
                session: docs[i].session.clone(),
                trace_id: docs[i].trace_id.clone(),
                text: excerpt(&docs[i].text),
            })
            .collect();
        let (x, y) = members.iter().fold((0.0, 0.0), |(x, y), &i| {
            (x + places[i].0 / size as f32, y + places[i].1 / size as f32)
        });
        let tonight = Figures {
            day: night.day.clone(),
            size,
            failure_rate,
        };
        let (id, status, previous_figures, history, matched_by, similarity) = match matches[c] {
            Some(m) => {
                let was = before[m.previous];
                let mut history = was.history.clone();
                history.push(tonight);
                let history = history.split_off(history.len().saturating_sub(HISTORY_NIGHTS));
                (
                    was.id.clone(),
                    Status::Kept,
                    Some(Figures {
                        day: was.day.clone(),
                        size: was.size,
                        failure_rate: was.failure_rate,
                    }),
                    history,
                    Some(m.by().to_owned()),
                    Some(if m.by() == "members" {
                        m.overlap
                    } else {
                        m.similarity
                    }),
                )
            }
            None => {
                let mut salt = 0u32;
                let id = loop {
                    let h = stable_hash(&[
                        &night.tenant,
                        night.view.as_str(),
                        &night.day,
                        &c.to_string(),
                        &salt.to_string(),
                    ]);
                    let id = format!("c-{:06x}", h & 0xff_ffff);
                    if used.insert(id.clone()) {
                        break id;
                    }
                    salt += 1;
                };
                (id, Status::New, None, vec![tonight], None, None)
            }
        };
        clusters.push(ClusterRecord {
            day: night.day.clone(),
            tenant: night.tenant.clone(),
            view: night.view,
            id,
            status,
            label: label(&terms[c]),
            terms: terms[c].clone(),
            summary: None,
            size,
            failure_rate,
            scores,
            representatives,
            x,
            y,
            previous: previous_figures,
            matched_by,
            similarity,
            history,
            centroid: centroids[c].clone(),
            embedding: night.embedding.clone(),
            traces: docs.len(),
            sampled: sample.len(),
        });
    }
    // Previous clusters nothing continued.
    let continued: HashSet<usize> = matches.iter().flatten().map(|m| m.previous).collect();
    for (j, was) in before.iter().enumerate() {
        if continued.contains(&j) {
            continue;
        }
        let mut history = was.history.clone();
        history.push(Figures {
            day: night.day.clone(),
            size: 0,
            failure_rate: 0.0,
        });
        let history = history.split_off(history.len().saturating_sub(HISTORY_NIGHTS));
        clusters.push(ClusterRecord {
            day: night.day.clone(),
            status: Status::Gone,
            size: 0,
            failure_rate: 0.0,
            scores: BTreeMap::new(),
            representatives: Vec::new(),
            previous: Some(Figures {
                day: was.day.clone(),
                size: was.size,
                failure_rate: was.failure_rate,
            }),
            matched_by: None,
            similarity: None,
            history,
            embedding: night.embedding.clone(),
            traces: docs.len(),
            sampled: sample.len(),
            ..(*was).clone()
        });
    }
    let members = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cluster = labels[i].map(|c| &clusters[c]);
            Member {
                day: night.day.clone(),
                tenant: night.tenant.clone(),
                view: night.view,
                session: d.session.clone(),
                trace_id: d.trace_id.clone(),
                cluster: cluster.map(|c| c.id.clone()),
                label: cluster.map(|c| c.label.clone()),
                new: cluster.is_some_and(|c| c.status == Status::New),
                failed: d.failed,
                x: places[i].0,
                y: places[i].1,
            }
        })
        .collect();
    Outcome { members, clusters }
}
