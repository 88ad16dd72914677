//! Dimension reduction: a truncated SVD of the night's feature rows (randomized range
//! finder with power iterations, Halko, Martinsson and Tropp 2011), and a 2-D principal
//! component map of the reduced rows. Density clustering works poorly in tens of thousands
//! of sparse dimensions and well in a few dozen; the map is what the report draws.
//!
//! Written here rather than taken from a linear algebra crate: the only dense solve is an
//! eigen-decomposition of a matrix a few dozen wide (cyclic Jacobi), and the sparse
//! products are a few loops.

use crate::features::Sparse;

/// A learned projection from the feature space to `k` dimensions.
#[derive(Debug, Clone)]
pub struct Projection {
    /// `k` right singular vectors, each as long as the feature space.
    basis: Vec<Vec<f32>>,
}

/// A pseudo-Gaussian number for (`seed`, `a`, `b`): the random test matrix is never
/// stored, so its size does not depend on the feature space's.
fn gaussian(seed: u64, a: u64, b: u64) -> f32 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // Box-Muller from two uniforms in (0, 1].
    let u1 = ((next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (next() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Makes the columns orthonormal (modified Gram-Schmidt, twice for accuracy); a column
/// that is (numerically) in the span of the earlier ones becomes zero.
fn orthonormalize(cols: &mut [Vec<f32>]) {
    for _ in 0..2 {
        for j in 0..cols.len() {
            for p in 0..j {
                let (done, rest) = cols.split_at_mut(j);
                let d: f32 = done[p].iter().zip(&rest[0]).map(|(a, b)| a * b).sum();
                for (x, q) in rest[0].iter_mut().zip(&done[p]) {
                    *x -= d * q;
                }
            }
            let n = cols[j].iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 1e-6 {
                cols[j].iter_mut().for_each(|v| *v /= n);
            } else {
                cols[j].iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }
}

/// `Aᵀ Y` for `A` the rows and `Y` given as columns over rows: columns over features.
fn transpose_times(rows: &[&Sparse], y: &[Vec<f32>], dim: usize) -> Vec<Vec<f32>> {
    let mut z = vec![vec![0.0f32; dim]; y.len()];
    for (i, row) in rows.iter().enumerate() {
        for (t, a) in row.idx.iter().zip(&row.val) {
            for (zj, yj) in z.iter_mut().zip(y) {
                zj[*t as usize] += a * yj[i];
            }
        }
    }
    z
}

/// `A Z` for `Z` given as columns over features: columns over rows.
fn times(rows: &[&Sparse], z: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut y = vec![vec![0.0f32; rows.len()]; z.len()];
    for (i, row) in rows.iter().enumerate() {
        for (yj, zj) in y.iter_mut().zip(z) {
            yj[i] = row
                .idx
                .iter()
                .zip(&row.val)
                .map(|(t, a)| a * zj[*t as usize])
                .sum();
        }
    }
    y
}

/// Eigenvalues (descending) and eigenvectors (as columns: `vectors[i][j]` is component
/// `i` of vector `j`) of a symmetric matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-22 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (low, high) = a.split_at_mut(q);
                for (x, y) in low[p].iter_mut().zip(high[0].iter_mut()) {
                    let (apk, aqk) = (*x, *y);
                    *x = c * apk - s * aqk;
                    *y = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y][y].total_cmp(&a[x][x]));
    let values = order.iter().map(|&j| a[j][j]).collect();
    let vectors = (0..n)
        .map(|i| order.iter().map(|&j| v[i][j]).collect())
        .collect();
    (values, vectors)
}

impl Projection {
    /// Fits `k` dimensions to `rows` (features below `dim`); fewer when the rows span
    /// fewer.
    pub fn fit(rows: &[&Sparse], dim: usize, k: usize, seed: u64) -> Projection {
        let l = (k + 8).min(rows.len()).max(1);
        // Y = A Ω, Ω drawn on the fly.
        let mut y: Vec<Vec<f32>> = (0..l)
            .map(|j| {
                rows.iter()
                    .map(|row| {
                        row.idx
                            .iter()
                            .zip(&row.val)
                            .map(|(t, a)| a * gaussian(seed, u64::from(*t), j as u64))
                            .sum()
                    })
                    .collect()
            })
            .collect();
        orthonormalize(&mut y);
        for _ in 0..2 {
            let mut z = transpose_times(rows, &y, dim);
            orthonormalize(&mut z);
            y = times(rows, &z);
            orthonormalize(&mut y);
        }
        // B = Qᵀ A (l × dim); B Bᵀ = W Λ Wᵀ; V = Bᵀ W Λ^-1/2.
        let b = transpose_times(rows, &y, dim);
        let gram: Vec<Vec<f64>> = (0..l)
            .map(|p| {
                (0..l)
                    .map(|q| {
                        b[p].iter()
                            .zip(&b[q])
                            .map(|(x, y)| f64::from(*x) * f64::from(*y))
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let (values, vectors) = symmetric_eigen(gram);
        let mut basis = Vec::new();
        for (j, value) in values.iter().enumerate().take(k) {
            if *value <= 1e-9 {
                break;
            }
            let sigma = value.sqrt();
            let mut v = vec![0.0f32; dim];
            for (p, bp) in b.iter().enumerate() {
                let w = (vectors[p][j] / sigma) as f32;
                if w != 0.0 {
                    for (x, bx) in v.iter_mut().zip(bp) {
                        *x += w * bx;
                    }
                }
            }
            basis.push(v);
        }
        Projection { basis }
    }

    /// Dimensions kept.
    pub fn dims(&self) -> usize {
        self.basis.len()
    }

    /// A row's coordinates, scaled to unit length (cosine geometry).
    pub fn apply(&self, row: &Sparse) -> Vec<f32> {
        let mut out: Vec<f32> = self
            .basis
            .iter()
            .map(|v| {
                row.idx
                    .iter()
                    .zip(&row.val)
                    .filter(|(t, _)| (**t as usize) < v.len())
                    .map(|(t, a)| a * v[*t as usize])
                    .sum()
            })
            .collect();
        let n = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            out.iter_mut().for_each(|v| *v /= n);
        }
        out
    }
}

/// The plane of the two largest principal components of some points.
#[derive(Debug, Clone)]
pub struct Map {
    mean: Vec<f64>,
    axes: [Vec<f64>; 2],
}

impl Map {
    pub fn fit(points: &[Vec<f32>]) -> Map {
        let d = points.first().map_or(0, Vec::len);
        let n = points.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for p in points {
            for (m, x) in mean.iter_mut().zip(p) {
                *m += f64::from(*x) / n;
            }
        }
        let mut cov = vec![vec![0.0; d]; d];
        for p in points {
            let centred: Vec<f64> = p
                .iter()
                .zip(&mean)
                .map(|(x, m)| f64::from(*x) - m)
                .collect();
            for (row, xi) in cov.iter_mut().zip(&centred) {
                for (c, xj) in row.iter_mut().zip(&centred) {
                    *c += xi * xj / n;
                }
            }
        }
        let (_, vectors) = symmetric_eigen(cov);
        let axis = |j: usize| -> Vec<f64> {
            (0..d)
                .map(|i| vectors[i].get(j).copied().unwrap_or(0.0))
                .collect()
        };
        Map {
            mean,
            axes: [axis(0), axis(1)],
        }
    }

    pub fn place(&self, point: &[f32]) -> (f32, f32) {
        let along = |axis: &Vec<f64>| -> f32 {
            point
                .iter()
                .zip(&self.mean)
                .zip(axis)
                .map(|((x, m), a)| (f64::from(*x) - m) * a)
                .sum::<f64>() as f32
        };
        (along(&self.axes[0]), along(&self.axes[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenvalues_of_a_known_matrix() {
        let (values, vectors) = symmetric_eigen(vec![
            vec![2.0, 1.0, 0.0],
            vec![1.0, 2.0, 0.0],
            vec![0.0, 0.0, 5.0],
        ]);
        let want = [5.0, 3.0, 1.0];
        for (v, w) in values.iter().zip(want) {
            assert!((v - w).abs() < 1e-9, "{values:?}");
        }
        // The eigenvector of 3 is (1, 1, 0) / √2.
        assert!((vectors[0][1].abs() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
        assert!(vectors[2][1].abs() < 1e-9);
    }

    #[test]
    fn the_projection_keeps_the_directions_the_rows_vary_in() {
        // Two groups of rows along features 0 and 5, with a little noise on 9.
        let rows: Vec<Sparse> = (0..40)
            .map(|i| {
                let main = if i % 2 == 0 { 0 } else { 5 };
                Sparse::from_pairs(vec![(main, 1.0), (9, 0.01 * (i as f32))])
            })
            .collect();
        let refs: Vec<&Sparse> = rows.iter().collect();
        let p = Projection::fit(&refs, 10, 2, 7);
        assert_eq!(p.dims(), 2);
        let a = p.apply(&rows[0]);
        let b = p.apply(&rows[2]);
        let c = p.apply(&rows[1]);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        assert!(dot(&a, &b) > 0.99, "{a:?} {b:?}");
        assert!(dot(&a, &c).abs() < 0.2, "{a:?} {c:?}");
    }
}
