//! The towers of the two-tower multimodal families (`model.pooling: "tower"`,
//! docs/protocol.md "Towers"): CLIP (`CLIPModel`) and SigLIP (`SiglipModel`), text
//! or image, each with the family's own pooling and projection.
//!
//! The transformer stacks are candle-transformers' `clip` and `siglip` modules,
//! built from the artifact's config.json ([`crate::config::clip`] /
//! [`crate::config::siglip`], transformers' defaults for absent keys); only the
//! requested tower is loaded. What they do was checked against transformers 5.24
//! (`tests/multimodal_parity.py`), and where they would differ this file either
//! does the step itself or refuses the config at load:
//!
//! - CLIP text: candle's `ClipTextTransformer::forward` pools at `argmax(ids)`;
//!   here [`ClipTextTransformer::forward_with_mask`] gives the final-layer-norm
//!   states and the pooling is the first EOS (see [`crate::config::clip`] for
//!   why), then `text_projection` (no bias). candle applies the causal mask but no
//!   padding mask: with causal attention the state at position p depends on
//!   positions 0..=p only, and with right padding those are all real tokens when
//!   p is the first EOS, so the pooled state is exactly transformers' (causal +
//!   padding mask). A row whose mask has a 0 at or before its first EOS (not
//!   right-padded) is refused rather than silently computed differently.
//! - CLIP layer norms: candle fixes eps = 1e-5 and the MLP activation to
//!   quick_gelu; both are checked against config.json (every CLIP checkpoint of
//!   OpenAI uses these) and another value is a load error.
//! - CLIP image: patch conv (no bias), class embedding + positions,
//!   `pre_layrnorm`, encoder, CLS → `post_layernorm` → `visual_projection`.
//!   candle draws a random class embedding when the checkpoint has none: refused.
//! - SigLIP text: no attention mask (SigLIP is trained on max-length padded
//!   text without one; `attention_mask` in the workload is ignored), final layer
//!   norm, position S−1, `head` (with bias). candle's `head` is hidden→hidden, so
//!   `projection_size != hidden_size` is refused.
//! - SigLIP image: patch conv (with bias) + positions, encoder,
//!   `post_layernorm`, MAP head (probe attending over all patches through
//!   `nn.MultiheadAttention`'s `in_proj_*` / `out_proj`, layer norm, MLP residual),
//!   row 0. candle would interpolate the position table for another image size
//!   (transformers raises unless asked to interpolate): other sizes are refused.

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation as ClipActivation, ClipTextConfig as CandleClipText, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{
    ClipVisionConfig as CandleClipVision, ClipVisionTransformer,
};
use candle_transformers::models::siglip;
use serde_json::Value;

use crate::config::{self, Modality, TowerStack};

/// The multimodal families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerFamily {
    Clip,
    Siglip,
}

enum Inner {
    ClipText {
        model: ClipTextTransformer,
        projection: Linear,
        eos: i64,
    },
    ClipImage {
        model: ClipVisionTransformer,
        projection: Linear,
    },
    SiglipText {
        model: siglip::TextModel,
    },
    SiglipImage {
        model: siglip::VisionModel,
    },
}

/// One loaded tower, pooled and projected: `[B, output_dim]` per call.
pub struct Tower {
    inner: Inner,
    modality: Modality,
    output_dim: usize,
    /// Text: the longest sequence the position table holds.
    max_positions: usize,
    /// Image: [C, H, W] the tower takes.
    image: [usize; 3],
    device: Device,
    /// The weights' dtype (the precision the tower runs at).
    dtype: candle_core::DType,
}

fn same_eps(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs()
}

/// candle's CLIP encoder has quick_gelu and eps 1e-5 built in.
fn check_clip_stack(s: &TowerStack, which: &str) -> Result<()> {
    if s.hidden_act != "quick_gelu" {
        bail!(
            "CLIP {which} tower: hidden_act {:?} is not supported (candle-transformers' CLIP encoder is quick_gelu only)",
            s.hidden_act
        );
    }
    if !same_eps(s.layer_norm_eps, 1e-5) {
        bail!(
            "CLIP {which} tower: layer_norm_eps {} is not supported (candle-transformers' CLIP uses 1e-5)",
            s.layer_norm_eps
        );
    }
    Ok(())
}

/// transformers' `hidden_act` names as candle activations, exactly.
fn siglip_act(name: &str) -> Result<candle_nn::Activation> {
    use candle_nn::Activation as A;
    Ok(match name {
        // torch gelu(approximate="tanh"); candle's Tensor::gelu is the tanh form.
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => A::GeluPytorchTanh,
        "gelu" => A::Gelu, // erf
        "silu" | "swish" => A::Silu,
        "relu" => A::Relu,
        other => bail!("SigLIP hidden_act {other:?} is not supported"),
    })
}

fn require(vb: &VarBuilder, name: &str) -> Result<()> {
    ensure!(
        vb.contains_tensor(name),
        "model.safetensors has no {name} (expected a transformers {}-saved two-tower model)",
        name.split('.').next().unwrap_or("")
    );
    Ok(())
}

impl Tower {
    /// Load the `modality` tower of a CLIPModel / SiglipModel checkpoint (`vb` at
    /// the root of transformers' names: `text_model.*`, `vision_model.*`, ...).
    pub fn load(family: TowerFamily, modality: Modality, config: &Value, vb: VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let dtype = vb.dtype();
        match (family, modality) {
            (TowerFamily::Clip, _) => {
                let cfg = config::clip(config)?;
                match modality {
                    Modality::Text => {
                        let t = &cfg.text;
                        check_clip_stack(&t.stack, "text")?;
                        require(&vb, "text_model.embeddings.token_embedding.weight")?;
                        let c = CandleClipText {
                            vocab_size: t.vocab_size,
                            embed_dim: t.stack.hidden_size,
                            activation: ClipActivation::QuickGelu,
                            intermediate_size: t.stack.intermediate_size,
                            max_position_embeddings: t.max_position_embeddings,
                            pad_with: None,
                            num_hidden_layers: t.stack.num_hidden_layers,
                            num_attention_heads: t.stack.num_attention_heads,
                            projection_dim: cfg.projection_dim,
                        };
                        let model = ClipTextTransformer::new(vb.pp("text_model"), &c)?;
                        let projection = candle_nn::linear_no_bias(
                            t.stack.hidden_size,
                            cfg.projection_dim,
                            vb.pp("text_projection"),
                        )
                        .context("text_projection")?;
                        Ok(Tower {
                            inner: Inner::ClipText {
                                model,
                                projection,
                                eos: t.eos_token_id,
                            },
                            modality,
                            output_dim: cfg.projection_dim,
                            max_positions: t.max_position_embeddings,
                            image: [0; 3],
                            device,
                            dtype,
                        })
                    }
                    Modality::Image => {
                        let v = &cfg.vision;
                        check_clip_stack(&v.stack, "image")?;
                        require(&vb, "vision_model.embeddings.class_embedding")?;
                        let c = CandleClipVision {
                            embed_dim: v.stack.hidden_size,
                            activation: ClipActivation::QuickGelu,
                            intermediate_size: v.stack.intermediate_size,
                            num_hidden_layers: v.stack.num_hidden_layers,
                            num_attention_heads: v.stack.num_attention_heads,
                            projection_dim: cfg.projection_dim,
                            num_channels: v.num_channels,
                            image_size: v.image_size,
                            patch_size: v.patch_size,
                        };
                        let model = ClipVisionTransformer::new(vb.pp("vision_model"), &c)?;
                        let projection = candle_nn::linear_no_bias(
                            v.stack.hidden_size,
                            cfg.projection_dim,
                            vb.pp("visual_projection"),
                        )
                        .context("visual_projection")?;
                        Ok(Tower {
                            inner: Inner::ClipImage { model, projection },
                            modality,
                            output_dim: cfg.projection_dim,
                            max_positions: 0,
                            image: [v.num_channels, v.image_size, v.image_size],
                            device,
                            dtype,
                        })
                    }
                }
            }
            (TowerFamily::Siglip, _) => {
                let cfg = config::siglip(config)?;
                match modality {
                    Modality::Text => {
                        let t = &cfg.text;
                        if t.projection_size != t.stack.hidden_size {
                            bail!(
                                "SigLIP text projection_size {} != hidden_size {} is not supported (candle-transformers' head is square)",
                                t.projection_size,
                                t.stack.hidden_size
                            );
                        }
                        require(&vb, "text_model.embeddings.token_embedding.weight")?;
                        // bos/eos/pad ids are not used by the tower (pooling is S-1).
                        let c = siglip::TextConfig {
                            vocab_size: t.vocab_size,
                            hidden_size: t.stack.hidden_size,
                            intermediate_size: t.stack.intermediate_size,
                            num_hidden_layers: t.stack.num_hidden_layers,
                            num_attention_heads: t.stack.num_attention_heads,
                            max_position_embeddings: t.max_position_embeddings,
                            hidden_act: siglip_act(&t.stack.hidden_act)?,
                            layer_norm_eps: t.stack.layer_norm_eps,
                            pad_token_id: 1,
                            bos_token_id: 49406,
                            eos_token_id: 49407,
                        };
                        let model = siglip::TextModel::new(&c, vb.pp("text_model"))?;
                        Ok(Tower {
                            inner: Inner::SiglipText { model },
                            modality,
                            output_dim: t.projection_size,
                            max_positions: t.max_position_embeddings,
                            image: [0; 3],
                            device,
                            dtype,
                        })
                    }
                    Modality::Image => {
                        let v = &cfg.vision;
                        if !v.vision_use_head {
                            bail!("SigLIP vision_use_head is false: the image tower has no pooled output");
                        }
                        require(&vb, "vision_model.head.probe")?;
                        let c = siglip::VisionConfig {
                            hidden_size: v.stack.hidden_size,
                            intermediate_size: v.stack.intermediate_size,
                            num_hidden_layers: v.stack.num_hidden_layers,
                            num_attention_heads: v.stack.num_attention_heads,
                            num_channels: v.num_channels,
                            image_size: v.image_size,
                            patch_size: v.patch_size,
                            hidden_act: siglip_act(&v.stack.hidden_act)?,
                            layer_norm_eps: v.stack.layer_norm_eps,
                        };
                        let model = siglip::VisionModel::new(&c, true, vb.pp("vision_model"))?;
                        Ok(Tower {
                            inner: Inner::SiglipImage { model },
                            modality,
                            output_dim: v.stack.hidden_size,
                            max_positions: 0,
                            image: [v.num_channels, v.image_size, v.image_size],
                            device,
                            dtype,
                        })
                    }
                }
            }
        }
    }

    pub fn modality(&self) -> Modality {
        self.modality
    }

    /// Width of the pooled, projected output.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Image towers: the [C, H, W] they take.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image
    }

    /// Text tower: ids / mask i64 row-major `[batch, seq]` -> `[batch, output_dim]`
    /// (before normalisation).
    pub fn forward_text(
        &self,
        input_ids: &[i64],
        attention_mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Tensor> {
        ensure!(
            self.modality == Modality::Text,
            "this is the image tower: the workload must hold pixel_values"
        );
        ensure!(
            input_ids.len() == batch * seq,
            "input_ids holds {} ids, expected {batch}x{seq}",
            input_ids.len()
        );
        ensure!(
            seq <= self.max_positions,
            "sequence length {seq} exceeds the text tower's {} positions",
            self.max_positions
        );
        let ids: Vec<u32> = input_ids
            .iter()
            .map(|&t| u32::try_from(t).map_err(|_| anyhow::anyhow!("token id {t} out of range")))
            .collect::<Result<_>>()?;
        let ids = Tensor::from_vec(ids, (batch, seq), &self.device)?;
        match &self.inner {
            Inner::ClipText {
                model,
                projection,
                eos,
            } => {
                ensure!(
                    attention_mask.len() == batch * seq,
                    "attention_mask holds {} entries, expected {batch}x{seq}",
                    attention_mask.len()
                );
                let idx = first_eos(input_ids, attention_mask, batch, seq, *eos)?;
                let h = model.forward_with_mask(&ids, usize::MAX)?; // [B, S, H], final LN
                let hid = h.dim(2)?;
                let idx = Tensor::from_vec(idx, batch, &self.device)?;
                let pooled = h.reshape((batch * seq, hid))?.index_select(&idx, 0)?;
                Ok(projection.forward(&pooled)?)
            }
            Inner::SiglipText { model } => Ok(model.forward(&ids)?),
            _ => unreachable!("text tower"),
        }
    }

    /// Image tower: pixel_values f32 row-major `[batch, C, H, W]` ->
    /// `[batch, output_dim]` (before normalisation).
    pub fn forward_image(&self, pixel_values: &[f32], batch: usize, chw: [usize; 3]) -> Result<Tensor> {
        ensure!(
            self.modality == Modality::Image,
            "this is the text tower: the workload must hold input_ids"
        );
        ensure!(
            chw == self.image,
            "pixel_values are [{batch},{},{},{}], the image tower takes [B,{},{},{}]",
            chw[0],
            chw[1],
            chw[2],
            self.image[0],
            self.image[1],
            self.image[2]
        );
        let [c, h, w] = chw;
        ensure!(
            pixel_values.len() == batch * c * h * w,
            "pixel_values holds {} floats, expected {batch}x{c}x{h}x{w}",
            pixel_values.len()
        );
        // pixels come as f32; the tower runs at its weights' dtype
        let x = Tensor::from_slice(pixel_values, (batch, c, h, w), &self.device)?.to_dtype(self.dtype)?;
        match &self.inner {
            Inner::ClipImage { model, projection } => {
                Ok(projection.forward(&model.forward(&x)?)?)
            }
            Inner::SiglipImage { model } => Ok(model.forward(&x)?),
            _ => unreachable!("image tower"),
        }
    }
}

/// Flat indices `b * seq + p` of each row's first `eos` position. Every row must
/// hold an EOS (CLIP's tokenizer always appends one, also when truncating), and
/// the mask must be 1 up to it (right padding), see the module notes.
pub fn first_eos(ids: &[i64], mask: &[i64], batch: usize, seq: usize, eos: i64) -> Result<Vec<u32>> {
    (0..batch)
        .map(|b| {
            let row = &ids[b * seq..(b + 1) * seq];
            let p = row
                .iter()
                .position(|&t| t == eos)
                .with_context(|| format!("CLIP text row {b} holds no EOS token (id {eos})"))?;
            if let Some(q) = mask[b * seq..=b * seq + p].iter().position(|&m| m == 0) {
                bail!(
                    "CLIP text row {b}: attention_mask is 0 at position {q}, before the first EOS at {p} (expected right padding)"
                );
            }
            Ok((b * seq + p) as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_eos_takes_the_first_occurrence() {
        // pad = EOS = 9: row 0 is [5, 6, 9, 9], row 1 is [5, 9, 9, 9]
        let ids = [5, 6, 9, 9, 5, 9, 9, 9];
        let mask = [1, 1, 1, 0, 1, 1, 0, 0];
        assert_eq!(first_eos(&ids, &mask, 2, 4, 9).unwrap(), vec![2, 5]);
    }

    #[test]
    fn first_eos_refuses_missing_eos_and_left_padding() {
        assert!(first_eos(&[5, 6, 7], &[1, 1, 1], 1, 3, 9).is_err());
        assert!(first_eos(&[5, 6, 9], &[0, 1, 1], 1, 3, 9).is_err());
    }

    fn tiny(family: TowerFamily, text: Value, vision: Value, modality: Modality) -> Result<Tower> {
        let mut cfg = serde_json::json!({"text_config": text, "vision_config": vision});
        if family == TowerFamily::Clip {
            cfg["projection_dim"] = 8.into();
        }
        let vb = VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu);
        Tower::load(family, modality, &cfg, vb)
    }

    fn stack() -> Value {
        serde_json::json!({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "patch_size": 16, "image_size": 32})
    }

    #[test]
    fn towers_load_from_config_and_give_their_width() {
        let img = vec![0f32; 2 * 3 * 32 * 32];
        for (family, text_dim, image_dim) in [(TowerFamily::Clip, 8, 8), (TowerFamily::Siglip, 16, 16)] {
            let t = tiny(family, stack(), stack(), Modality::Text).unwrap();
            assert_eq!(t.output_dim(), text_dim);
            // EOS: 49407 for CLIP; SigLIP (vocab 32000) pools at S-1 whatever the ids
            let ids = match family {
                TowerFamily::Clip => [49406, 5, 49407, 49407, 49406, 7, 8, 49407],
                TowerFamily::Siglip => [4, 5, 1, 1, 6, 7, 8, 1],
            };
            let out = t.forward_text(&ids, &[1, 1, 1, 0, 1, 1, 1, 1], 2, 4).unwrap();
            assert_eq!(out.dims(), &[2, text_dim]);
            assert!(t.forward_image(&img, 2, [3, 32, 32]).is_err());

            let t = tiny(family, stack(), stack(), Modality::Image).unwrap();
            assert_eq!((t.output_dim(), t.image_shape()), (image_dim, [3, 32, 32]));
            assert_eq!(t.forward_image(&img, 2, [3, 32, 32]).unwrap().dims(), &[2, image_dim]);
            assert!(t.forward_image(&img[..3 * 16 * 16], 1, [3, 16, 16]).is_err());
            assert!(t.forward_text(&ids, &[1; 8], 2, 4).is_err());
        }
    }

    #[test]
    fn towers_refuse_what_candle_would_compute_differently() {
        let mut gelu = stack();
        gelu["hidden_act"] = "gelu".into();
        assert!(tiny(TowerFamily::Clip, gelu.clone(), stack(), Modality::Text).is_err());
        let mut eps = stack();
        eps["layer_norm_eps"] = 1e-6.into();
        assert!(tiny(TowerFamily::Clip, stack(), eps, Modality::Image).is_err());
        let mut proj = stack();
        proj["projection_size"] = 8.into();
        assert!(tiny(TowerFamily::Siglip, proj, stack(), Modality::Text).is_err());
        let mut nohead = stack();
        nohead["vision_use_head"] = false.into();
        assert!(tiny(TowerFamily::Siglip, stack(), nohead, Modality::Image).is_err());
        let mut quick = stack();
        quick["hidden_act"] = "quick_gelu".into();
        assert!(tiny(TowerFamily::Siglip, quick, stack(), Modality::Text).is_err());
        // SigLIP with erf gelu is fine (candle's Gelu is the erf form)
        assert!(tiny(TowerFamily::Siglip, gelu, stack(), Modality::Text).is_ok());
    }
}
