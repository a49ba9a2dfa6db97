//! Workload and embedding files (safetensors).
//!
//! Workload: `input_ids` I64 [B,S], `attention_mask` I64 [B,S], `lengths` I64 [B].
//! Embeddings: `sentence_embedding` F32 [B,D].

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// One workload batch, row-major [batch, seq] for the two matrices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub lengths: Vec<i64>,
}

/// Embeddings in host memory, row-major [rows, dim].
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// A zero matrix [rows, dim].
    pub fn zeros(rows: usize, dim: usize) -> Self {
        Embeddings { rows, dim, data: vec![0.0; rows * dim] }
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn i64_tensor(st: &SafeTensors<'_>, name: &str, shape: &[usize], path: &Path) -> Result<Vec<i64>> {
    let t = st
        .tensor(name)
        .map_err(|e| anyhow::anyhow!("{}: tensor {name}: {e}", path.display()))?;
    ensure!(
        t.dtype() == Dtype::I64,
        "{}: tensor {name} has dtype {:?}, expected I64",
        path.display(),
        t.dtype()
    );
    ensure!(
        t.shape() == shape,
        "{}: tensor {name} has shape {:?}, expected {:?}",
        path.display(),
        t.shape(),
        shape
    );
    // safetensors data is little-endian and may be unaligned inside the file buffer.
    Ok(t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// Read a workload file. The shape is taken from the file's `input_ids`;
/// `expect`, when given as (batch, seq), must match it.
pub fn read_workload(path: impl AsRef<Path>, expect: Option<(usize, usize)>) -> Result<Batch> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read workload {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let ids = st
        .tensor("input_ids")
        .map_err(|e| anyhow::anyhow!("{}: tensor input_ids: {e}", path.display()))?;
    let (b, s) = match ids.shape() {
        [b, s] => (*b, *s),
        other => bail!("{}: input_ids has shape {:?}, expected [B,S]", path.display(), other),
    };
    if let Some((eb, es)) = expect {
        ensure!(
            (b, s) == (eb, es),
            "{}: workload is [{b},{s}] but the request says [{eb},{es}]",
            path.display()
        );
    }
    Ok(Batch {
        batch: b,
        seq: s,
        input_ids: i64_tensor(&st, "input_ids", &[b, s], path)?,
        attention_mask: i64_tensor(&st, "attention_mask", &[b, s], path)?,
        lengths: i64_tensor(&st, "lengths", &[b], path)?,
    })
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write a workload file (used by tests and tools; the orchestrator writes the real ones).
pub fn write_workload(path: impl AsRef<Path>, batch: &Batch) -> Result<()> {
    let path = path.as_ref();
    ensure!(batch.input_ids.len() == batch.batch * batch.seq, "input_ids length != batch*seq");
    ensure!(batch.attention_mask.len() == batch.batch * batch.seq, "attention_mask length != batch*seq");
    ensure!(batch.lengths.len() == batch.batch, "lengths length != batch");
    let ids = i64_bytes(&batch.input_ids);
    let mask = i64_bytes(&batch.attention_mask);
    let lens = i64_bytes(&batch.lengths);
    let views = vec![
        ("input_ids", TensorView::new(Dtype::I64, vec![batch.batch, batch.seq], &ids)?),
        ("attention_mask", TensorView::new(Dtype::I64, vec![batch.batch, batch.seq], &mask)?),
        ("lengths", TensorView::new(Dtype::I64, vec![batch.batch], &lens)?),
    ];
    safetensors::tensor::serialize_to_file(views, None, path)
        .with_context(|| format!("cannot write workload {}", path.display()))?;
    Ok(())
}

/// Write `sentence_embedding` F32 [rows, dim].
pub fn write_embeddings(path: impl AsRef<Path>, e: &Embeddings) -> Result<()> {
    let path = path.as_ref();
    ensure!(
        e.data.len() == e.rows * e.dim,
        "embeddings hold {} floats, expected {}x{}",
        e.data.len(),
        e.rows,
        e.dim
    );
    let bytes: Vec<u8> = e.data.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![e.rows, e.dim], &bytes)?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    safetensors::tensor::serialize_to_file(vec![("sentence_embedding", view)], None, path)
        .with_context(|| format!("cannot write embeddings {}", path.display()))?;
    Ok(())
}

/// Read `sentence_embedding` F32 [rows, dim] back.
pub fn read_embeddings(path: impl AsRef<Path>) -> Result<Embeddings> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let t = st
        .tensor("sentence_embedding")
        .map_err(|e| anyhow::anyhow!("{}: tensor sentence_embedding: {e}", path.display()))?;
    ensure!(t.dtype() == Dtype::F32, "sentence_embedding is {:?}, expected F32", t.dtype());
    let (rows, dim) = match t.shape() {
        [r, d] => (*r, *d),
        other => bail!("sentence_embedding has shape {:?}, expected [B,D]", other),
    };
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Ok(Embeddings { rows, dim, data })
}
