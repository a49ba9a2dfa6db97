//! BERT and XLM-RoBERTa written here, for the reduced precisions (bf16, fp16,
//! int8); float32 keeps candle-transformers' modules ([`crate::encoders`]).
//!
//! candle-transformers' encoders cannot run those honestly: their padding mask
//! is `(1 - mask) * f32::MIN` cast to the model's dtype, and f32::MIN is beyond
//! bf16's and f16's range, so it becomes -inf and `0 * -inf` makes every
//! attended position NaN; and their linear layers are `candle_nn::Linear`, which
//! cannot hold Q8_0 weights. This encoder is the same network as transformers'
//! (checked against candle-transformers' at float32 in the tests below):
//!
//! - embeddings: word + token type 0 + absolute position, LayerNorm; positions
//!   `0..S` (BERT) or `cumsum(ids != pad) * (ids != pad) + pad` (XLM-R);
//! - post-LayerNorm blocks: self-attention (q|k|v fused into one [`Linear`],
//!   scores `q k^T / sqrt(d)` plus the padding bias, softmax), output dense,
//!   residual + LayerNorm; intermediate dense, exact-erf GELU, output dense,
//!   residual + LayerNorm;
//! - the padding bias is 0 / [`crate::precision::masked_value`] at the model's
//!   dtype: finite, so a score plus it cannot overflow.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::linear::Linear;
use crate::precision::masked_value;

/// Which position ids the family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// `0..S` (BERT).
    Absolute,
    /// fairseq's, from the ids and the padding id (XLM-R).
    Fairseq { pad: i64 },
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(LayerNorm { w: vb.get(size, "weight")?, b: vb.get(size, "bias")?, eps })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.w, &self.b, self.eps as f32)
    }
}

struct Layer {
    /// `[3 H, H]`: query, key, value stacked (with their biases).
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

pub struct BertEncoder {
    word: Tensor,
    position: Tensor,
    /// Row 0 of the token type table (every token has type 0).
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    positions: Positions,
    dtype: DType,
    device: Device,
}

fn usize_of(config: &Value, key: &str) -> Result<usize> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| format!("config.json: missing or non-integer {key:?}"))
}

/// The prefix under which transformers saved the encoder (none, `bert.`, `roberta.`).
fn root(vb: VarBuilder) -> Result<VarBuilder> {
    for prefix in ["", "bert", "roberta"] {
        let v = if prefix.is_empty() { vb.clone() } else { vb.pp(prefix) };
        if v.contains_tensor("embeddings.word_embeddings.weight") {
            return Ok(v);
        }
    }
    bail!("model.safetensors has no embeddings.word_embeddings.weight (nor under bert. / roberta.)")
}

impl BertEncoder {
    /// Load from transformers' config.json and weights; `vb` at the model's
    /// dtype, `quantize`: the linear layers become Q8_0.
    pub fn load(config: &Value, vb: VarBuilder, positions: Positions, quantize: bool) -> Result<Self> {
        let act = config.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
        if act != "gelu" {
            bail!("hidden_act {act:?} is not supported here (exact gelu only)");
        }
        if let Some(p) = config.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                bail!("position_embedding_type {p:?} is not supported (absolute only)");
            }
        }
        let hidden = usize_of(config, "hidden_size")?;
        let heads = usize_of(config, "num_attention_heads")?;
        let inter = usize_of(config, "intermediate_size")?;
        let layers_n = usize_of(config, "num_hidden_layers")?;
        let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12);
        if hidden % heads != 0 {
            bail!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
        }
        let vb = root(vb)?;
        let ev = vb.pp("embeddings");
        let word = ev.pp("word_embeddings").get((usize_of(config, "vocab_size")?, hidden), "weight")?;
        let position = ev.pp("position_embeddings").get((usize_of(config, "max_position_embeddings")?, hidden), "weight")?;
        let token_type = ev.pp("token_type_embeddings").get_unchecked("weight")?.narrow(0, 0, 1)?.squeeze(0)?;
        let embed_norm = LayerNorm::load(ev.pp("LayerNorm"), hidden, eps)?;
        let dense = |v: VarBuilder, out: usize, inp: usize| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((v.get((out, inp), "weight")?, v.get(out, "bias")?))
        };
        let mut layers = Vec::with_capacity(layers_n);
        for i in 0..layers_n {
            let lv = vb.pp(format!("encoder.layer.{i}"));
            let sv = lv.pp("attention.self");
            let (q, bq) = dense(sv.pp("query"), hidden, hidden)?;
            let (k, bk) = dense(sv.pp("key"), hidden, hidden)?;
            let (v, bv) = dense(sv.pp("value"), hidden, hidden)?;
            let qkv = Linear::new(Tensor::cat(&[&q, &k, &v], 0)?, Some(Tensor::cat(&[&bq, &bk, &bv], 0)?), quantize)?
                .fused(3);
            let (wo, bo) = dense(lv.pp("attention.output.dense"), hidden, hidden)?;
            let (wi, bi) = dense(lv.pp("intermediate.dense"), inter, hidden)?;
            let (wd, bd) = dense(lv.pp("output.dense"), hidden, inter)?;
            layers.push(Layer {
                qkv,
                attn_out: Linear::new(wo, Some(bo), quantize)?,
                attn_norm: LayerNorm::load(lv.pp("attention.output.LayerNorm"), hidden, eps)?,
                intermediate: Linear::new(wi, Some(bi), quantize)?,
                output: Linear::new(wd, Some(bd), quantize)?,
                out_norm: LayerNorm::load(lv.pp("output.LayerNorm"), hidden, eps)?,
            });
        }
        Ok(BertEncoder {
            dtype: word.dtype(),
            device: word.device().clone(),
            word,
            position,
            token_type,
            embed_norm,
            layers,
            heads,
            head_dim: hidden / heads,
            hidden,
            positions,
        })
    }

    /// How many of the model's linear layers (q, k, v, attention output,
    /// intermediate, output per block) hold Q8_0 weights.
    pub fn quantized_linears(&self) -> usize {
        self.layers
            .iter()
            .map(|l| [&l.qkv, &l.attn_out, &l.intermediate, &l.output].iter().map(|w| w.quantized_parts()).sum::<usize>())
            .sum()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn position_ids(&self, ids: &[i64], batch: usize, seq: usize) -> Vec<u32> {
        match self.positions {
            Positions::Absolute => (0..batch).flat_map(|_| 0..seq as u32).collect(),
            Positions::Fairseq { pad } => {
                let mut out = Vec::with_capacity(batch * seq);
                for row in ids.chunks(seq) {
                    let mut count = 0i64;
                    for &t in row {
                        if t != pad {
                            count += 1;
                            out.push((count + pad) as u32);
                        } else {
                            out.push(pad as u32);
                        }
                    }
                }
                out
            }
        }
    }

    /// Last hidden states `[B, S, hidden]` at the model's dtype.
    pub fn forward(&self, input_ids: &[i64], mask: &[i64], batch: usize, seq: usize) -> Result<Tensor> {
        let dev = &self.device;
        let (b, s, h, d) = (batch, seq, self.heads, self.head_dim);
        let ids: Vec<u32> = input_ids
            .iter()
            .map(|&t| u32::try_from(t).map_err(|_| anyhow::anyhow!("token id {t} out of range")))
            .collect::<Result<_>>()?;
        let ids = Tensor::from_vec(ids, b * s, dev)?;
        let pos = Tensor::from_vec(self.position_ids(input_ids, b, s), b * s, dev)?;
        let x = (self.word.index_select(&ids, 0)? + self.position.index_select(&pos, 0)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.embed_norm.forward(&x)?; // [B*S, H]

        let blocked = masked_value(self.dtype);
        let bias: Vec<f32> = mask.iter().map(|&m| if m != 0 { 0.0 } else { blocked }).collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, s), dev)?.to_dtype(self.dtype)?;
        let scale = 1.0 / (d as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?.reshape((b, s, 3, h, d))?;
            let q = qkv.narrow(2, 0, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?; // [B, h, S, d]
            let k = qkv.narrow(2, 1, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let v = qkv.narrow(2, 2, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b * s, self.hidden))?;
            let a = layer.attn_norm.forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let f = layer.intermediate.forward(&a)?.gelu_erf()?;
            x = layer.out_norm.forward(&(layer.output.forward(&f)? + &a)?)?;
        }
        Ok(x.reshape((b, s, self.hidden))?)
    }
}

/// Largest absolute difference, in f32 (for tests).
#[cfg(test)]
fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    use candle_core::D;
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoders::{Bert, XlmRoberta};
    use std::collections::HashMap;

    /// A random BERT/XLM-R checkpoint in transformers' names (hidden 64, 2 layers).
    fn checkpoint(pad_row: usize) -> (Value, HashMap<String, Tensor>) {
        let dev = Device::Cpu;
        let (hid, inter, vocab, pos) = (64usize, 128usize, 100usize, 40usize);
        let config = serde_json::json!({"hidden_size": hid, "num_attention_heads": 4, "intermediate_size": inter,
            "num_hidden_layers": 2, "vocab_size": vocab, "max_position_embeddings": pos, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": pad_row});
        let mut t = HashMap::new();
        let mut put = |name: &str, shape: &[usize], std: f32| {
            let v = Tensor::randn(0f32, std, shape, &dev).unwrap();
            t.insert(name.to_string(), v);
        };
        put("embeddings.word_embeddings.weight", &[vocab, hid], 1.0);
        put("embeddings.position_embeddings.weight", &[pos, hid], 0.5);
        put("embeddings.token_type_embeddings.weight", &[2, hid], 0.5);
        for n in ["embeddings.LayerNorm"] {
            put(&format!("{n}.weight"), &[hid], 0.3);
            put(&format!("{n}.bias"), &[hid], 0.1);
        }
        for i in 0..2 {
            let p = format!("encoder.layer.{i}");
            for (name, out, inp) in [("attention.self.query", hid, hid), ("attention.self.key", hid, hid),
                                     ("attention.self.value", hid, hid), ("attention.output.dense", hid, hid),
                                     ("intermediate.dense", inter, hid), ("output.dense", hid, inter)] {
                put(&format!("{p}.{name}.weight"), &[out, inp], 0.15);
                put(&format!("{p}.{name}.bias"), &[out], 0.1);
            }
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                put(&format!("{p}.{n}.weight"), &[hid], 0.3);
                put(&format!("{p}.{n}.bias"), &[hid], 0.1);
            }
        }
        // LayerNorm weights around 1
        for (k, v) in t.iter_mut() {
            if k.ends_with("LayerNorm.weight") {
                *v = (v.clone() + 1.0).unwrap();
            }
        }
        (config, t)
    }

    fn batch(pad: i64) -> (Vec<i64>, Vec<i64>) {
        // B = 3, S = 9, lengths 9, 5, 2; pads are `pad`
        let lengths = [9usize, 5, 2];
        let mut ids = vec![pad; 27];
        let mut mask = vec![0i64; 27];
        for (r, &n) in lengths.iter().enumerate() {
            for c in 0..n {
                ids[r * 9 + c] = 3 + ((r * 31 + c * 7) % 90) as i64;
                mask[r * 9 + c] = 1;
            }
        }
        (ids, mask)
    }

    fn masked_rows(h: &Tensor, mask: &[i64]) -> Tensor {
        // zero the padded positions (their states are never pooled)
        let m = Tensor::from_vec(mask.iter().map(|&m| m as f32).collect::<Vec<_>>(), (3, 9, 1), &Device::Cpu).unwrap();
        h.to_dtype(DType::F32).unwrap().broadcast_mul(&m).unwrap()
    }

    #[test]
    fn matches_candle_transformers_at_f32_and_stays_close_at_reduced_precision() {
        for (family, pad) in [("bert", 0i64), ("xlm-roberta", 1)] {
            let (config, tensors) = checkpoint(pad as usize);
            let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
            let (ids, mask) = batch(pad);
            let ids_t = Tensor::from_vec(ids.iter().map(|&t| t as u32).collect::<Vec<_>>(), (3, 9), &Device::Cpu).unwrap();
            let mask_t = Tensor::from_vec(mask.iter().map(|&t| t as u32).collect::<Vec<_>>(), (3, 9), &Device::Cpu).unwrap();
            let (reference, positions) = if family == "bert" {
                (Bert::load(&config, vb.clone()).unwrap().forward(&ids_t, &mask_t).unwrap(), Positions::Absolute)
            } else {
                let mut c = config.clone();
                c["type_vocab_size"] = 2.into();
                (XlmRoberta::load(&c, vb.clone()).unwrap().forward(&ids_t, &mask_t).unwrap(), Positions::Fairseq { pad })
            };
            let reference = masked_rows(&reference, &mask);
            let ours = BertEncoder::load(&config, vb, positions, false).unwrap();
            assert_eq!(ours.quantized_linears(), 0);
            let out = masked_rows(&ours.forward(&ids, &mask, 3, 9).unwrap(), &mask);
            let d = max_abs(&out, &reference);
            assert!(d < 2e-5, "{family} f32: max abs {d}");

            for (dtype, quantize, tol) in [(DType::BF16, false, 0.3f32), (DType::F16, false, 0.05), (DType::F32, true, 0.3)] {
                let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &Device::Cpu);
                let m = BertEncoder::load(&config, vb, positions, quantize).unwrap();
                let h = m.forward(&ids, &mask, 3, 9).unwrap();
                assert_eq!(h.dtype(), dtype);
                assert_eq!(m.quantized_linears(), if quantize { 12 } else { 0 });
                let h = masked_rows(&h, &mask);
                let d = max_abs(&h, &reference);
                assert!(d > 0.0 && d < tol, "{family} {dtype:?} q={quantize}: max abs {d}");
            }
        }
    }
}
