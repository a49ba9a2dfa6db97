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

// ------------------------------------------------------------ multimodal towers

/// Which tower of a two-tower (CLIP / SigLIP) model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Text,
    Image,
}

impl Modality {
    /// `text` (also when absent), `image`.
    pub fn parse(s: Option<&str>) -> Result<Self> {
        Ok(match s {
            None | Some("text") => Modality::Text,
            Some("image") => Modality::Image,
            Some(other) => bail!("unsupported model.modality {other:?} (text, image)"),
        })
    }
}

/// A sub-config's value: absent and `null` both mean "transformers' default".
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn usize_or(v: &Value, key: &str, default: usize) -> Result<usize> {
    match field(v, key) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .map(|x| x as usize)
            .with_context(|| format!("config.json: {key} is not a non-negative integer: {x}")),
    }
}

fn f64_or(v: &Value, key: &str, default: f64) -> Result<f64> {
    match field(v, key) {
        None => Ok(default),
        Some(x) => x
            .as_f64()
            .with_context(|| format!("config.json: {key} is not a number: {x}")),
    }
}

fn str_or(v: &Value, key: &str, default: &str) -> Result<String> {
    match field(v, key) {
        None => Ok(default.to_string()),
        Some(x) => x
            .as_str()
            .map(String::from)
            .with_context(|| format!("config.json: {key} is not a string: {x}")),
    }
}

/// `image_size` / `patch_size`: an int, or a square `[n, n]` (transformers accepts both).
fn square_or(v: &Value, key: &str, default: usize) -> Result<usize> {
    match field(v, key) {
        None => Ok(default),
        Some(Value::Array(a)) => {
            let n: Vec<u64> = a.iter().filter_map(Value::as_u64).collect();
            match n.as_slice() {
                [h, w] if h == w => Ok(*h as usize),
                _ => bail!("config.json: {key} {a:?} is not a square size (only square images are supported)"),
            }
        }
        Some(x) => x
            .as_u64()
            .map(|x| x as usize)
            .with_context(|| format!("config.json: {key} is not an integer: {x}")),
    }
}

/// The sub-config `key` of a two-tower config.json (an empty object when absent:
/// transformers then builds the sub-config from its defaults).
fn sub_config<'a>(v: &'a Value, key: &str) -> Result<&'a Value> {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    match field(v, key) {
        None => Ok(EMPTY.get_or_init(|| Value::Object(Default::default()))),
        Some(x) if x.is_object() => Ok(x),
        Some(x) => bail!("config.json: {key} is not an object: {x}"),
    }
}

/// One transformer stack (pre-LN encoder layers) of a tower.
#[derive(Debug, Clone, PartialEq)]
pub struct TowerStack {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// transformers' `hidden_act` name (`quick_gelu`, `gelu_pytorch_tanh`, ...).
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

impl TowerStack {
    fn parse(v: &Value, defaults: &TowerStack) -> Result<Self> {
        let s = TowerStack {
            hidden_size: usize_or(v, "hidden_size", defaults.hidden_size)?,
            intermediate_size: usize_or(v, "intermediate_size", defaults.intermediate_size)?,
            num_hidden_layers: usize_or(v, "num_hidden_layers", defaults.num_hidden_layers)?,
            num_attention_heads: usize_or(v, "num_attention_heads", defaults.num_attention_heads)?,
            hidden_act: str_or(v, "hidden_act", &defaults.hidden_act)?,
            layer_norm_eps: f64_or(v, "layer_norm_eps", defaults.layer_norm_eps)?,
        };
        if s.num_attention_heads == 0 || !s.hidden_size.is_multiple_of(s.num_attention_heads) {
            bail!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                s.hidden_size,
                s.num_attention_heads
            );
        }
        Ok(s)
    }
}

/// CLIPTextConfig (the fields the text tower uses).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTextConfig {
    pub stack: TowerStack,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// The id pooled at (first occurrence per row), see [`clip`].
    pub eos_token_id: i64,
    /// `eos_token_id` in config.json was the legacy 2 (transformers then pools at
    /// `argmax(input_ids)`); `eos_token_id` above is then CLIP's real EOS, 49407.
    pub legacy_eos: bool,
}

/// CLIPVisionConfig (the fields the image tower uses).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipVisionConfig {
    pub stack: TowerStack,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

/// CLIPConfig: both towers and the shared projection width.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text: ClipTextConfig,
    pub vision: ClipVisionConfig,
    /// Top-level `projection_dim` (CLIPModel's text_projection / visual_projection
    /// width; the sub-configs' own projection_dim is not used by CLIPModel).
    pub projection_dim: usize,
}

/// The EOS id of CLIP's BPE tokenizer (`<|endoftext|>`), CLIPTextConfig's default.
pub const CLIP_EOS: i64 = 49407;

/// Parse a CLIPModel config.json with transformers 5's CLIPConfig defaults.
///
/// Legacy `text_config_dict` / `vision_config_dict` (openai/clip-vit-base-patch16
/// ships `"vision_config_dict": {"patch_size": 16}`): transformers builds a full
/// sub-config from that dict (defaults for every other key) and lets it override
/// `text_config` / `vision_config`, so that dict is the source here too.
///
/// EOS pooling: transformers pools at `argmax(input_ids)` when `eos_token_id == 2`
/// (configs written before transformers PR #24773, e.g. the hub's openai CLIPs),
/// else at the first position whose id is `eos_token_id`. This runner always
/// pools at the first EOS and takes EOS = 49407 in the legacy case: CLIP's
/// tokenizer puts `<|endoftext|>` = 49407, the largest id of the 49408-token
/// vocabulary, after the text and pads with it, so the first position holding
/// the row's largest id (what argmax returns) is the first EOS. The first-EOS
/// rule says what is meant without depending on EOS being the largest id, and
/// it is what the project's ONNX/OpenVINO graphs compute.
pub fn clip(v: &Value) -> Result<ClipConfig> {
    let text_src = match field(v, "text_config_dict") {
        Some(d) if d.is_object() => d,
        _ => sub_config(v, "text_config")?,
    };
    let vision_src = match field(v, "vision_config_dict") {
        Some(d) if d.is_object() => d,
        _ => sub_config(v, "vision_config")?,
    };

    let text_stack = TowerStack::parse(
        text_src,
        &TowerStack {
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        },
    )?;
    let eos = match field(text_src, "eos_token_id") {
        None => CLIP_EOS,
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_i64() => a[0].as_i64().unwrap(),
        Some(x) => x
            .as_i64()
            .with_context(|| format!("config.json: text_config.eos_token_id {x} is not one integer"))?,
    };
    let legacy_eos = eos == 2;
    let text = ClipTextConfig {
        stack: text_stack,
        vocab_size: usize_or(text_src, "vocab_size", 49408)?,
        max_position_embeddings: usize_or(text_src, "max_position_embeddings", 77)?,
        eos_token_id: if legacy_eos { CLIP_EOS } else { eos },
        legacy_eos,
    };

    let vision = ClipVisionConfig {
        stack: TowerStack::parse(
            vision_src,
            &TowerStack {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                hidden_act: "quick_gelu".into(),
                layer_norm_eps: 1e-5,
            },
        )?,
        num_channels: usize_or(vision_src, "num_channels", 3)?,
        image_size: square_or(vision_src, "image_size", 224)?,
        patch_size: square_or(vision_src, "patch_size", 32)?,
    };
    if vision.patch_size == 0 || !vision.image_size.is_multiple_of(vision.patch_size) {
        bail!(
            "config.json: image_size {} is not a multiple of patch_size {}",
            vision.image_size,
            vision.patch_size
        );
    }
    Ok(ClipConfig {
        text,
        vision,
        projection_dim: usize_or(v, "projection_dim", 512)?,
    })
}

/// SiglipTextConfig (the fields the text tower uses).
#[derive(Debug, Clone, PartialEq)]
pub struct SiglipTextConfig {
    pub stack: TowerStack,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// Width of `head` (transformers: `projection_size`, default hidden_size).
    pub projection_size: usize,
}

/// SiglipVisionConfig (the fields the image tower uses).
#[derive(Debug, Clone, PartialEq)]
pub struct SiglipVisionConfig {
    pub stack: TowerStack,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    /// The attention-pooling head (MAP) exists; without it SiglipVisionModel has
    /// no pooled output.
    pub vision_use_head: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiglipConfig {
    pub text: SiglipTextConfig,
    pub vision: SiglipVisionConfig,
}

/// Parse a SiglipModel config.json with transformers 5's SiglipConfig defaults
/// (google/siglip-base-patch16-224 ships only a handful of keys).
pub fn siglip(v: &Value) -> Result<SiglipConfig> {
    let t = sub_config(v, "text_config")?;
    let iv = sub_config(v, "vision_config")?;
    let text_stack = TowerStack::parse(
        t,
        &TowerStack {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            hidden_act: "gelu_pytorch_tanh".into(),
            layer_norm_eps: 1e-6,
        },
    )?;
    let hidden = text_stack.hidden_size;
    let text = SiglipTextConfig {
        stack: text_stack,
        vocab_size: usize_or(t, "vocab_size", 32000)?,
        max_position_embeddings: usize_or(t, "max_position_embeddings", 64)?,
        projection_size: usize_or(t, "projection_size", hidden)?,
    };
    let vision = SiglipVisionConfig {
        stack: TowerStack::parse(
            iv,
            &TowerStack {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                hidden_act: "gelu_pytorch_tanh".into(),
                layer_norm_eps: 1e-6,
            },
        )?,
        num_channels: usize_or(iv, "num_channels", 3)?,
        image_size: square_or(iv, "image_size", 224)?,
        patch_size: square_or(iv, "patch_size", 16)?,
        vision_use_head: match field(iv, "vision_use_head") {
            None => true,
            Some(x) => x
                .as_bool()
                .with_context(|| format!("config.json: vision_use_head is not a bool: {x}"))?,
        },
    };
    if vision.patch_size == 0 || !vision.image_size.is_multiple_of(vision.patch_size) {
        bail!(
            "config.json: image_size {} is not a multiple of patch_size {}",
            vision.image_size,
            vision.patch_size
        );
    }
    Ok(SiglipConfig { text, vision })
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

    /// The real configs, when this machine has them (`/work/shared/models`).
    fn shared_config(model: &str) -> Option<Value> {
        let root = std::env::var("EMBEDPERF_SHARED_MODELS")
            .unwrap_or_else(|_| "/work/shared/models".to_string());
        let path = std::path::Path::new(&root).join(model).join("config.json");
        let text = std::fs::read_to_string(&path).ok()?;
        Some(serde_json::from_str(&text).expect("config.json parses"))
    }

    fn stack(h: usize, i: usize, l: usize, n: usize, act: &str, eps: f64) -> TowerStack {
        TowerStack {
            hidden_size: h,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: n,
            hidden_act: act.into(),
            layer_norm_eps: eps,
        }
    }

    #[test]
    fn clip_vit_base_patch16_hub_config() {
        let Some(v) = shared_config("openai__clip-vit-base-patch16") else {
            eprintln!("skipped: no /work/shared/models/openai__clip-vit-base-patch16");
            return;
        };
        let c = clip(&v).unwrap();
        assert_eq!(c.text.stack, stack(512, 2048, 12, 8, "quick_gelu", 1e-5));
        assert_eq!((c.text.vocab_size, c.text.max_position_embeddings), (49408, 77));
        // eos_token_id 2 in the hub config: legacy argmax pooling == first 49407
        assert!(c.text.legacy_eos);
        assert_eq!(c.text.eos_token_id, CLIP_EOS);
        // vision_config_dict {"patch_size": 16} overrides vision_config
        assert_eq!(c.vision.stack, stack(768, 3072, 12, 12, "quick_gelu", 1e-5));
        assert_eq!((c.vision.image_size, c.vision.patch_size, c.vision.num_channels), (224, 16, 3));
        assert_eq!(c.projection_dim, 512);
    }

    #[test]
    fn siglip_base_patch16_224_hub_config_gets_defaults() {
        let Some(v) = shared_config("google__siglip-base-patch16-224") else {
            eprintln!("skipped: no /work/shared/models/google__siglip-base-patch16-224");
            return;
        };
        let c = siglip(&v).unwrap();
        assert_eq!(c.text.stack, stack(768, 3072, 12, 12, "gelu_pytorch_tanh", 1e-6));
        assert_eq!(
            (c.text.vocab_size, c.text.max_position_embeddings, c.text.projection_size),
            (32000, 64, 768)
        );
        assert_eq!(c.vision.stack, stack(768, 3072, 12, 12, "gelu_pytorch_tanh", 1e-6));
        assert_eq!((c.vision.image_size, c.vision.patch_size, c.vision.num_channels), (224, 16, 3));
        assert!(c.vision.vision_use_head);
    }

    #[test]
    fn siglip_empty_config_is_all_defaults() {
        // the keys google/siglip-base-patch16-224 ships, inline (runs everywhere)
        let v = json!({"model_type": "siglip",
            "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                            "vocab_size": 32000, "model_type": "siglip_text_model"},
            "vision_config": {"model_type": "siglip_vision_model", "patch_size": 16}});
        let c = siglip(&v).unwrap();
        assert_eq!(c.text.stack.num_hidden_layers, 12);
        assert_eq!(c.text.stack.layer_norm_eps, 1e-6);
        assert_eq!(c.text.projection_size, 768);
        assert_eq!(c.vision.stack.hidden_act, "gelu_pytorch_tanh");
        assert_eq!(c.vision.image_size, 224);
        assert_eq!(siglip(&json!({})).unwrap(), c);
    }

    #[test]
    fn transformers5_saved_configs() {
        // as transformers 5.24 save_pretrained writes them (tiny towers)
        let v = json!({"model_type": "clip", "projection_dim": 16,
            "text_config": {"bos_token_id": 49406, "eos_token_id": 49407, "hidden_act": "quick_gelu",
                "hidden_size": 32, "intermediate_size": 64, "layer_norm_eps": 1e-05,
                "max_position_embeddings": 77, "num_attention_heads": 2, "num_hidden_layers": 2,
                "pad_token_id": 1, "projection_dim": 512, "vocab_size": 49408},
            "vision_config": {"hidden_act": "quick_gelu", "hidden_size": 32, "image_size": 224,
                "intermediate_size": 64, "layer_norm_eps": 1e-05, "num_attention_heads": 2,
                "num_channels": 3, "num_hidden_layers": 2, "patch_size": 16, "projection_dim": 512}});
        let c = clip(&v).unwrap();
        assert_eq!(c.projection_dim, 16); // top level, not the sub-configs' 512
        assert!(!c.text.legacy_eos);
        assert_eq!(c.text.eos_token_id, 49407);
        assert_eq!(c.vision.stack, stack(32, 64, 2, 2, "quick_gelu", 1e-5));

        let v = json!({"model_type": "siglip",
            "text_config": {"hidden_act": "gelu_pytorch_tanh", "hidden_size": 32, "intermediate_size": 64,
                "layer_norm_eps": 1e-06, "max_position_embeddings": 64, "num_attention_heads": 2,
                "num_hidden_layers": 2, "projection_size": 32, "vocab_size": 32000},
            "vision_config": {"hidden_size": 32, "image_size": [224, 224], "patch_size": 16,
                "num_attention_heads": 2, "num_hidden_layers": 2, "vision_use_head": true}});
        let c = siglip(&v).unwrap();
        assert_eq!(c.text.stack, stack(32, 64, 2, 2, "gelu_pytorch_tanh", 1e-6));
        assert_eq!(c.vision.image_size, 224);
        assert_eq!(c.vision.stack.intermediate_size, 3072); // absent -> default
    }

    #[test]
    fn clip_defaults_and_legacy_dicts() {
        // CLIPConfig() defaults: ViT-B/32
        let c = clip(&json!({})).unwrap();
        assert_eq!(c.vision.patch_size, 32);
        assert_eq!(c.text.stack, stack(512, 2048, 12, 8, "quick_gelu", 1e-5));
        assert_eq!(c.text.eos_token_id, 49407);
        // *_config_dict wins over *_config, with defaults for its absent keys
        let v = json!({"vision_config": {"hidden_size": 1024, "patch_size": 14},
                       "vision_config_dict": {"patch_size": 16},
                       "text_config": {"hidden_size": 64, "num_attention_heads": 4}});
        let c = clip(&v).unwrap();
        assert_eq!((c.vision.stack.hidden_size, c.vision.patch_size), (768, 16));
        assert_eq!(c.text.stack.hidden_size, 64);
        // inconsistent configs are refused
        assert!(clip(&json!({"text_config": {"hidden_size": 30, "num_attention_heads": 4}})).is_err());
        assert!(clip(&json!({"vision_config": {"image_size": 224, "patch_size": 15}})).is_err());
        assert!(clip(&json!({"text_config": {"eos_token_id": [1, 2]}})).is_err());
        assert!(siglip(&json!({"vision_config": {"image_size": [224, 192]}})).is_err());
    }

    #[test]
    fn modality_names() {
        assert_eq!(Modality::parse(None).unwrap(), Modality::Text);
        assert_eq!(Modality::parse(Some("text")).unwrap(), Modality::Text);
        assert_eq!(Modality::parse(Some("image")).unwrap(), Modality::Image);
        assert!(Modality::parse(Some("audio")).is_err());
    }
}
