//! Identity across nights: each of tonight's clusters is matched to at most one of the
//! previous night's, and each previous cluster to at most one of tonight's, by member
//! overlap (the same traces, when a night re-reads some) and by centroid similarity in the
//! fixed feature space (different traces of the same kind). Pairs are taken greedily,
//! best first: with a few dozen clusters a night, an optimal assignment would almost never
//! choose differently, and the greedy rule is easy to explain.

use std::collections::HashSet;

use crate::features::Sparse;

/// Member overlap (Jaccard) at which two clusters are the same group.
pub const SAME_MEMBERS: f64 = 0.3;
/// Centroid cosine at which two clusters are the same group.
pub const SAME_CENTROID: f64 = 0.5;

/// One side of a match: a cluster's members (session names) and centroid.
pub struct Side<'a> {
    pub members: HashSet<&'a str>,
    pub centroid: &'a Sparse,
}

/// How a pair was matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matched {
    /// Index into the previous night's clusters.
    pub previous: usize,
    pub overlap: f64,
    pub similarity: f64,
}

impl Matched {
    /// `members` when the overlap alone decides, else `centroid`.
    pub fn by(&self) -> &'static str {
        if self.overlap >= SAME_MEMBERS {
            "members"
        } else {
            "centroid"
        }
    }
}

fn jaccard(a: &HashSet<&str>, b: &HashSet<&str>) -> f64 {
    let both = a.intersection(b).count();
    let either = a.len() + b.len() - both;
    if either == 0 {
        0.0
    } else {
        both as f64 / either as f64
    }
}

/// For each of tonight's clusters, the previous cluster it continues, if any.
pub fn match_clusters(tonight: &[Side], previous: &[Side]) -> Vec<Option<Matched>> {
    let mut pairs = Vec::new();
    for (i, now) in tonight.iter().enumerate() {
        for (j, before) in previous.iter().enumerate() {
            let overlap = jaccard(&now.members, &before.members);
            let similarity = f64::from(now.centroid.cosine(before.centroid));
            if overlap >= SAME_MEMBERS || similarity >= SAME_CENTROID {
                pairs.push((overlap + similarity, i, j, overlap, similarity));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut out = vec![None; tonight.len()];
    let mut taken = vec![false; previous.len()];
    for (_, i, j, overlap, similarity) in pairs {
        if out[i].is_none() && !taken[j] {
            taken[j] = true;
            out[i] = Some(Matched {
                previous: j,
                overlap,
                similarity,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_one_to_one_and_best_first() {
        let a = Sparse::from_pairs(vec![(1, 1.0)]);
        let b = Sparse::from_pairs(vec![(2, 1.0)]);
        let ab = Sparse::from_pairs(vec![(1, 1.0), (2, 0.2)]).normalized();
        let side = |m: &[&'static str], c| Side {
            members: m.iter().copied().collect(),
            centroid: c,
        };
        let previous = [side(&["s1", "s2"], &a), side(&["s3"], &b)];
        // Two of tonight's clusters look like the first previous one; the closer wins it.
        let tonight = [side(&["x"], &ab), side(&["s1", "s2"], &a), side(&["y"], &b)];
        let m = match_clusters(&tonight, &previous);
        assert_eq!(m[1].map(|m| m.previous), Some(0));
        assert_eq!(m[1].map(|m| m.by()), Some("members"));
        assert_eq!(m[0], None, "its best match was taken by a better pair");
        assert_eq!(m[2].map(|m| (m.previous, m.by())), Some((1, "centroid")));
    }
}
