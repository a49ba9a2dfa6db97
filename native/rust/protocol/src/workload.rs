//! Workload and embedding files (safetensors), docs/protocol.md "Files".
//!
//! Workload: `input_ids` I64 [B,S], `attention_mask` I64 [B,S], `lengths` I64 [B].
//! Image workload: `pixel_values` F32 [B,3,H,W], no `input_ids`.
//! Corpus workload (throughput): `batches` I64 [K,2] (rows, seq of each batch in
//! feed order), `input_ids.k` / `attention_mask.k` I64 [rows,seq] per batch k,
//! `order` I64 [N] (corpus index of each fed row).
//! Embeddings: `sentence_embedding` F32 [B,D].

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// One workload batch.
///
/// Text: `input_ids` and `attention_mask` row-major [batch, seq], `lengths`
/// [batch]; `pixel_values` empty and `image` `None`.
/// Image: `pixel_values` row-major [batch, C, H, W] with `image` =
/// `Some([C, H, W])`, `seq` = H; `input_ids`, `attention_mask`, `lengths` empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub lengths: Vec<i64>,
    pub pixel_values: Vec<f32>,
    pub image: Option<[usize; 3]>,
}

impl Batch {
    /// A text batch [batch, seq].
    pub fn text(batch: usize, seq: usize, input_ids: Vec<i64>, attention_mask: Vec<i64>, lengths: Vec<i64>) -> Self {
        Batch { batch, seq, input_ids, attention_mask, lengths, pixel_values: Vec::new(), image: None }
    }

    /// An image batch [batch, C, H, W] (`seq` = H).
    pub fn image(batch: usize, chw: [usize; 3], pixel_values: Vec<f32>) -> Self {
        Batch {
            batch,
            seq: chw[1],
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            lengths: Vec::new(),
            pixel_values,
            image: Some(chw),
        }
    }

    /// `true` for an image batch.
    pub fn is_image(&self) -> bool {
        self.image.is_some()
    }

    /// Shape of `pixel_values` [B, C, H, W] of an image batch.
    pub fn pixel_shape(&self) -> Option<[usize; 4]> {
        self.image.map(|[c, h, w]| [self.batch, c, h, w])
    }
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

fn tensor<'a>(st: &'a SafeTensors<'a>, name: &str, dtype: Dtype, path: &Path) -> Result<TensorView<'a>> {
    let t = st
        .tensor(name)
        .map_err(|e| anyhow::anyhow!("{}: tensor {name}: {e}", path.display()))?;
    ensure!(
        t.dtype() == dtype,
        "{}: tensor {name} has dtype {:?}, expected {:?}",
        path.display(),
        t.dtype(),
        dtype
    );
    Ok(t)
}

fn check_shape(t: &TensorView<'_>, name: &str, shape: &[usize], path: &Path) -> Result<()> {
    ensure!(
        t.shape() == shape,
        "{}: tensor {name} has shape {:?}, expected {:?}",
        path.display(),
        t.shape(),
        shape
    );
    Ok(())
}

// safetensors data is little-endian and may be unaligned inside the file buffer.
fn le_i64(t: &TensorView<'_>) -> Vec<i64> {
    t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn le_f32(t: &TensorView<'_>) -> Vec<f32> {
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn i64_tensor(st: &SafeTensors<'_>, name: &str, shape: &[usize], path: &Path) -> Result<Vec<i64>> {
    let t = tensor(st, name, Dtype::I64, path)?;
    check_shape(&t, name, shape, path)?;
    Ok(le_i64(&t))
}

fn has_tensor(st: &SafeTensors<'_>, name: &str) -> bool {
    st.names().iter().any(|n| *n == name)
}

fn open_safetensors(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn deserialize<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))
}

/// Read a workload file: a text workload, or an image workload when the file
/// holds `pixel_values` F32 [B,C,H,W]. The shape is taken from the file's
/// `input_ids` (text) or `pixel_values` (image); `expect`, when given as
/// (batch, seq), must match (B, S) resp. (B, H): an image shape's `seq` is
/// the image side.
pub fn read_workload(path: impl AsRef<Path>, expect: Option<(usize, usize)>) -> Result<Batch> {
    let path = path.as_ref();
    let bytes = open_safetensors(path, "workload")?;
    let st = deserialize(&bytes, path)?;
    if has_tensor(&st, "pixel_values") {
        return read_image(&st, path, expect);
    }
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
    Ok(Batch::text(
        b,
        s,
        i64_tensor(&st, "input_ids", &[b, s], path)?,
        i64_tensor(&st, "attention_mask", &[b, s], path)?,
        i64_tensor(&st, "lengths", &[b], path)?,
    ))
}

fn read_image(st: &SafeTensors<'_>, path: &Path, expect: Option<(usize, usize)>) -> Result<Batch> {
    let t = tensor(st, "pixel_values", Dtype::F32, path)?;
    let (b, c, h, w) = match t.shape() {
        [b, c, h, w] => (*b, *c, *h, *w),
        other => bail!("{}: pixel_values has shape {:?}, expected [B,3,H,W]", path.display(), other),
    };
    ensure!(b > 0 && c > 0 && h > 0 && w > 0, "{}: pixel_values has an empty shape {:?}", path.display(), t.shape());
    if let Some((eb, es)) = expect {
        ensure!(
            (b, h) == (eb, es),
            "{}: image workload is [{b},{c},{h},{w}] but the request says batch {eb}, image side {es}",
            path.display()
        );
    }
    Ok(Batch::image(b, [c, h, w], le_f32(&t)))
}

/// Read a corpus workload (`scenario: throughput`): the K batches in feed
/// order. Each batch's `lengths` are derived from its attention mask (the
/// number of 1s of each row). The file's `order` must have one entry per fed
/// row (the sum of the batches' rows).
pub fn read_corpus(path: impl AsRef<Path>) -> Result<Vec<Batch>> {
    let path = path.as_ref();
    let bytes = open_safetensors(path, "corpus")?;
    let st = deserialize(&bytes, path)?;
    let t = tensor(&st, "batches", Dtype::I64, path)?;
    let k = match t.shape() {
        [k, 2] => *k,
        other => bail!("{}: batches has shape {:?}, expected [K,2]", path.display(), other),
    };
    ensure!(k > 0, "{}: the corpus has no batches", path.display());
    let table = le_i64(&t);
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let (rows, seq) = (table[2 * i], table[2 * i + 1]);
        ensure!(
            rows > 0 && seq > 0,
            "{}: batch {i} has shape [{rows},{seq}] in `batches`",
            path.display()
        );
        let (rows, seq) = (rows as usize, seq as usize);
        let ids = i64_tensor(&st, &format!("input_ids.{i}"), &[rows, seq], path)?;
        let mask = i64_tensor(&st, &format!("attention_mask.{i}"), &[rows, seq], path)?;
        let lengths = mask.chunks_exact(seq).map(|r| r.iter().filter(|&&m| m != 0).count() as i64).collect();
        out.push(Batch::text(rows, seq, ids, mask, lengths));
    }
    let n: usize = out.iter().map(|b| b.batch).sum();
    let order = tensor(&st, "order", Dtype::I64, path)?;
    ensure!(
        order.shape() == [n],
        "{}: order has shape {:?}, expected [{n}] (the rows of all batches)",
        path.display(),
        order.shape()
    );
    Ok(out)
}

/// Write a corpus workload (tests and tools). `order` defaults to 0..N.
pub fn write_corpus(path: impl AsRef<Path>, batches: &[Batch], order: Option<&[i64]>) -> Result<()> {
    let path = path.as_ref();
    let mut table = Vec::with_capacity(2 * batches.len());
    for (i, b) in batches.iter().enumerate() {
        ensure!(!b.is_image(), "corpus batch {i} is an image batch");
        ensure!(b.input_ids.len() == b.batch * b.seq, "batch {i}: input_ids length != batch*seq");
        ensure!(b.attention_mask.len() == b.batch * b.seq, "batch {i}: attention_mask length != batch*seq");
        table.push(b.batch as i64);
        table.push(b.seq as i64);
    }
    let n: usize = batches.iter().map(|b| b.batch).sum();
    let default_order: Vec<i64> = (0..n as i64).collect();
    let order = order.unwrap_or(&default_order);
    ensure!(order.len() == n, "order has {} entries, the batches {n} rows", order.len());
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        ("batches".into(), vec![batches.len(), 2], i64_bytes(&table)),
        ("order".into(), vec![n], i64_bytes(order)),
    ];
    for (i, b) in batches.iter().enumerate() {
        owned.push((format!("input_ids.{i}"), vec![b.batch, b.seq], i64_bytes(&b.input_ids)));
        owned.push((format!("attention_mask.{i}"), vec![b.batch, b.seq], i64_bytes(&b.attention_mask)));
    }
    let mut views = Vec::with_capacity(owned.len());
    for (name, shape, data) in &owned {
        views.push((name.as_str(), TensorView::new(Dtype::I64, shape.clone(), data)?));
    }
    safetensors::tensor::serialize_to_file(views, None, path)
        .with_context(|| format!("cannot write corpus {}", path.display()))?;
    Ok(())
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write a workload file (used by tests and tools; the orchestrator writes the
/// real ones): `pixel_values` for an image batch, else the three text tensors.
pub fn write_workload(path: impl AsRef<Path>, batch: &Batch) -> Result<()> {
    let path = path.as_ref();
    if let Some(shape) = batch.pixel_shape() {
        ensure!(
            batch.pixel_values.len() == shape.iter().product::<usize>(),
            "pixel_values length != batch*C*H*W"
        );
        let bytes: Vec<u8> = batch.pixel_values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes)?;
        safetensors::tensor::serialize_to_file(vec![("pixel_values", view)], None, path)
            .with_context(|| format!("cannot write workload {}", path.display()))?;
        return Ok(());
    }
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
