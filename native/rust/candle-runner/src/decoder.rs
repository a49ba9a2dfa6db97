//! The RMSNorm / rotary / gated-MLP transformer used here for both EmbeddingGemma
//! (Gemma3TextModel with bidirectional attention) and Qwen3-Embedding (Qwen3Model).
//!
//! Written for this project instead of using candle-transformers' `gemma3` and
//! `qwen3` modules: those are causal language models that keep a KV cache, build
//! a causal mask without a padding mask, and (gemma3) return logits; EmbeddingGemma
//! needs bidirectional attention, a symmetric sliding window, the padding mask and
//! the final hidden states.
//!
//! Numerics follow transformers' eager path in float32:
//! - Gemma RMSNorm `x * rsqrt(mean(x^2) + eps) * (1 + w)`; Qwen3 RMSNorm `* w`.
//! - Gemma3 embeddings scaled by `float32(sqrt(hidden_size))`.
//! - q/k RMSNorm per head before rope; the attention scale is folded into the
//!   q-norm weight (`(1 + w) * scale`), which equals scaling q·k.
//! - attention: `softmax(q k^T * scale + bias)`, bias from [`crate::masks`].
//! - GQA without copying k/v: q `[B, KV, rep * S, D]` against k `[B, KV, S, D]`
//!   (head `h` uses kv head `h / rep`, as transformers' `repeat_kv`).
//! - gate and up projections (and q, k, v) are fused into one matmul each.
//! - precision ([`crate::precision`]): weights, norms and activations at the
//!   model's dtype; for int8 the four linear layers per block are Q8_0 [`Linear`]s.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::DecoderConfig;
use crate::linear::Linear;
use crate::masks::Pattern;

struct Layer {
    pattern: Pattern,
    rope: usize,
    /// `[(H + 2 KV) * D, hidden]`: q, k, v projections stacked (with their biases).
    wqkv: Linear,
    wo: Linear,
    /// q-norm scale with the attention scale folded in.
    q_alpha: Tensor,
    k_alpha: Tensor,
    input_norm: Tensor,
    /// Gemma3 only: norm of the attention output before the residual add.
    post_attn_norm: Option<Tensor>,
    /// Gemma3 `pre_feedforward_layernorm`; Qwen3 `post_attention_layernorm`.
    pre_ff_norm: Tensor,
    /// Gemma3 only: norm of the MLP output before the residual add.
    post_ff_norm: Option<Tensor>,
    /// `[2 * intermediate, hidden]`: gate and up stacked.
    w_gate_up: Linear,
    w_down: Linear,
}

pub struct Decoder {
    pub cfg: DecoderConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    final_norm: Tensor,
    device: Device,
}

fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(x, alpha, eps as f32)
}

impl Decoder {
    /// `vb` points at the model root (holding `embed_tokens`, `layers`, `norm`),
    /// at the model's dtype; `quantize`: the linear layers become Q8_0.
    pub fn load(cfg: DecoderConfig, vb: VarBuilder, quantize: bool) -> Result<Self> {
        let device = vb.device().clone();
        let (h, kv, d, hid, inter) = (
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
            cfg.hidden_size,
            cfg.intermediate_size,
        );
        if h % kv != 0 {
            candle_core::bail!(
                "num_attention_heads {h} is not a multiple of num_key_value_heads {kv}"
            );
        }
        let norm_w = |vb: VarBuilder, n: usize, scale: f64| -> Result<Tensor> {
            let w = vb.get(n, "weight")?;
            let w = if cfg.norm_plus_one { (w + 1.0)? } else { w };
            if scale != 1.0 {
                w * scale
            } else {
                Ok(w)
            }
        };
        let embed = vb.pp("embed_tokens").get((cfg.vocab_size, hid), "weight")?;
        let mut layers = Vec::with_capacity(cfg.layers.len());
        for (i, spec) in cfg.layers.iter().enumerate() {
            let lv = vb.pp(format!("layers.{i}"));
            let av = lv.pp("self_attn");
            let q = av.pp("q_proj").get((h * d, hid), "weight")?;
            let k = av.pp("k_proj").get((kv * d, hid), "weight")?;
            let v = av.pp("v_proj").get((kv * d, hid), "weight")?;
            let wqkv = Tensor::cat(&[&q, &k, &v], 0)?;
            let (bqkv, bo) = if cfg.attention_bias {
                let bq = av.pp("q_proj").get(h * d, "bias")?;
                let bk = av.pp("k_proj").get(kv * d, "bias")?;
                let bv = av.pp("v_proj").get(kv * d, "bias")?;
                (
                    Some(Tensor::cat(&[&bq, &bk, &bv], 0)?),
                    Some(av.pp("o_proj").get(hid, "bias")?),
                )
            } else {
                (None, None)
            };
            let wqkv = Linear::new(wqkv, bqkv, quantize)?.fused(3);
            let wo = Linear::new(av.pp("o_proj").get((hid, h * d), "weight")?, bo, quantize)?;
            let q_alpha = norm_w(av.pp("q_norm"), d, cfg.attn_scale)?;
            let k_alpha = norm_w(av.pp("k_norm"), d, 1.0)?;
            let input_norm = norm_w(lv.pp("input_layernorm"), hid, 1.0)?;
            let (post_attn_norm, pre_ff_norm, post_ff_norm) = if cfg.sandwich_norms {
                (
                    Some(norm_w(lv.pp("post_attention_layernorm"), hid, 1.0)?),
                    norm_w(lv.pp("pre_feedforward_layernorm"), hid, 1.0)?,
                    Some(norm_w(lv.pp("post_feedforward_layernorm"), hid, 1.0)?),
                )
            } else {
                (
                    None,
                    norm_w(lv.pp("post_attention_layernorm"), hid, 1.0)?,
                    None,
                )
            };
            let mv = lv.pp("mlp");
            let gate = mv.pp("gate_proj").get((inter, hid), "weight")?;
            let up = mv.pp("up_proj").get((inter, hid), "weight")?;
            let w_gate_up = Linear::new(Tensor::cat(&[&gate, &up], 0)?, None, quantize)?.fused(2);
            let w_down = Linear::new(mv.pp("down_proj").get((hid, inter), "weight")?, None, quantize)?;
            layers.push(Layer {
                pattern: spec.pattern,
                rope: spec.rope,
                wqkv,
                wo,
                q_alpha,
                k_alpha,
                input_norm,
                post_attn_norm,
                pre_ff_norm,
                post_ff_norm,
                w_gate_up,
                w_down,
            });
        }
        let final_norm = norm_w(vb.pp("norm"), hid, 1.0)?;
        Ok(Decoder {
            cfg,
            embed,
            layers,
            final_norm,
            device,
        })
    }

    /// The distinct mask patterns of the layers, in first-use order.
    pub fn patterns(&self) -> Vec<Pattern> {
        let mut out: Vec<Pattern> = Vec::new();
        for l in &self.layers {
            if !out.contains(&l.pattern) {
                out.push(l.pattern);
            }
        }
        out
    }

    /// Last hidden states `[B, S, hidden]` (after the final norm).
    ///
    /// `ids`: u32 `[B * S]`. `biases[i]`: additive mask `[B, 1, R, S]` for
    /// `self.patterns()[i]`. `ropes[j]`: `(cos, sin)` `[S, D/2]` for `cfg.ropes[j]`.
    pub fn forward(
        &self,
        ids: &Tensor,
        batch: usize,
        seq: usize,
        biases: &[(Pattern, Tensor)],
        ropes: &[(Tensor, Tensor)],
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let eps = cfg.rms_norm_eps;
        let mut x = self.embed.index_select(ids, 0)?; // [N, hidden]
        if let Some(scale) = cfg.embed_scale {
            // torch multiplies by a float32 scalar tensor: round the scale to f32 first.
            x = (x * (scale as f32) as f64)?;
        }
        for layer in &self.layers {
            let bias = &biases
                .iter()
                .find(|(p, _)| *p == layer.pattern)
                .expect("a bias for every layer pattern")
                .1;
            let (cos, sin) = &ropes[layer.rope];
            let residual = &x;
            let h = rms_norm(&x, &layer.input_norm, eps)?;
            let h = self.attention(&h, layer, bias, cos, sin, batch, seq)?;
            let h = match &layer.post_attn_norm {
                Some(a) => rms_norm(&h, a, eps)?,
                None => h,
            };
            let x1 = (residual + h)?;
            let h = rms_norm(&x1, &layer.pre_ff_norm, eps)?;
            let h = self.mlp(&h, layer)?;
            let h = match &layer.post_ff_norm {
                Some(a) => rms_norm(&h, a, eps)?,
                None => h,
            };
            x = (x1 + h)?;
        }
        let x = rms_norm(&x, &self.final_norm, eps)?;
        x.reshape((batch, seq, cfg.hidden_size))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        x: &Tensor,
        layer: &Layer,
        bias: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        b: usize,
        s: usize,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (h, kv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let rep = h / kv;
        let qkv = layer.wqkv.forward(x)?.reshape((b, s, h + 2 * kv, d))?;
        let q = qkv.narrow(2, 0, h)?.contiguous()?;
        let k = qkv.narrow(2, h, kv)?.contiguous()?;
        let v = qkv.narrow(2, h + kv, kv)?;
        let q = rms_norm(&q, &layer.q_alpha, cfg.rms_norm_eps)?;
        let k = rms_norm(&k, &layer.k_alpha, cfg.rms_norm_eps)?;
        let q = crate::rope::apply(&q, cos, sin)?
            .transpose(1, 2)?
            .contiguous()?; // [B, H, S, D]
        let k = crate::rope::apply(&k, cos, sin)?
            .transpose(1, 2)?
            .contiguous()?; // [B, KV, S, D]
        let v = v.transpose(1, 2)?.contiguous()?; // [B, KV, S, D]
        let q = q.reshape((b, kv, rep * s, d))?;
        let scores = q.matmul(&k.t()?)?.reshape((b, h, s, s))?;
        let scores = match cfg.attn_softcap {
            Some(cap) => ((scores / cap)?.tanh()? * cap)?,
            None => scores,
        };
        let scores = scores.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kv, rep * s, s))?;
        let ctx = probs.matmul(&v)?; // [B, KV, rep * S, D] == [B, H, S, D]
        let ctx = ctx
            .reshape((b, h, s, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * s, h * d))?;
        layer.wo.forward(&ctx)
    }

    fn mlp(&self, x: &Tensor, layer: &Layer) -> Result<Tensor> {
        let gu = layer.w_gate_up.forward(x)?;
        let a = crate::kernels::gated_act(&gu, self.cfg.act)?;
        layer.w_down.forward(&a)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// How many of the model's linear layers (q, k, v, o, gate, up, down per
    /// block) hold Q8_0 weights.
    pub fn quantized_linears(&self) -> usize {
        self.layers
            .iter()
            .map(|l| [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down].iter().map(|w| w.quantized_parts()).sum::<usize>())
            .sum()
    }
}
