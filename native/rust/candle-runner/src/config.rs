//! Reading transformers' `config.json` for the families written here, with the
//! defaults transformers 5 applies when a key is absent.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::masks::{bidirectional_radius, Pattern};
use crate::rope::Rotary;

/// Activation of the gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// gelu_pytorch_tanh / gelu_new (tanh approximation).
    GeluTanh,
    /// exact gelu (erf).
    GeluErf,
    /// silu / swish.
    Silu,
}

impl Act {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Act::GeluTanh,
            "gelu" => Act::GeluErf,
            "silu" | "swish" => Act::Silu,
            other => bail!("unsupported activation {other:?}"),
        })
    }
}

/// One layer's attention layout: which keys it may see and which rope table it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    pub pattern: Pattern,
    pub rope: usize,
}

/// Configuration of the RMSNorm / rope / gated-MLP transformer shared by Gemma3 and
/// Qwen3 (see [`crate::decoder`]).
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub family: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    /// Scale of q·k (Gemma3: query_pre_attn_scalar^-0.5; Qwen3: head_dim^-0.5).
    pub attn_scale: f64,
    /// tanh soft-capping of the attention logits (Gemma3 `attn_logit_softcapping`).
    pub attn_softcap: Option<f64>,
    pub act: Act,
    /// Gemma RMSNorm scales by `(1 + weight)`; Llama/Qwen RMSNorm by `weight`.
    pub norm_plus_one: bool,
    /// Gemma3's four norms per layer (post-attention and pre/post feed-forward).
    pub sandwich_norms: bool,
    /// Gemma3 multiplies token embeddings by sqrt(hidden_size) (as a float32).
    pub embed_scale: Option<f64>,
    pub attention_bias: bool,
    pub layers: Vec<LayerSpec>,
    pub ropes: Vec<Rotary>,
}

fn get_usize(v: &Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .with_context(|| format!("config.json: missing or non-integer {key:?}"))
}

fn opt_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

fn opt_f64(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn opt_bool(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Parse one rope parameter set (`{"rope_type": ..., "rope_theta": ..., "factor": ...}`).
fn rope_from(params: Option<&Value>, default_theta: f64, head_dim: usize) -> Result<Rotary> {
    let theta = params
        .and_then(|p| opt_f64(p, "rope_theta"))
        .unwrap_or(default_theta);
    let kind = params
        .and_then(|p| opt_str(p, "rope_type").or_else(|| opt_str(p, "type")))
        .unwrap_or("default");
    match kind {
        "default" => Ok(Rotary::new(theta, head_dim, None)),
        "linear" => {
            let factor = params
                .and_then(|p| opt_f64(p, "factor"))
                .context("linear rope without factor")?;
            Ok(Rotary::new(theta, head_dim, Some(factor)))
        }
        other => bail!("unsupported rope_type {other:?} (supported: default, linear)"),
    }
}

fn layer_types(v: &Value) -> Option<Vec<String>> {
    v.get("layer_types").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    })
}

/// Gemma3TextConfig (EmbeddingGemma: `use_bidirectional_attention: true`).
pub fn gemma3(v: &Value) -> Result<DecoderConfig> {
    let hidden_size = get_usize(v, "hidden_size")?;
    let num_heads = get_usize(v, "num_attention_heads")?;
    let num_layers = get_usize(v, "num_hidden_layers")?;
    let head_dim = opt_usize(v, "head_dim").unwrap_or(256);
    let bidirectional = opt_bool(v, "use_bidirectional_attention").unwrap_or(false);
    let sliding_window = opt_usize(v, "sliding_window").unwrap_or(4096);
    let act = Act::parse(
        opt_str(v, "hidden_activation")
            .or_else(|| opt_str(v, "hidden_act"))
            .unwrap_or("gelu_pytorch_tanh"),
    )?;

    // Layer types: explicit list, else every `pattern`-th layer is full attention.
    let types = match layer_types(v) {
        Some(t) => t,
        None => {
            let pattern = opt_usize(v, "sliding_window_pattern")
                .or_else(|| opt_usize(v, "_sliding_window_pattern"))
                .unwrap_or(6);
            (0..num_layers)
                .map(|i| {
                    if (i + 1) % pattern != 0 {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                    .to_string()
                })
                .collect()
        }
    };
    if types.len() < num_layers {
        bail!(
            "config.json: layer_types has {} entries for {num_layers} layers",
            types.len()
        );
    }

    // Rope: transformers 5 writes rope_parameters per layer type; older configs
    // have rope_theta (global), rope_local_base_freq (local) and rope_scaling
    // (applied to full attention only).
    let rp = v.get("rope_parameters").filter(|x| !x.is_null());
    let full_params = rp
        .and_then(|p| p.get("full_attention"))
        .cloned()
        .or_else(|| {
            let mut o = v
                .get("rope_scaling")
                .filter(|x| !x.is_null())
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            if let Some(t) = v.get("rope_theta") {
                o["rope_theta"] = t.clone();
            }
            Some(o)
        });
    let local_params = rp
        .and_then(|p| p.get("sliding_attention"))
        .cloned()
        .or_else(|| {
            let mut o = Value::Object(Default::default());
            if let Some(t) = v.get("rope_local_base_freq") {
                o["rope_theta"] = t.clone();
            }
            Some(o)
        });
    let ropes = vec![
        rope_from(full_params.as_ref(), 1_000_000.0, head_dim)?,
        rope_from(local_params.as_ref(), 10_000.0, head_dim)?,
    ];

    let layers = types[..num_layers]
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(LayerSpec {
                pattern: if bidirectional {
                    Pattern::Full
                } else {
                    Pattern::Causal
                },
                rope: 0,
            }),
            "sliding_attention" => Ok(LayerSpec {
                pattern: if bidirectional {
                    Pattern::BidirectionalWindow(bidirectional_radius(sliding_window))
                } else {
                    Pattern::CausalWindow(sliding_window)
                },
                rope: 1,
            }),
            other => bail!("unsupported Gemma3 layer type {other:?}"),
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(DecoderConfig {
        family: "gemma3",
        vocab_size: get_usize(v, "vocab_size")?,
        hidden_size,
        intermediate_size: get_usize(v, "intermediate_size")?,
        num_heads,
        num_kv_heads: opt_usize(v, "num_key_value_heads").unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: opt_f64(v, "rms_norm_eps").unwrap_or(1e-6),
        attn_scale: opt_f64(v, "query_pre_attn_scalar")
            .unwrap_or(256.0)
            .powf(-0.5),
        attn_softcap: opt_f64(v, "attn_logit_softcapping"),
        act,
        norm_plus_one: true,
        sandwich_norms: true,
        // torch: tensor(hidden ** 0.5) (python double -> float32), cast to the weight dtype.
        embed_scale: Some((hidden_size as f64).sqrt()),
        attention_bias: opt_bool(v, "attention_bias").unwrap_or(false),
        layers,
        ropes,
    })
}

/// Qwen3Config (Qwen3-Embedding uses Qwen3Model: causal, full attention).
pub fn qwen3(v: &Value) -> Result<DecoderConfig> {
    let hidden_size = get_usize(v, "hidden_size")?;
    let num_heads = get_usize(v, "num_attention_heads")?;
    let num_layers = get_usize(v, "num_hidden_layers")?;
    let head_dim = opt_usize(v, "head_dim").unwrap_or(hidden_size / num_heads);
    let act = Act::parse(opt_str(v, "hidden_act").unwrap_or("silu"))?;

    let rp = v
        .get("rope_parameters")
        .filter(|x| !x.is_null())
        .cloned()
        .unwrap_or_else(|| {
            let mut o = v
                .get("rope_scaling")
                .filter(|x| !x.is_null())
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            if let Some(t) = v.get("rope_theta") {
                o["rope_theta"] = t.clone();
            }
            o
        });
    let ropes = vec![rope_from(Some(&rp), 10_000.0, head_dim)?];

    let use_sliding = opt_bool(v, "use_sliding_window").unwrap_or(false);
    let sliding_window = if use_sliding {
        opt_usize(v, "sliding_window")
    } else {
        None
    };
    let max_window_layers = opt_usize(v, "max_window_layers").unwrap_or(28);
    let types = layer_types(v).unwrap_or_else(|| {
        (0..num_layers)
            .map(|i| {
                if sliding_window.is_some() && i >= max_window_layers {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
                .to_string()
            })
            .collect()
    });
    if types.len() < num_layers {
        bail!(
            "config.json: layer_types has {} entries for {num_layers} layers",
            types.len()
        );
    }
    let layers = types[..num_layers]
        .iter()
        .map(|t| match (t.as_str(), sliding_window) {
            ("full_attention", _) => Ok(LayerSpec {
                pattern: Pattern::Causal,
                rope: 0,
            }),
            ("sliding_attention", Some(w)) => Ok(LayerSpec {
                pattern: Pattern::CausalWindow(w),
                rope: 0,
            }),
            ("sliding_attention", None) => Ok(LayerSpec {
                pattern: Pattern::Causal,
                rope: 0,
            }),
            (other, _) => bail!("unsupported Qwen3 layer type {other:?}"),
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(DecoderConfig {
        family: "qwen3",
        vocab_size: get_usize(v, "vocab_size")?,
        hidden_size,
        intermediate_size: get_usize(v, "intermediate_size")?,
        num_heads,
        num_kv_heads: opt_usize(v, "num_key_value_heads").unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: opt_f64(v, "rms_norm_eps").unwrap_or(1e-6),
        attn_scale: (head_dim as f64).powf(-0.5),
        attn_softcap: None,
        act,
        norm_plus_one: false,
        sandwich_norms: false,
        embed_scale: None,
        attention_bias: opt_bool(v, "attention_bias").unwrap_or(false),
        layers,
        ropes,
    })
}

/// Fill keys that candle-transformers' serde configs require but transformers 5
/// may leave out of a saved config, with transformers' own defaults.
pub fn with_defaults(mut v: Value, defaults: &[(&str, Value)]) -> Value {
    if let Value::Object(map) = &mut v {
        for (k, d) in defaults {
            if !map.contains_key(*k) || map[*k].is_null() && !d.is_null() {
                map.insert((*k).to_string(), d.clone());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embeddinggemma_hub_config() {
        // keys of google/embeddinggemma-300m's config.json (transformers 4.57 format)
        let v = json!({
            "hidden_size": 768, "intermediate_size": 1152, "num_hidden_layers": 12,
            "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 256,
            "vocab_size": 262144, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
            "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0, "rope_scaling": null,
            "sliding_window": 512, "use_bidirectional_attention": true,
            "hidden_activation": "gelu_pytorch_tanh", "_sliding_window_pattern": 6,
        });
        let c = gemma3(&v).unwrap();
        assert_eq!(c.layers.len(), 12);
        assert_eq!(
            c.layers[0],
            LayerSpec {
                pattern: Pattern::BidirectionalWindow(257),
                rope: 1
            }
        );
        assert_eq!(
            c.layers[5],
            LayerSpec {
                pattern: Pattern::Full,
                rope: 0
            }
        );
        assert_eq!(c.layers[11].pattern, Pattern::Full);
        assert!((c.ropes[0].inv_freq[1] - 1.0 / 1e6f32.powf(2.0 / 256.0)).abs() < 1e-12);
        assert!((c.ropes[1].inv_freq[1] - 1.0 / 1e4f32.powf(2.0 / 256.0)).abs() < 1e-12);
        assert!((c.attn_scale - 1.0 / 16.0).abs() < 1e-15);
        assert_eq!(c.act, Act::GeluTanh);
    }

    #[test]
    fn gemma3_transformers5_config() {
        let v = json!({
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
            "query_pre_attn_scalar": 16, "sliding_window": 6, "use_bidirectional_attention": true,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                                "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
        });
        let c = gemma3(&v).unwrap();
        assert_eq!(c.layers[0].pattern, Pattern::BidirectionalWindow(4));
        assert_eq!(c.layers[1].pattern, Pattern::Full);
    }

    #[test]
    fn qwen3_hub_config() {
        let v = json!({
            "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
            "vocab_size": 151669, "rope_theta": 1000000, "rope_scaling": null,
            "sliding_window": null, "use_sliding_window": false, "hidden_act": "silu",
        });
        let c = qwen3(&v).unwrap();
        assert!(c.layers.iter().all(|l| l.pattern == Pattern::Causal));
        assert!((c.attn_scale - 128f64.powf(-0.5)).abs() < 1e-15);
        assert_eq!(c.ropes[0].inv_freq[0], 1.0);
    }
}
