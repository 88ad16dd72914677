//! Density clustering with a noise class: HDBSCAN (the `hdbscan` crate) on a sample of
//! the reduced rows, then every other row joins the nearest cluster when it lies as close
//! to its centre as the cluster's own members do, and is noise otherwise.

use hdbscan::{Hdbscan, HdbscanHyperParams};

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The mean of `points`.
pub fn centre<'a>(points: impl IntoIterator<Item = &'a Vec<f32>>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    let mut n = 0usize;
    for p in points {
        if sum.is_empty() {
            sum = vec![0.0; p.len()];
        }
        for (s, x) in sum.iter_mut().zip(p) {
            *s += x;
        }
        n += 1;
    }
    sum.iter_mut().for_each(|s| *s /= n.max(1) as f32);
    sum
}

/// Cluster numbers per point (`None` for noise), numbered from 0 in order of first
/// appearance. `sample` are the indices HDBSCAN sees.
pub fn cluster(
    points: &[Vec<f32>],
    sample: &[usize],
    min_cluster_size: usize,
    min_samples: usize,
    epsilon: f64,
) -> Vec<Option<usize>> {
    let mut out = vec![None; points.len()];
    let min_cluster_size = min_cluster_size.max(2);
    if sample.len() < min_cluster_size.max(3) {
        return out;
    }
    let data: Vec<Vec<f32>> = sample.iter().map(|&i| points[i].clone()).collect();
    let params = HdbscanHyperParams::builder()
        .min_cluster_size(min_cluster_size)
        .min_samples(min_samples.clamp(1, sample.len() - 1))
        .epsilon(epsilon.max(0.0))
        .build();
    let Ok(labels) = Hdbscan::new(&data, params).cluster() else {
        return out;
    };
    // Renumber in order of first appearance, so numbering follows the input order.
    let mut numbers = std::collections::HashMap::new();
    for (&i, label) in sample.iter().zip(&labels) {
        if *label >= 0 {
            let next = numbers.len();
            out[i] = Some(*numbers.entry(*label).or_insert(next));
        }
    }
    let k = numbers.len();
    if k == 0 || sample.len() == points.len() {
        return out;
    }
    // Centres and radii (the farthest member: HDBSCAN already left outliers as noise).
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|c| {
            centre(
                sample
                    .iter()
                    .filter(|&&i| out[i] == Some(c))
                    .map(|&i| &points[i]),
            )
        })
        .collect();
    let radii: Vec<f32> = (0..k)
        .map(|c| {
            sample
                .iter()
                .filter(|&&i| out[i] == Some(c))
                .map(|&i| distance(&points[i], &centres[c]))
                .fold(0.0, f32::max)
        })
        .collect();
    let in_sample: std::collections::HashSet<usize> = sample.iter().copied().collect();
    for (i, p) in points.iter().enumerate() {
        if in_sample.contains(&i) {
            continue;
        }
        let (best, d) = centres
            .iter()
            .enumerate()
            .map(|(c, centre)| (c, distance(p, centre)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one cluster");
        if d <= radii[best] {
            out[i] = Some(best);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(cx: f32, cy: f32, n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let a = i as f32 * 2.399;
                let r = 0.05 * ((i % 7) as f32 + 1.0) / 7.0;
                vec![cx + r * a.cos(), cy + r * a.sin()]
            })
            .collect()
    }

    #[test]
    fn two_blobs_and_an_outlier_make_two_clusters_and_noise() {
        let mut points = blob(0.0, 0.0, 30);
        points.extend(blob(3.0, 3.0, 30));
        points.push(vec![10.0, -10.0]);
        let all: Vec<usize> = (0..points.len()).collect();
        let labels = cluster(&points, &all, 5, 5, 0.0);
        assert!(labels[..30].iter().all(|l| *l == Some(0)), "{labels:?}");
        assert!(labels[30..60].iter().all(|l| *l == Some(1)), "{labels:?}");
        assert_eq!(labels[60], None);
    }

    #[test]
    fn rows_outside_the_sample_join_the_nearest_cluster_or_are_noise() {
        let mut points = blob(0.0, 0.0, 40);
        points.extend(blob(3.0, 3.0, 40));
        points.push(vec![10.0, -10.0]);
        // Every other point is clustered; the rest are assigned.
        let sample: Vec<usize> = (0..80).step_by(2).collect();
        let labels = cluster(&points, &sample, 5, 5, 0.0);
        assert!(labels[..40].iter().all(|l| *l == Some(0)), "{labels:?}");
        assert!(labels[40..80].iter().all(|l| *l == Some(1)), "{labels:?}");
        assert_eq!(labels[80], None, "far from both: noise");
    }
}
