//! Cluster labels: the terms most distinctive of each cluster, by class-based TF-IDF
//! (a cluster's members read as one document; a term weighs its share of the cluster's
//! terms times `ln(1 + A / f)`, `A` the mean number of terms per class and `f` the term's
//! count across all classes, noise included).

use std::collections::HashMap;

use crate::features::terms;

/// Terms a label shows.
pub const LABEL_TERMS: usize = 3;

/// The `k` most distinctive terms of each class. `classes[i]` are the texts of class `i`.
pub fn distinctive_terms(classes: &[Vec<&str>], k: usize) -> Vec<Vec<String>> {
    let counts: Vec<HashMap<String, f64>> = classes
        .iter()
        .map(|texts| {
            let mut c: HashMap<String, f64> = HashMap::new();
            for text in texts {
                for term in terms(text) {
                    *c.entry(term).or_default() += 1.0;
                }
            }
            c
        })
        .collect();
    let mut total: HashMap<&str, f64> = HashMap::new();
    for c in &counts {
        for (t, n) in c {
            *total.entry(t.as_str()).or_default() += n;
        }
    }
    let sizes: Vec<f64> = counts.iter().map(|c| c.values().sum()).collect();
    let mean = sizes.iter().sum::<f64>() / sizes.len().max(1) as f64;
    counts
        .iter()
        .zip(&sizes)
        .map(|(c, size)| {
            let mut weighted: Vec<(&str, f64)> = c
                .iter()
                .map(|(t, n)| {
                    (
                        t.as_str(),
                        n / size.max(1.0) * (1.0 + mean / total[t.as_str()]).ln(),
                    )
                })
                .collect();
            weighted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let mut picked: Vec<String> = Vec::new();
            for (term, _) in weighted {
                if picked.len() == k {
                    break;
                }
                // A word already shown inside a picked pair (or the reverse) adds nothing.
                let words: Vec<&str> = term.split(' ').collect();
                let covered = picked.iter().any(|p| {
                    let shown: Vec<&str> = p.split(' ').collect();
                    words.iter().all(|w| shown.contains(w))
                        || shown.iter().all(|w| words.contains(w))
                });
                if !covered {
                    picked.push(term.to_owned());
                }
            }
            picked
        })
        .collect()
}

/// The label a person reads: the first terms, joined.
pub fn label(terms: &[String]) -> String {
    terms
        .iter()
        .take(LABEL_TERMS)
        .cloned()
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cluster_is_labelled_by_its_own_terms_not_shared_ones() {
        let refunds = vec![
            "refund for my order",
            "order refund please",
            "refund the order now",
        ];
        let flights = vec![
            "change my flight",
            "flight change to Monday",
            "change flight date",
        ];
        let terms = distinctive_terms(&[refunds, flights], 2);
        assert!(terms[0].iter().any(|t| t.contains("refund")), "{terms:?}");
        assert!(terms[1].iter().any(|t| t.contains("flight")), "{terms:?}");
        assert!(!terms[0].iter().any(|t| t.contains("flight")));
    }
}
