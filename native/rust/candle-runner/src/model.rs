//! Loading a `reference` artifact and embedding one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::decoder::Decoder;
use crate::encoders::{Bert, XlmRoberta};
use crate::config::Modality;
use crate::masks::{attention_bias, device_bias};
use crate::towers::{Tower, TowerFamily};
use crate::{config, pooling};

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
}

enum Backbone {
    Bert(Bert),
    Xlmr(XlmRoberta),
    Decoder(Decoder),
    Tower(Tower),
}

pub struct EmbeddingModel {
    spec: ModelSpec,
    backbone: Backbone,
    heads: Vec<Tensor>,
    device: Device,
    hidden_size: usize,
    /// Rope tables per sequence length (decoder families).
    rope_cache: HashMap<usize, Vec<(Tensor, Tensor)>>,
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
    /// Load the `reference` artifact folder `dir` onto `device` in float32.
    pub fn load(dir: &Path, spec: ModelSpec, device: &Device) -> Result<Self> {
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

        let files = weight_files(dir)?;
        // SAFETY: the weight files are memory-mapped read-only for the load only;
        // the tensors are copied out (converted to f32) before the map is dropped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };

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
            Family::Bert => Backbone::Bert(Bert::load(&config, vb)?),
            Family::XlmRoberta => Backbone::Xlmr(XlmRoberta::load(&config, vb)?),
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
                Backbone::Decoder(Decoder::load(cfg, vb)?)
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
                width = out;
                heads.push(w);
            }
        }

        Ok(EmbeddingModel {
            spec,
            backbone,
            heads,
            device: device.clone(),
            hidden_size,
            rope_cache: HashMap::new(),
        })
    }

    /// Width of the embedding (after the Dense heads).
    pub fn output_dim(&self) -> usize {
        self.heads
            .last()
            .map(|w| w.dims()[0])
            .unwrap_or(self.hidden_size)
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
            Backbone::Decoder(m) => {
                let ids = Tensor::from_vec(ids, batch * seq, dev)?;
                let mut biases = Vec::new();
                for p in m.patterns() {
                    let bias = if dev.is_cpu() {
                        let (bias, rows) = attention_bias(attention_mask, batch, seq, p);
                        Tensor::from_vec(bias, (batch, 1, rows, seq), dev)?
                    } else {
                        device_bias(attention_mask, batch, seq, p, dev)?
                    };
                    biases.push((p, bias));
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = self.rope_cache.entry(seq)
                {
                    let tables = m
                        .cfg
                        .ropes
                        .iter()
                        .map(|r| r.tensors(seq, dev))
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

    /// Dense heads, normalisation, copy to the host.
    fn finish(&self, mut x: Tensor) -> Result<Vec<f32>> {
        for w in &self.heads {
            x = pooling::dense(&x, w)?;
        }
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
        let h = self.hidden_states(input_ids, attention_mask, batch, seq)?;
        let x = match self.spec.pooling {
            Pooling::Mean => pooling::mean(&h, attention_mask)?,
            Pooling::Cls => pooling::cls(&h)?,
            Pooling::Last => pooling::last(&h, attention_mask)?,
            Pooling::Tower => unreachable!("checked at load"),
        };
        self.finish(x)
    }
}
