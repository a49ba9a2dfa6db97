//! Request and result types of protocol version 1.
//!
//! Field names follow `src/embedperf/protocol/request.schema.json` and
//! `result.schema.json` exactly. Enum-valued fields of the schema (family,
//! pooling, precision, artifact format, ...) are kept as `String`s so that a
//! runner reads every valid request; helpers give typed views where useful.
//!
//! Request structs reject unknown members (`deny_unknown_fields`), as the
//! request schema does (`additionalProperties: false` on every object).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

// ---------------------------------------------------------------- request

/// What the orchestrator asks one runner process to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub protocol: u32,
    /// Registry name of the runtime, e.g. `onnxruntime-rust`, `null-rust`.
    pub runtime: String,
    pub model: ModelInfo,
    pub artifact: Artifact,
    pub shapes: Vec<ShapeSpec>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32`, `fp16`, `bf16` or `int8`: the precision the runner must run
    /// natively, or refuse with [`crate::Unsupported`].
    pub precision: String,
    pub threads: Threads,
    pub timing: Timing,
    /// Session options every ONNX Runtime binding applies identically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<OrtOptions>,
    /// Null runners only: misbehave on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

impl Request {
    /// Parse a request from JSON text and check the protocol version.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let r: Request = serde_json::from_str(text)?;
        anyhow::ensure!(
            r.protocol == PROTOCOL_VERSION,
            "unsupported protocol version {} (this runner speaks {})",
            r.protocol,
            PROTOCOL_VERSION
        );
        Ok(r)
    }

    /// Read and parse a request file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read request {}: {e}", path.display()))?;
        Self::from_json(&text)
    }

    /// `true` for `cuda` / `cuda:N`.
    pub fn is_cuda(&self) -> bool {
        self.device.starts_with("cuda")
    }

    /// The CUDA ordinal of `cuda:N` (0 for plain `cuda`), `None` for cpu.
    pub fn cuda_ordinal(&self) -> Option<usize> {
        if !self.is_cuda() {
            return None;
        }
        match self.device.split_once(':') {
            Some((_, n)) => n.parse().ok(),
            None => Some(0),
        }
    }
}

/// Architecture facts a runner needs beyond the artifact itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    /// `bert`, `gemma3`, `qwen3`, `xlm-roberta`, `clip` or `siglip`.
    pub family: String,
    /// `mean`, `cls`, `last` or `tower` (multimodal families: the tower's own
    /// pooling and projection, docs/protocol.md "Towers").
    pub pooling: String,
    pub normalize: bool,
    /// Tensor names in heads.safetensors of bias-free Dense layers, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<Vec<String>>,
    /// Width of the graph's sentence_embedding before truncation.
    pub output_dim: usize,
    /// Matryoshka truncation: keep the first N dims, then L2-normalise again.
    #[serde(default)]
    pub truncate_dim: Option<usize>,
    /// Which tower of a multimodal model: `text` (default, also when absent) or
    /// `image` (shapes read `pixel_values`; their `seq` is the image side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    /// What each call returns: `dense` (default, also when absent), and BGE-M3's
    /// `sparse` (token weights, the harness adds the lexical weights) and/or
    /// `colbert` (multi-vectors). docs/outputs.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    /// With sparse: token ids the lexical weights drop (cls, eos, pad, unk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_token_ids: Option<Vec<i64>>,
}

impl ModelInfo {
    /// `true` when `modality` is `image`.
    pub fn is_image(&self) -> bool {
        self.modality.as_deref() == Some("image")
    }

    fn wants(&self, output: &str) -> bool {
        self.outputs.as_ref().is_some_and(|o| o.iter().any(|x| x == output))
    }

    /// `true` when each call also returns the sparse token weights.
    pub fn wants_sparse(&self) -> bool {
        self.wants("sparse")
    }

    /// `true` when each call also returns the multi-vectors.
    pub fn wants_colbert(&self) -> bool {
        self.wants("colbert")
    }

    /// `true` when a call returns more than the sentence embedding.
    pub fn has_extra_outputs(&self) -> bool {
        self.wants_sparse() || self.wants_colbert()
    }
}

/// The model artifact to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `reference`, `onnx`, `openvino` or `none`.
    pub format: String,
    pub path: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// torch only: attn_implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Precision the artifact itself holds (`fp32` when absent), e.g. `int8`
    /// for a dynamically quantized ONNX graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl Artifact {
    /// The artifact's own precision: `fp32` when absent.
    pub fn precision(&self) -> &str {
        self.precision.as_deref().unwrap_or("fp32")
    }
}

/// One (batch, seq) shape to time.
///
/// For an image shape `seq` is the image side H in pixels; for a throughput
/// shape `batch` is the nominal batch size and `seq` the corpus' longest item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeSpec {
    pub batch: usize,
    pub seq: usize,
    /// safetensors file: input_ids I64 [B,S], attention_mask I64 [B,S], lengths I64 [B].
    pub workload: String,
    /// Where the runner writes sentence_embedding F32 [B,D] from its last timed call.
    pub embeddings: String,
    /// `latency` (default, also when absent), `throughput` (the workload is
    /// a corpus timed in full passes) or `accuracy` (the same corpus, every
    /// batch embedded once in feed order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Where to write the output of the shape's first call (the first warm-up
    /// call, else the first timed call; batch 0 of a corpus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_embeddings: Option<String>,
}

impl ShapeSpec {
    /// The scenario name: `latency` when absent.
    pub fn scenario(&self) -> &str {
        self.scenario.as_deref().unwrap_or("latency")
    }

    /// `true` for `scenario: "throughput"`.
    pub fn is_throughput(&self) -> bool {
        self.scenario() == "throughput"
    }

    /// `true` for `scenario: "accuracy"`.
    pub fn is_accuracy(&self) -> bool {
        self.scenario() == "accuracy"
    }
}

/// Thread counts, set explicitly in the framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threads {
    pub intra_op: usize,
    pub inter_op: usize,
}

/// Timing-loop parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    pub warmup: usize,
    pub min_calls: usize,
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// Optional cap on timed calls (stop_rule `call_cap`); keeps the samples
    /// of very fast calls (null runners) bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<usize>,
    /// Stopping rule: once min_calls and min_seconds are met, stop as soon as
    /// the 95% bootstrap CI of the median lies within ±target_ci of the
    /// median (`ci_reached`; docs/protocol.md "Stopping rule").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ci: Option<f64>,
}

/// ONNX Runtime session options (every field optional: absent = library default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrtOptions {
    /// `disable`, `basic`, `extended` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_optimization_level: Option<String>,
    /// `sequential` or `parallel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_cpu_mem_arena: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_spinning: Option<bool>,
    /// Extra session config entries, applied after the options above (an
    /// entry given here wins) and echoed in the result's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_config: Option<BTreeMap<String, String>>,
}

/// Fault injection for the null runners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `crash`, `hang`, `exit` or `oom`.
    pub kind: String,
    /// Shape index at which to misbehave (default 0).
    #[serde(default)]
    pub at_shape: usize,
}

// ----------------------------------------------------------------- result

/// What one runner process reports (`result.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub protocol: u32,
    pub runner: RunnerInfo,
    pub framework: Framework,
    pub device: DeviceInfo,
    pub threads: Threads,
    /// Framework settings actually applied; always a JSON object when present.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub settings: serde_json::Value,
    pub load_s: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub shapes: Vec<ShapeResult>,
    pub error: Option<ErrorInfo>,
}

/// Which runner program wrote the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    pub name: String,
    /// `python`, `rust` or `cpp`.
    pub language: String,
    pub version: Option<String>,
}

/// The library that ran the model: name, version, and any extras
/// (`library_path`, `library_sha256`, `binding`, ...) flattened into the object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    pub name: String,
    pub version: Option<String>,
    #[serde(flatten)]
    pub extras: BTreeMap<String, serde_json::Value>,
}

impl Framework {
    pub fn new(name: impl Into<String>, version: Option<String>) -> Self {
        Framework { name: name.into(), version, extras: BTreeMap::new() }
    }

    /// Builder: add one extra field.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extras.insert(key.into(), value.into());
        self
    }
}

/// Which device and provider actually ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub requested: String,
    pub used: String,
    pub provider: Option<String>,
}

/// A failure of the runner as a whole (e.g. could not load). `kind` is
/// `request`, `protocol`, `load` or `unsupported` (see [`Unsupported`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

/// Outcome of one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapeResult {
    pub batch: usize,
    pub seq: usize,
    /// `ok` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub first_call_s: Option<f64>,
    pub warmup_ns: Vec<u64>,
    pub samples_ns: Vec<u64>,
    /// `min_reached`, `ci_reached`, `time_cap`, `call_cap`, `single_pass`
    /// (accuracy), or null when the loop did not finish.
    pub stop_rule: Option<String>,
    pub loop_s: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    /// Null when the high-water mark could not be reset before the loop.
    pub loop_peak_rss_mb: Option<f64>,
    /// How `loop_peak_rss_mb` was measured ([`crate::memory::MEMORY_RESET`], ...).
    pub memory_method: Option<String>,
    pub embeddings: Option<String>,
    /// Where the first call's output was written (null when not asked).
    pub first_embeddings: Option<String>,
    /// `latency`, `throughput` or `accuracy`.
    #[serde(default = "latency")]
    pub scenario: String,
    /// The request's `timing.target_ci` for a latency shape (null when unset
    /// and for throughput shapes, where it does not apply).
    pub target_ci: Option<f64>,
    /// How many bootstrap checks the stopping rule ran (null without target_ci).
    pub ci_checks: Option<usize>,
    /// throughput: wall time of each full pass over the corpus (absent for latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes_ns: Option<Vec<u64>>,
    /// throughput and accuracy: corpus rows per pass (absent for latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
}

fn latency() -> String {
    "latency".to_string()
}

impl ShapeResult {
    /// An empty record for `spec` with status `failed`.
    pub fn failed(spec: &ShapeSpec, message: String) -> Self {
        ShapeResult {
            batch: spec.batch,
            seq: spec.seq,
            status: "failed".into(),
            error: Some(message),
            first_call_s: None,
            warmup_ns: Vec::new(),
            samples_ns: Vec::new(),
            stop_rule: None,
            loop_s: None,
            peak_rss_mb: None,
            loop_peak_rss_mb: None,
            memory_method: None,
            embeddings: None,
            first_embeddings: None,
            scenario: spec.scenario().to_string(),
            target_ci: None,
            ci_checks: None,
            passes_ns: None,
            items: None,
        }
    }
}

/// A load-time refusal: the runner cannot run what was asked natively (e.g.
/// the precision). Return it from [`crate::Engine::load`] (as an anyhow error:
/// `Err(Unsupported::new("...").into())`); the harness writes it as error kind
/// `unsupported` with this one-line message and exits 1, and the orchestrator
/// records a `skipped` cell with the message as its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    pub fn new(reason: impl Into<String>) -> Self {
        Unsupported(reason.into())
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}
