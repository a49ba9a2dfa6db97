//! Loading a `reference` artifact and embedding one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::bert::{BertEncoder, Positions};
use crate::config::Modality;
use crate::decoder::Decoder;
use crate::encoders::{Bert, XlmRoberta};
use crate::linear::{Linear, Q8_BLOCK};
use crate::masks::{attention_bias, device_bias};
use crate::precision::{bias_at, Precision};
use crate::towers::{Tower, TowerFamily};
use crate::{config, pooling};

/// A refusal: this model cannot run natively at the requested precision (the
/// runner reports it as error kind `unsupported`, the cell is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse<T>(why: String) -> Result<T> {
    Err(Refused(why).into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    Gemma3,
    Qwen3,
    XlmRoberta,
    Clip,
    Siglip,
}

impl Family {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "bert" => Family::Bert,
            "gemma3" => Family::Gemma3,
            "qwen3" => Family::Qwen3,
            "xlm-roberta" => Family::XlmRoberta,
            "clip" => Family::Clip,
            "siglip" => Family::Siglip,
            other => bail!(
                "unsupported model family {other:?} (bert, gemma3, qwen3, xlm-roberta, clip, siglip)"
            ),
        })
    }

    /// The two-tower multimodal families (pooling `tower`).
    pub fn tower(self) -> Option<TowerFamily> {
        match self {
            Family::Clip => Some(TowerFamily::Clip),
            Family::Siglip => Some(TowerFamily::Siglip),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Last,
    /// The multimodal tower's own pooling and projection (docs/protocol.md, Towers).
    Tower,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" => Pooling::Last,
            "tower" => Pooling::Tower,
            other => bail!("unsupported pooling {other:?} (mean, cls, last, tower)"),
        })
    }
}

/// What to build around the transformer: the request's `model` section.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub family: Family,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tensor names in heads.safetensors, applied in order after pooling.
    pub dense: Vec<String>,
    /// Which tower of a multimodal family runs (`text` for the text families).
    pub modality: Modality,
    /// BGE-M3's token heads each call also runs: the sparse head (token
    /// weights) and the colbert head (multi-vectors); docs/outputs.md.
    pub sparse: bool,
    pub colbert: bool,
}

enum Backbone {
    /// candle-transformers' BERT (float32).
    Bert(Bert),
    /// candle-transformers' XLM-R (float32).
    Xlmr(XlmRoberta),
    /// BERT / XLM-R written here (bf16, fp16, int8).
    Encoder(BertEncoder),
    Decoder(Decoder),
    Tower(Tower),
}

/// What an output mode's call returns beside the embedding: the token
/// weights `[B, S]` and the multi-vectors `[B, S-1, D]`, row-major on the host.
pub struct TokenOutputs {
    pub token_weights: Option<Vec<f32>>,
    pub colbert: Option<(Vec<f32>, usize)>,
}

pub struct EmbeddingModel {
    spec: ModelSpec,
    precision: Precision,
    backbone: Backbone,
    heads: Vec<Linear>,
    /// BGE-M3's sparse head (hidden -> 1) and colbert head (hidden -> D), f32.
    sparse: Option<Linear>,
    colbert: Option<Linear>,
    device: Device,
    hidden_size: usize,
    /// Rope tables per sequence length (decoder families), at the model's dtype.
    rope_cache: HashMap<usize, Vec<(Tensor, Tensor)>>,
}

/// Refuse int8 where Q8_0 cannot hold a layer: towers (candle-transformers'
/// modules have no quantized linear), or an input width that is not a
/// multiple of the Q8_0 block.
fn check_int8(spec: &ModelSpec, config: &Value) -> Result<()> {
    if spec.family.tower().is_some() {
        return refuse(format!(
            "int8: candle-transformers' {:?} towers use float linear layers that cannot hold q8_0 weights",
            spec.family
        ));
    }
    let get = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let hidden = get("hidden_size").context("config.json without hidden_size")?;
    let mut widths = vec![("hidden_size", hidden), ("intermediate_size", get("intermediate_size").unwrap_or(hidden))];
    if matches!(spec.family, Family::Gemma3 | Family::Qwen3) {
        let heads = get("num_attention_heads").unwrap_or(0);
        let head_dim = get("head_dim").unwrap_or(hidden / heads.max(1));
        widths.push(("num_attention_heads * head_dim", heads * head_dim));
    }
    for (name, w) in widths {
        if !w.is_multiple_of(Q8_BLOCK) {
            return refuse(format!(
                "int8: q8_0 quantizes a linear layer's inputs in blocks of {Q8_BLOCK}, and this model's {name} is {w}"
            ));
        }
    }
    Ok(())
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
        let mut files: Vec<String> = v["weight_map"]
            .as_object()
            .context("model.safetensors.index.json without weight_map")?
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    bail!(
        "{} holds neither model.safetensors nor model.safetensors.index.json",
        dir.display()
    )
}

impl EmbeddingModel {
    /// Load the `reference` artifact folder `dir` onto `device` at `precision`;
    /// a precision this model cannot run natively is a [`Refused`] error.
    pub fn load(dir: &Path, spec: ModelSpec, device: &Device, precision: Precision) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {}", config_path.display()))?;

        // embedperf_model.json repeats the family: refuse a mismatching artifact.
        let meta_path = dir.join("embedperf_model.json");
        if let Ok(text) = std::fs::read_to_string(&meta_path) {
            let meta: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", meta_path.display()))?;
            if let Some(f) = meta.get("family").and_then(Value::as_str) {
                if Family::parse(f).ok() != Some(spec.family) {
                    bail!(
                        "artifact family {f:?} does not match the requested {:?}",
                        spec.family
                    );
                }
            }
        }

        if precision.quantized() {
            if !device.is_cpu() {
                return refuse(
                    "int8: candle's CUDA quantized matmul dequantizes q8_0 weights for batched inputs, \
                     so it would not compute in int8"
                        .into(),
                );
            }
            check_int8(&spec, &config)?;
        }

        if precision == Precision::Bf16 && spec.modality == Modality::Image && device.is_cpu() {
            return refuse(
                "bf16: candle 0.11.1's CPU conv2d has no bf16 kernel (the image tower's patch embedding)".into(),
            );
        }

        let files = weight_files(dir)?;
        // SAFETY: the weight files are memory-mapped read-only for the load only;
        // the tensors are copied out (converted to the model's dtype) before the map is dropped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, precision.dtype(), device)? };

        match (spec.family.tower(), spec.pooling) {
            (Some(_), Pooling::Tower) | (None, Pooling::Mean | Pooling::Cls | Pooling::Last) => {}
            (Some(_), p) => bail!(
                "family {:?} takes pooling \"tower\" (its own pooling and projection), not {p:?}",
                spec.family
            ),
            (None, _) => bail!(
                "pooling \"tower\" is for the multimodal families (clip, siglip), not {:?}",
                spec.family
            ),
        }
        if spec.modality == Modality::Image && spec.family.tower().is_none() {
            bail!("family {:?} has no image tower", spec.family);
        }

        // Width of what pooling gives: the tower's projection, else hidden_size.
        let hidden_size = match spec.family.tower() {
            Some(_) => 0, // set from the tower below
            None => config
                .get("hidden_size")
                .and_then(Value::as_u64)
                .context("config.json without hidden_size")? as usize,
        };

        let backbone = match spec.family {
            Family::Clip | Family::Siglip => Backbone::Tower(Tower::load(
                spec.family.tower().unwrap(),
                spec.modality,
                &config,
                vb,
            )?),
            Family::Bert if precision == Precision::F32 => Backbone::Bert(Bert::load(&config, vb)?),
            Family::XlmRoberta if precision == Precision::F32 => Backbone::Xlmr(XlmRoberta::load(&config, vb)?),
            Family::Bert => Backbone::Encoder(BertEncoder::load(&config, vb, Positions::Absolute, precision.quantized())?),
            Family::XlmRoberta => {
                let pad = config.get("pad_token_id").and_then(Value::as_i64).unwrap_or(1);
                Backbone::Encoder(BertEncoder::load(&config, vb, Positions::Fairseq { pad }, precision.quantized())?)
            }
            Family::Gemma3 | Family::Qwen3 => {
                let cfg = if spec.family == Family::Gemma3 {
                    config::gemma3(&config)?
                } else {
                    config::qwen3(&config)?
                };
                let vb = if vb.contains_tensor("embed_tokens.weight") {
                    vb
                } else if vb.contains_tensor("model.embed_tokens.weight") {
                    vb.pp("model")
                } else {
                    bail!("model.safetensors has no embed_tokens.weight (nor model.embed_tokens.weight)");
                };
                Backbone::Decoder(Decoder::load(cfg, vb, precision.quantized())?)
            }
        };
        let hidden_size = match &backbone {
            Backbone::Tower(t) => t.output_dim(),
            _ => hidden_size,
        };

        let mut heads = Vec::new();
        if !spec.dense.is_empty() {
            let path = dir.join("heads.safetensors");
            let mut all = candle_core::safetensors::load(&path, device)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut width = hidden_size;
            for name in &spec.dense {
                let w = all
                    .remove(name)
                    .with_context(|| format!("{} has no tensor {name:?}", path.display()))?
                    .to_dtype(DType::F32)?;
                let (out, inp) = w
                    .dims2()
                    .with_context(|| format!("{name} is not a matrix"))?;
                if inp != width {
                    bail!(
                        "dense layer {name} takes {inp} inputs, the previous layer gives {width}"
                    );
                }
                if precision.quantized() && !inp.is_multiple_of(Q8_BLOCK) {
                    return refuse(format!(
                        "int8: q8_0 quantizes a linear layer's inputs in blocks of {Q8_BLOCK}, and dense layer {name} takes {inp}"
                    ));
                }
                width = out;
                let w = if precision.quantized() { w } else { w.to_dtype(precision.dtype())? };
                heads.push(Linear::new(w, None, precision.quantized())?);
            }
        }

        let (sparse, colbert) = token_heads(dir, &spec, device, precision, hidden_size)?;

        Ok(EmbeddingModel {
            spec,
            precision,
            backbone,
            heads,
            sparse,
            colbert,
            device: device.clone(),
            hidden_size,
            rope_cache: HashMap::new(),
        })
    }

    /// Width of the embedding (after the Dense heads).
    pub fn output_dim(&self) -> usize {
        self.heads
            .last()
            .map(Linear::out_features)
            .unwrap_or(self.hidden_size)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The dtype the transformer's weights were loaded at, read back from them.
    pub fn weights_dtype(&self) -> DType {
        match &self.backbone {
            Backbone::Encoder(m) => m.dtype(),
            Backbone::Decoder(m) => m.dtype(),
            // candle-transformers' modules and the towers: the VarBuilder's dtype
            _ => self.precision.dtype(),
        }
    }

    /// How many of the model's linear layers hold Q8_0 weights (blocks, heads).
    pub fn quantized_linears(&self) -> usize {
        let body = match &self.backbone {
            Backbone::Encoder(m) => m.quantized_linears(),
            Backbone::Decoder(m) => m.quantized_linears(),
            _ => 0,
        };
        body + self.heads.iter().map(Linear::quantized_parts).sum::<usize>()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Last hidden states `[B, S, hidden]` of the transformer.
    pub fn hidden_states(
        &mut self,
        input_ids: &[i64],
        attention_mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Tensor> {
        if input_ids.len() != batch * seq || attention_mask.len() != batch * seq {
            bail!(
                "batch arrays have {} ids and {} mask entries, expected {batch}x{seq}",
                input_ids.len(),
                attention_mask.len()
            );
        }
        let ids: Vec<u32> = input_ids
            .iter()
            .map(|&t| u32::try_from(t).map_err(|_| anyhow::anyhow!("token id {t} out of range")))
            .collect::<Result<_>>()?;
        let dev = &self.device;
        match &self.backbone {
            Backbone::Bert(m) => {
                let ids = Tensor::from_vec(ids, (batch, seq), dev)?;
                let mask: Vec<u32> = attention_mask.iter().map(|&m| (m != 0) as u32).collect();
                m.forward(&ids, &Tensor::from_vec(mask, (batch, seq), dev)?)
            }
            Backbone::Xlmr(m) => {
                let ids = Tensor::from_vec(ids, (batch, seq), dev)?;
                let mask: Vec<u32> = attention_mask.iter().map(|&m| (m != 0) as u32).collect();
                m.forward(&ids, &Tensor::from_vec(mask, (batch, seq), dev)?)
            }
            Backbone::Encoder(m) => m.forward(input_ids, attention_mask, batch, seq),
            Backbone::Decoder(m) => {
                let ids = Tensor::from_vec(ids, batch * seq, dev)?;
                let dtype = m.dtype();
                let mut biases = Vec::new();
                for p in m.patterns() {
                    let bias = if dev.is_cpu() {
                        let (bias, rows) = attention_bias(attention_mask, batch, seq, p);
                        Tensor::from_vec(bias, (batch, 1, rows, seq), dev)?
                    } else {
                        device_bias(attention_mask, batch, seq, p, dev)?
                    };
                    biases.push((p, bias_at(bias, dtype)?));
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = self.rope_cache.entry(seq)
                {
                    // tables computed in f32 (as transformers), then cast to the model's dtype
                    let tables = m
                        .cfg
                        .ropes
                        .iter()
                        .map(|r| {
                            let (c, s) = r.tensors(seq, dev)?;
                            Ok((c.to_dtype(dtype)?, s.to_dtype(dtype)?))
                        })
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    slot.insert(tables);
                }
                Ok(m.forward(&ids, batch, seq, &biases, &self.rope_cache[&seq])?)
            }
            Backbone::Tower(_) => bail!(
                "a multimodal tower gives pooled embeddings, not hidden states (use embed)"
            ),
        }
    }

    /// The image tower's input [C, H, W], `None` for text models.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match &self.backbone {
            Backbone::Tower(t) if t.modality() == Modality::Image => Some(t.image_shape()),
            _ => None,
        }
    }

    /// Dense heads (at the model's precision), normalisation in f32, copy to the host.
    fn finish(&self, mut x: Tensor) -> Result<Vec<f32>> {
        let head_dtype = self.precision.dtype();
        for w in &self.heads {
            x = w.forward(&x.to_dtype(head_dtype)?)?;
        }
        let mut x = x.to_dtype(DType::F32)?;
        if self.spec.normalize {
            x = pooling::l2_normalize(&x)?;
        }
        // to_vec copies to the host, which waits for the device.
        Ok(pooling::to_host(&x)?)
    }

    /// One call of an image tower: `pixel_values` f32 row-major `[batch, C, H, W]`
    /// -> embeddings `[batch, output_dim]` row-major on the host.
    pub fn embed_image(&mut self, pixel_values: &[f32], batch: usize, chw: [usize; 3]) -> Result<Vec<f32>> {
        let x = match &self.backbone {
            Backbone::Tower(t) => t.forward_image(pixel_values, batch, chw)?,
            _ => bail!("family {:?} has no image tower", self.spec.family),
        };
        self.finish(x)
    }

    /// One call of an output mode: the embeddings `[batch, output_dim]` and the
    /// token outputs asked, from one pass over the transformer. The heads run
    /// in f32 on the f32 hidden states, as FlagEmbedding's M3 model: sparse =
    /// relu(h W_s^T + b_s) at every position; colbert = (h[:, 1:] W_c^T + b_c),
    /// zero where the mask is 0, L2-normalised per vector when the model
    /// normalises.
    pub fn embed_outputs(
        &mut self,
        input_ids: &[i64],
        attention_mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<(Vec<f32>, TokenOutputs)> {
        let h = self.hidden_states(input_ids, attention_mask, batch, seq)?.to_dtype(DType::F32)?;
        let token_weights = match &self.sparse {
            Some(head) => Some(pooling::to_host(&head.forward(&h)?.relu()?.squeeze(2)?)?),
            None => None,
        };
        let colbert = match &self.colbert {
            Some(head) if seq > 1 => {
                let v = head.forward(&h.narrow(1, 1, seq - 1)?)?;
                let dim = v.dim(2)?;
                let keep: Vec<u8> = (0..batch)
                    .flat_map(|b| attention_mask[b * seq + 1..(b + 1) * seq].iter().map(|&m| (m != 0) as u8))
                    .collect();
                let keep = Tensor::from_vec(keep, (batch, seq - 1, 1), h.device())?.broadcast_as(v.shape())?;
                // a select, not a multiply: padding is exactly 0 (and stays 0 through the normalisation)
                let mut v = keep.where_cond(&v, &v.zeros_like()?)?;
                if self.spec.normalize {
                    v = pooling::l2_normalize(&v)?;
                }
                Some((pooling::to_host(&v)?, dim))
            }
            Some(head) => Some((Vec::new(), head.out_features())),
            None => None,
        };
        let x = match self.spec.pooling {
            Pooling::Mean => pooling::mean(&h, attention_mask)?,
            Pooling::Cls => pooling::cls(&h)?,
            Pooling::Last => pooling::last(&h, attention_mask)?,
            Pooling::Tower => unreachable!("checked at load"),
        };
        Ok((self.finish(x)?, TokenOutputs { token_weights, colbert }))
    }

    /// One call: embeddings `[batch, output_dim]` row-major on the host.
    pub fn embed(
        &mut self,
        input_ids: &[i64],
        attention_mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        if let Backbone::Tower(t) = &self.backbone {
            let x = t.forward_text(input_ids, attention_mask, batch, seq)?;
            return self.finish(x);
        }
        // pooling in f32 over the transformer's last hidden states
        let h = self.hidden_states(input_ids, attention_mask, batch, seq)?.to_dtype(DType::F32)?;
        let x = match self.spec.pooling {
            Pooling::Mean => pooling::mean(&h, attention_mask)?,
            Pooling::Cls => pooling::cls(&h)?,
            Pooling::Last => pooling::last(&h, attention_mask)?,
            Pooling::Tower => unreachable!("checked at load"),
        };
        self.finish(x)
    }
}

/// BGE-M3's token heads the spec asks for, from heads.safetensors under the
/// names embedperf_model.json gives them (`token_heads`), in f32. Refused at a
/// reduced precision (the heads would run at f32 on states of another dtype:
/// not that precision's result) and for the towers (no such heads).
fn token_heads(
    dir: &Path,
    spec: &ModelSpec,
    device: &Device,
    precision: Precision,
    hidden: usize,
) -> Result<(Option<Linear>, Option<Linear>)> {
    if !spec.sparse && !spec.colbert {
        return Ok((None, None));
    }
    if precision != Precision::F32 {
        return refuse(format!(
            "BGE-M3's sparse and colbert heads run at fp32 only here, not {}: they would compute in f32 on {} states",
            precision.name(),
            precision.name()
        ));
    }
    if spec.family.tower().is_some() {
        bail!("family {:?} has no sparse or colbert head", spec.family);
    }
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("embedperf_model.json")).context("reading embedperf_model.json")?,
    )?;
    let path = dir.join("heads.safetensors");
    let mut all = candle_core::safetensors::load(&path, device).with_context(|| format!("reading {}", path.display()))?;
    let mut load = |output: &str, wanted: bool| -> Result<Option<Linear>> {
        if !wanted {
            return Ok(None);
        }
        let names = meta
            .get("token_heads")
            .and_then(|t| t.get(output))
            .with_context(|| format!("embedperf_model.json names no {output} head (token_heads)"))?;
        let name = |k: &str| names.get(k).and_then(Value::as_str).map(String::from);
        let w = name("weight").context("token head without a weight")?;
        let w = all.remove(&w).with_context(|| format!("{} has no tensor {w:?}", path.display()))?.to_dtype(DType::F32)?;
        let (_, inp) = w.dims2()?;
        if inp != hidden {
            bail!("the {output} head takes {inp} inputs, the encoder gives {hidden}");
        }
        let b = match name("bias") {
            Some(b) => Some(all.remove(&b).with_context(|| format!("{} has no tensor {b:?}", path.display()))?.to_dtype(DType::F32)?),
            None => None,
        };
        Ok(Some(Linear::new(w, b, false)?))
    };
    let sparse = load("sparse", spec.sparse)?;
    let colbert = load("colbert", spec.colbert)?;
    Ok((sparse, colbert))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: Family) -> ModelSpec {
        let pooling = if family.tower().is_some() { Pooling::Tower } else { Pooling::Mean };
        ModelSpec { family, pooling, normalize: true, dense: Vec::new(), modality: Modality::Text, sparse: false, colbert: false }
    }

    fn refusal(r: Result<()>) -> String {
        r.unwrap_err().downcast_ref::<Refused>().expect("a Refused error").0.clone()
    }

    #[test]
    fn int8_is_refused_where_q8_0_cannot_hold_a_layer() {
        let ok = serde_json::json!({"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "head_dim": 16});
        check_int8(&spec(Family::Bert), &ok).unwrap();
        check_int8(&spec(Family::Gemma3), &ok).unwrap();
        assert!(refusal(check_int8(&spec(Family::Clip), &ok)).contains("towers"));
        assert!(refusal(check_int8(&spec(Family::Siglip), &ok)).contains("towers"));
        let narrow = serde_json::json!({"hidden_size": 48, "intermediate_size": 96});
        assert!(refusal(check_int8(&spec(Family::Bert), &narrow)).contains("hidden_size is 48"));
        let heads = serde_json::json!({"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 3, "head_dim": 20});
        assert!(refusal(check_int8(&spec(Family::Qwen3), &heads)).contains("num_attention_heads * head_dim is 60"));
    }
}
