//! What a call returns beyond the sentence embedding: BGE-M3's per-token
//! sparse weights (and the lexical weights the harness aggregates from them
//! inside the call) and its multi-vectors (docs/outputs.md).
//!
//! The same rules as `src/embedperf/runners/outputs.py` and
//! `native/cpp/src/outputs.cpp`; the hand-computed case of
//! `tests/unit/test_outputs.py` is repeated in the tests below.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use safetensors::tensor::{Dtype, TensorView};

use crate::workload::Embeddings;

pub const DENSE: &str = "sentence_embedding";
pub const TOKEN_WEIGHTS: &str = "token_weights";
pub const COLBERT: &str = "colbert_vectors";
pub const LEXICAL_IDS: &str = "lexical_ids";
pub const LEXICAL_WEIGHTS: &str = "lexical_weights";
pub const LEXICAL_OFFSETS: &str = "lexical_offsets";

/// The sparse head's weight of every token, row-major `[rows, seq]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenWeights {
    pub rows: usize,
    pub seq: usize,
    pub data: Vec<f32>,
}

/// The multi-vectors of every token after CLS, row-major `[rows, tokens, dim]`
/// (tokens = seq - 1), zero at padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Colbert {
    pub rows: usize,
    pub tokens: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Lexical weights in CSR form: row r's (id, weight) entries are at
/// `offsets[r]..offsets[r + 1]`, ids ascending within a row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lexical {
    pub ids: Vec<i64>,
    pub weights: Vec<f32>,
    pub offsets: Vec<i64>,
}

/// Everything one call returns: the sentence embedding, and what the request's
/// `model.outputs` adds to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub dense: Embeddings,
    pub token_weights: Option<TokenWeights>,
    pub colbert: Option<Colbert>,
    /// Set by the harness from `token_weights`, inside the call.
    pub lexical: Option<Lexical>,
}

impl Outputs {
    /// A dense-only call's output.
    pub fn dense(dense: Embeddings) -> Self {
        Outputs { dense, token_weights: None, colbert: None, lexical: None }
    }
}

/// BGE-M3's lexical weights of a batch: per row, for every token id, the
/// largest weight it has at a real position (mask != 0), keeping only weights
/// > 0 and dropping the `unused` ids (cls, eos, pad, unk), as FlagEmbedding's
/// encode aggregates them. `weights`, `ids`, `mask`: row-major `[rows, seq]`.
pub fn lexical_weights(weights: &[f32], ids: &[i64], mask: &[i64], rows: usize, seq: usize, unused: &[i64]) -> Lexical {
    let mut out = Lexical {
        ids: Vec::with_capacity(rows * seq / 2),
        weights: Vec::with_capacity(rows * seq / 2),
        offsets: Vec::with_capacity(rows + 1),
    };
    out.offsets.push(0);
    let mut row: Vec<(i64, f32)> = Vec::with_capacity(seq);
    for r in 0..rows {
        row.clear();
        for j in r * seq..(r + 1) * seq {
            let (id, w) = (ids[j], weights[j]);
            if mask[j] != 0 && w > 0.0 && !unused.contains(&id) {
                row.push((id, w));
            }
        }
        // by id, then the largest weight first: the first entry of each id is its max
        row.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut last = None;
        for &(id, w) in &row {
            if last != Some(id) {
                out.ids.push(id);
                out.weights.push(w);
                last = Some(id);
            }
        }
        out.offsets.push(out.ids.len() as i64);
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Check a call's outputs against what was asked and the protocol's shapes.
pub fn check_outputs(out: &Outputs, sparse: bool, colbert: bool, rows: usize, seq: usize) -> Result<()> {
    match (&out.token_weights, sparse) {
        (Some(t), true) => ensure!(
            t.rows == rows && t.seq == seq && t.data.len() == rows * seq,
            "{TOKEN_WEIGHTS} is [{}x{}] ({} floats), expected [{rows}x{seq}]",
            t.rows,
            t.seq,
            t.data.len()
        ),
        (None, true) => anyhow::bail!("the request asks for sparse; the engine returned no {TOKEN_WEIGHTS}"),
        (Some(_), false) => anyhow::bail!("the engine returned {TOKEN_WEIGHTS}, which the request does not ask for"),
        (None, false) => {}
    }
    match (&out.colbert, colbert) {
        (Some(c), true) => ensure!(
            c.rows == rows && c.tokens + 1 == seq && c.data.len() == c.rows * c.tokens * c.dim,
            "{COLBERT} is [{}x{}x{}] ({} floats), expected [{rows}x{}xD]",
            c.rows,
            c.tokens,
            c.dim,
            c.data.len(),
            seq - 1
        ),
        (None, true) => anyhow::bail!("the request asks for colbert; the engine returned no {COLBERT}"),
        (Some(_), false) => anyhow::bail!("the engine returned {COLBERT}, which the request does not ask for"),
        (None, false) => {}
    }
    Ok(())
}

/// Write one call's outputs (docs/protocol.md, Files): `sentence_embedding`,
/// and with sparse `token_weights` and the lexical weights, with colbert
/// `colbert_vectors`.
pub fn write_outputs(path: impl AsRef<Path>, out: &Outputs) -> Result<()> {
    let path = path.as_ref();
    let e = &out.dense;
    ensure!(e.data.len() == e.rows * e.dim, "embeddings hold {} floats, expected {}x{}", e.data.len(), e.rows, e.dim);
    let mut owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> =
        vec![(DENSE, Dtype::F32, vec![e.rows, e.dim], f32_bytes(&e.data))];
    if let Some(t) = &out.token_weights {
        owned.push((TOKEN_WEIGHTS, Dtype::F32, vec![t.rows, t.seq], f32_bytes(&t.data)));
    }
    if let Some(l) = &out.lexical {
        owned.push((LEXICAL_IDS, Dtype::I64, vec![l.ids.len()], i64_bytes(&l.ids)));
        owned.push((LEXICAL_WEIGHTS, Dtype::F32, vec![l.weights.len()], f32_bytes(&l.weights)));
        owned.push((LEXICAL_OFFSETS, Dtype::I64, vec![l.offsets.len()], i64_bytes(&l.offsets)));
    }
    if let Some(c) = &out.colbert {
        owned.push((COLBERT, Dtype::F32, vec![c.rows, c.tokens, c.dim], f32_bytes(&c.data)));
    }
    let mut views = Vec::with_capacity(owned.len());
    for (name, dtype, shape, data) in &owned {
        views.push((*name, TensorView::new(*dtype, shape.clone(), data)?));
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    safetensors::tensor::serialize_to_file(views, None, path)
        .with_context(|| format!("cannot write embeddings {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-computed case of tests/unit/test_outputs.py: repeated ids (max
    /// wins, a zero weight never enters), special tokens (0 cls, 2 eos, 1 pad,
    /// 3 unk) dropped, padding dropped by the mask even where it holds an
    /// ordinary id.
    #[test]
    fn lexical_weights_by_hand() {
        let ids = [0, 7, 9, 7, 3, 2, 1, 1, /**/ 0, 5, 5, 8, 2, 1, 9, 9];
        let mask = [1, 1, 1, 1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, 0, 0, 0];
        let w = [0.9, 0.2, 0.0, 0.5, 0.7, 0.8, 0.6, 0.6, /**/ 0.4, 0.3, 0.1, -0.2, 0.9, 0.5, 0.9, 0.9];
        let lex = lexical_weights(&w, &ids, &mask, 2, 8, &[0, 1, 2, 3]);
        assert_eq!(lex.offsets, vec![0, 1, 2]);
        assert_eq!(lex.ids, vec![7, 5]);
        assert_eq!(lex.weights, vec![0.5, 0.3]);
        // nothing dropped: every real id keeps its max, ids ascending
        let all = lexical_weights(&w, &ids, &mask, 2, 8, &[]);
        assert_eq!(all.offsets, vec![0, 4, 7]);
        assert_eq!(all.ids, vec![0, 2, 3, 7, 0, 2, 5]);
        assert_eq!(all.weights, vec![0.9, 0.8, 0.7, 0.5, 0.4, 0.9, 0.3]);
    }
}
