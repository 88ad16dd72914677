//! The statistics themselves, over a sample of items (a list of item indices that may repeat,
//! so that a bootstrap resample is just another sample). Each is O(items × graders² +
//! categories): no category-by-category matrix is built, so long scales cost nothing extra.

use crate::table::Dense;
use crate::{Scale, Undefined};

/// Krippendorff's alpha over `columns` for the items in `sample`, at `level`.
///
/// Values of units (items) with fewer than two values among `columns` are not pairable and
/// are dropped, as the method says. With the coincidences o_ck and the pairable values' counts
/// n_c (n in all): alpha = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck.
pub(crate) fn alpha(
    d: &Dense,
    columns: &[usize],
    sample: &[usize],
    level: Scale,
) -> Result<f64, Undefined> {
    let k = d.categories.len();
    let mut counts = vec![0.0f64; k];
    // Two passes over the sample with one reused buffer: the counts first (the ordinal
    // positions need them), then the observed disagreement. No allocation per item, which
    // matters under the bootstrap.
    let mut values: Vec<u32> = Vec::with_capacity(columns.len());
    let fill = |values: &mut Vec<u32>, item: usize| {
        values.clear();
        values.extend(columns.iter().filter_map(|&c| d.cell(item, c)));
    };
    let mut units = 0usize;
    for &item in sample {
        fill(&mut values, item);
        if values.len() >= 2 {
            for &v in &values {
                counts[v as usize] += 1.0;
            }
            units += 1;
        }
    }
    let n: f64 = counts.iter().sum();
    if units == 0 {
        return Err(Undefined::NoPairableItems);
    }
    if counts.iter().filter(|&&c| c > 0.0).count() < 2 {
        return Err(Undefined::NoVariation);
    }
    // Each category's position on the line whose squared distances are δ²: the code for
    // interval; for ordinal the category's mid-rank among the pairable values, since
    // Krippendorff's ordinal δ_ck = Σ_{g=c..k} n_g − (n_c + n_k)/2 = M_k − M_c with
    // M_c = Σ_{g<c} n_g + n_c/2.
    let positions: Option<Vec<f64>> = match level {
        Scale::Nominal => None,
        Scale::Interval => d.codes.clone(),
        Scale::Ordinal => {
            let mut below = 0.0;
            Some(
                counts
                    .iter()
                    .map(|&c| {
                        let m = below + c / 2.0;
                        below += c;
                        m
                    })
                    .collect(),
            )
        }
    };
    let delta = |a: u32, b: u32| -> f64 {
        match &positions {
            None => f64::from(u8::from(a != b)),
            Some(x) => {
                let diff = x[a as usize] - x[b as usize];
                diff * diff
            }
        }
    };
    let mut observed = 0.0;
    for &item in sample {
        fill(&mut values, item);
        if values.len() < 2 {
            continue;
        }
        let mut sum = 0.0;
        for (i, &a) in values.iter().enumerate() {
            for &b in &values[i + 1..] {
                sum += 2.0 * delta(a, b);
            }
        }
        observed += sum / (values.len() as f64 - 1.0);
    }
    let expected = match &positions {
        None => n * n - counts.iter().map(|c| c * c).sum::<f64>(),
        Some(x) => {
            let mean = counts.iter().zip(x).map(|(c, x)| c * x).sum::<f64>() / n;
            2.0 * n
                * counts
                    .iter()
                    .zip(x)
                    .map(|(c, x)| c * (x - mean) * (x - mean))
                    .sum::<f64>()
        }
    };
    Ok(1.0 - (n - 1.0) * observed / expected)
}

/// Fleiss' kappa over `columns` for the items in `sample`, generalised to items with
/// differing numbers of ratings m_i: items with m_i < 2 are dropped; P_i = Σ_c n_ic (n_ic − 1)
/// / (m_i (m_i − 1)); P̄ is the mean of P_i; p_c is category c's share of all ratings of the
/// kept items; kappa = (P̄ − Σ p_c²) / (1 − Σ p_c²). With a fixed m it is Fleiss' (1971).
pub(crate) fn fleiss(d: &Dense, columns: &[usize], sample: &[usize]) -> Result<f64, Undefined> {
    let k = d.categories.len();
    let mut totals = vec![0.0f64; k];
    let mut row = vec![0u32; k];
    let (mut p_sum, mut kept, mut ratings) = (0.0, 0usize, 0.0);
    let mut values: Vec<u32> = Vec::with_capacity(columns.len());
    for &item in sample {
        values.clear();
        values.extend(columns.iter().filter_map(|&c| d.cell(item, c)));
        let m = values.len();
        if m < 2 {
            continue;
        }
        for &v in &values {
            row[v as usize] += 1;
        }
        let agreeing: f64 = values
            .iter()
            .map(|&v| f64::from(row[v as usize]) - 1.0)
            .sum();
        for &v in &values {
            totals[v as usize] += 1.0;
            // Reset only what this item touched: O(graders), not O(categories).
            row[v as usize] = 0;
        }
        p_sum += agreeing / (m as f64 * (m as f64 - 1.0));
        kept += 1;
        ratings += m as f64;
    }
    if kept == 0 {
        return Err(Undefined::NoPairableItems);
    }
    if totals.iter().filter(|&&t| t > 0.0).count() < 2 {
        return Err(Undefined::NoVariation);
    }
    let p_bar = p_sum / kept as f64;
    let p_e: f64 = totals.iter().map(|t| (t / ratings) * (t / ratings)).sum();
    Ok((p_bar - p_e) / (1.0 - p_e))
}

/// Cohen's kappa of paired category indices: unweighted, or (`codes` given) quadratically
/// weighted on the codes: kappa_w = 1 − Σ w O / Σ w E with w_ck = (x_c − x_k)², O the
/// observed pairs and E the product of the two graders' marginals.
pub(crate) fn kappa(
    pairs: &[(u32, u32)],
    categories: usize,
    codes: Option<&[f64]>,
) -> Result<f64, Undefined> {
    if pairs.is_empty() {
        return Err(Undefined::NoOverlap);
    }
    let n = pairs.len() as f64;
    let mut pa = vec![0.0f64; categories];
    let mut pb = vec![0.0f64; categories];
    for &(a, b) in pairs {
        pa[a as usize] += 1.0 / n;
        pb[b as usize] += 1.0 / n;
    }
    let used = pa
        .iter()
        .zip(&pb)
        .filter(|(a, b)| **a > 0.0 || **b > 0.0)
        .count();
    if used < 2 {
        return Err(Undefined::NoVariation);
    }
    let (observed, expected) = match codes {
        None => {
            let observed = pairs.iter().filter(|(a, b)| a != b).count() as f64 / n;
            let same: f64 = pa.iter().zip(&pb).map(|(a, b)| a * b).sum();
            (observed, 1.0 - same)
        }
        Some(x) => {
            let observed = pairs
                .iter()
                .map(|&(a, b)| (x[a as usize] - x[b as usize]).powi(2))
                .sum::<f64>()
                / n;
            // E[(X − Y)²] for independent X, Y with the two marginals.
            let moments = |p: &[f64]| {
                let mean: f64 = p.iter().zip(x).map(|(p, x)| p * x).sum();
                let var: f64 = p.iter().zip(x).map(|(p, x)| p * (x - mean).powi(2)).sum();
                (mean, var)
            };
            let ((ma, va), (mb, vb)) = (moments(&pa), moments(&pb));
            (observed, va + vb + (ma - mb).powi(2))
        }
    };
    Ok(1.0 - observed / expected)
}

/// The pairs of (column a, column b) values on sample items that both have.
pub(crate) fn pairs_of(d: &Dense, a: usize, b: usize, sample: &[usize]) -> Vec<(u32, u32)> {
    sample
        .iter()
        .filter_map(|&i| Some((d.cell(i, a)?, d.cell(i, b)?)))
        .collect()
}

/// The consensus of `columns` on one item: for nominal the most frequent value, ties going
/// to the first category in [`crate::Value`] order; otherwise the lower median (the
/// ⌈m/2⌉-th smallest value), so the consensus is always a value someone gave.
pub(crate) fn consensus(d: &Dense, item: usize, columns: &[usize], scale: Scale) -> Option<u32> {
    let mut values: Vec<u32> = columns.iter().filter_map(|&c| d.cell(item, c)).collect();
    if values.is_empty() {
        return None;
    }
    // Category indices follow numeric order on numeric scales, so sorting them sorts values.
    values.sort_unstable();
    match scale {
        Scale::Nominal => {
            let (mut best, mut best_count) = (values[0], 0);
            let mut run = 0;
            for (i, &v) in values.iter().enumerate() {
                run = if i > 0 && values[i - 1] == v {
                    run + 1
                } else {
                    1
                };
                if run > best_count {
                    (best, best_count) = (v, run);
                }
            }
            Some(best)
        }
        Scale::Ordinal | Scale::Interval => Some(values[(values.len() - 1) / 2]),
    }
}
