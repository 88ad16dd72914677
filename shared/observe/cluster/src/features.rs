//! The local feature space: hashed TF-IDF over words and word pairs. It needs no model,
//! no network and no vocabulary file, and a term lands in the same bucket every night, so
//! centroids of different nights can be compared.

use std::collections::HashMap;

/// Buckets of the hashed space. Collisions at 2^16 are rare enough for clusters of
/// requests (a few thousand distinct terms a night) and keep a centroid small.
pub const DIM: u32 = 1 << 16;

/// A sparse vector: indices ascending, no zeros.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sparse {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl Sparse {
    /// From a dense vector (an embedding model's output), zeros dropped.
    pub fn from_dense(dense: &[f32]) -> Sparse {
        let (idx, val) = dense
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(i, v)| (i as u32, *v))
            .unzip();
        Sparse { idx, val }
    }

    /// From (index, value) pairs in any order; repeated indices add up.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Sparse {
        pairs.sort_unstable_by_key(|p| p.0);
        let mut out = Sparse::default();
        for (i, v) in pairs {
            if out.idx.last() == Some(&i) {
                *out.val.last_mut().expect("a value per index") += v;
            } else {
                out.idx.push(i);
                out.val.push(v);
            }
        }
        out
    }

    pub fn norm(&self) -> f32 {
        self.val.iter().map(|v| v * v).sum::<f32>().sqrt()
    }

    /// Scaled to unit length (left as is when it is all zeros).
    pub fn normalized(mut self) -> Sparse {
        let n = self.norm();
        if n > 0.0 {
            self.val.iter_mut().for_each(|v| *v /= n);
        }
        self
    }

    pub fn dot(&self, other: &Sparse) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < self.idx.len() && j < other.idx.len() {
            match self.idx[i].cmp(&other.idx[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.val[i] * other.val[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }

    /// Cosine similarity; 0 when either is all zeros.
    pub fn cosine(&self, other: &Sparse) -> f32 {
        let d = self.norm() * other.norm();
        if d > 0.0 { self.dot(other) / d } else { 0.0 }
    }

    /// The `k` entries of largest magnitude (what a stored centroid keeps).
    pub fn top(&self, k: usize) -> Sparse {
        if self.idx.len() <= k {
            return self.clone();
        }
        let mut order: Vec<usize> = (0..self.idx.len()).collect();
        order.sort_by(|&a, &b| self.val[b].abs().total_cmp(&self.val[a].abs()));
        order.truncate(k);
        Sparse::from_pairs(
            order
                .into_iter()
                .map(|i| (self.idx[i], self.val[i]))
                .collect(),
        )
    }

    /// The mean of `rows`.
    pub fn mean<'a>(rows: impl IntoIterator<Item = &'a Sparse>) -> Sparse {
        let mut sum: HashMap<u32, f32> = HashMap::new();
        let mut n = 0usize;
        for row in rows {
            n += 1;
            for (i, v) in row.idx.iter().zip(&row.val) {
                *sum.entry(*i).or_default() += v;
            }
        }
        let n = n.max(1) as f32;
        Sparse::from_pairs(sum.into_iter().map(|(i, v)| (i, v / n)).collect())
    }
}

/// Words too common to tell requests apart. Short on purpose: IDF does the rest.
const STOP: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "get", "had", "has",
    "have", "he", "her", "hi", "his", "how", "i", "if", "in", "is", "it", "its", "just", "like",
    "me", "my", "no", "not", "of", "on", "or", "our", "please", "she", "so", "some", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "us", "was",
    "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your", "hello",
    "thanks", "thank", "want", "need", "im", "i'm", "yes", "ok", "okay",
];

/// Lower-case words of two or more characters, stop words and bare numbers out; digits
/// inside a word fold to `0`, so order numbers and flight codes do not make every request
/// unique.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| {
            w.chars().count() >= 2
                && !STOP.contains(&w.as_str())
                && !w.chars().all(|c| c.is_ascii_digit())
        })
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                w.chars()
                    .map(|c| if c.is_ascii_digit() { '0' } else { c })
                    .collect()
            } else {
                w
            }
        })
        .collect()
}

/// The terms of a text: its words, and each pair of neighbouring words.
pub fn terms(text: &str) -> Vec<String> {
    let words = words(text);
    let pairs = words.windows(2).map(|w| format!("{} {}", w[0], w[1]));
    let mut out: Vec<String> = pairs.collect();
    out.extend(words);
    out
}

/// FNV-1a: stable across builds and platforms, unlike `std`'s hasher.
fn bucket(term: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in term.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(DIM)) as u32
}

/// TF-IDF vectors of `texts` (unit length), IDF from `texts` themselves: sublinear term
/// frequency, smoothed IDF.
pub fn tfidf(texts: &[String]) -> Vec<Sparse> {
    let counted: Vec<Vec<(u32, f32)>> = texts
        .iter()
        .map(|t| {
            let mut tf: HashMap<u32, f32> = HashMap::new();
            for term in terms(t) {
                *tf.entry(bucket(&term)).or_default() += 1.0;
            }
            tf.into_iter().collect()
        })
        .collect();
    let mut df: HashMap<u32, f32> = HashMap::new();
    for row in &counted {
        for (i, _) in row {
            *df.entry(*i).or_default() += 1.0;
        }
    }
    let n = texts.len() as f32;
    counted
        .into_iter()
        .map(|row| {
            Sparse::from_pairs(
                row.into_iter()
                    .map(|(i, tf)| {
                        let idf = ((1.0 + n) / (1.0 + df[&i])).ln() + 1.0;
                        (i, (1.0 + tf.ln()) * idf)
                    })
                    .collect(),
            )
            .normalized()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_digits_and_drop_stop_words() {
        assert_eq!(
            words("I want a refund for order #4521 (flight HAT136), please!"),
            ["refund", "order", "flight", "hat000"]
        );
    }

    #[test]
    fn similar_texts_are_closer_than_different_ones() {
        let v = tfidf(&[
            "refund my order 12".into(),
            "I need a refund for order 99".into(),
            "change my flight to Boston".into(),
        ]);
        assert!(v[0].cosine(&v[1]) > 0.3);
        assert!(v[0].cosine(&v[2]) < 0.05);
        assert!((v[2].norm() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn sparse_mean_and_top_keep_the_largest_entries() {
        let a = Sparse::from_pairs(vec![(3, 1.0), (1, 2.0)]);
        let b = Sparse::from_pairs(vec![(3, 3.0), (7, -8.0)]);
        let m = Sparse::mean([&a, &b]);
        assert_eq!(m.idx, [1, 3, 7]);
        assert_eq!(m.val, [1.0, 2.0, -4.0]);
        assert_eq!(m.top(2).idx, [3, 7]);
    }
}
