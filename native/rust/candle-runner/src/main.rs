//! `embedperf-candle`: the Candle runner (protocol v1).
//!
//! Loads a `reference` artifact into the native candle models of this crate
//! (fp32, bf16, fp16, or int8 through Q8_0 linear layers; CPU or CUDA) and
//! hands them to the protocol harness. A precision a model cannot run
//! natively is refused (error kind `unsupported`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use candle_runner::{device, EmbeddingModel, Family, Modality, ModelSpec, Pooling, Precision, Refused, CANDLE_VERSION};
use embedperf_protocol::{
    run, Batch, Colbert, DeviceInfo, Embeddings, Engine, Framework, Outputs, Request, TokenWeights, Unsupported,
};

struct CandleEngine {
    model: EmbeddingModel,
    requested: String,
    used: String,
    output_dim: usize,
    rayon_threads: usize,
    rayon_pool_built: bool,
}

/// Apply `threads.intra_op` before anything touches candle: candle's matmul reads
/// `RAYON_NUM_THREADS` (gemm parallelism) and its element-wise barrier pool reads
/// `CANDLE_NUM_THREADS` (falling back to `RAYON_NUM_THREADS`); the rayon global
/// pool (gemm, softmax, norms, our kernels) is built with `intra_op` threads.
/// A `CANDLE_NUM_THREADS` already in the environment is kept (an experiment knob).
fn apply_threads(intra_op: usize) -> bool {
    let n = intra_op.max(1).to_string();
    std::env::set_var("RAYON_NUM_THREADS", &n);
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", &n);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(intra_op.max(1))
        .build_global()
        .is_ok()
}

impl Engine for CandleEngine {
    fn load(request: &Request) -> anyhow::Result<Self> {
        let rayon_pool_built = apply_threads(request.threads.intra_op);
        if request.artifact.format != "reference" {
            bail!(
                "embedperf-candle loads artifact.format \"reference\", not {:?}",
                request.artifact.format
            );
        }
        let precision = Precision::parse(&request.precision)?;
        let spec = ModelSpec {
            family: Family::parse(&request.model.family)?,
            pooling: Pooling::parse(&request.model.pooling)?,
            normalize: request.model.normalize,
            dense: request.model.dense.clone().unwrap_or_default(),
            modality: Modality::parse(request.model.modality.as_deref())?,
            sparse: request.model.wants_sparse(),
            colbert: request.model.wants_colbert(),
        };
        let (dev, used) = device::select(&request.device)?;
        let model = match EmbeddingModel::load(Path::new(&request.artifact.path), spec, &dev, precision) {
            Ok(m) => m,
            Err(e) => match e.downcast_ref::<Refused>() {
                Some(r) => return Err(Unsupported::new(r.0.clone()).into()),
                None => return Err(e.context(format!("loading {}", request.artifact.path))),
            },
        };
        let output_dim = model.output_dim();
        if output_dim != request.model.output_dim {
            // The harness checks every call's width against output_dim: fail here,
            // once, with the reason (artifact and request disagree).
            bail!(
                "the model gives {output_dim}-dim embeddings, the request says output_dim {}",
                request.model.output_dim
            );
        }
        Ok(CandleEngine {
            model,
            requested: request.device.clone(),
            used,
            output_dim,
            rayon_threads: rayon::current_num_threads(),
            rayon_pool_built,
        })
    }

    fn embed(&mut self, batch: &Batch) -> anyhow::Result<Embeddings> {
        // Inputs by name (docs/protocol.md): an image tower takes pixel_values only,
        // a text tower input_ids (+ attention_mask); a workload without them fails.
        let data = match (self.model.image_shape(), batch.image) {
            (Some(_), Some(chw)) => self.model.embed_image(&batch.pixel_values, batch.batch, chw)?,
            (Some(_), None) => bail!("the image tower takes pixel_values, the workload has none"),
            (None, Some(_)) => bail!("the text model takes input_ids, the workload has none (pixel_values only)"),
            (None, None) => self.model.embed(
                &batch.input_ids,
                &batch.attention_mask,
                batch.batch,
                batch.seq,
            )?,
        };
        Ok(Embeddings {
            rows: batch.batch,
            dim: self.output_dim,
            data,
        })
    }

    fn embed_outputs(&mut self, batch: &Batch) -> anyhow::Result<Outputs> {
        if batch.is_image() {
            bail!("an output mode takes a text workload; this one holds pixel_values");
        }
        let (b, s) = (batch.batch, batch.seq);
        let (data, tokens) = self.model.embed_outputs(&batch.input_ids, &batch.attention_mask, b, s)?;
        let mut out = Outputs::dense(Embeddings { rows: b, dim: self.output_dim, data });
        out.token_weights = tokens.token_weights.map(|data| TokenWeights { rows: b, seq: s, data });
        out.colbert = tokens.colbert.map(|(data, dim)| Colbert { rows: b, tokens: s - 1, dim, data });
        Ok(out)
    }

    fn framework(&self) -> Framework {
        Framework::new("candle", Some(CANDLE_VERSION.to_string()))
            .with("cuda_feature", cfg!(feature = "cuda"))
    }

    fn device(&self) -> DeviceInfo {
        let provider = if self.used.starts_with("cuda") {
            "cuda"
        } else {
            "cpu"
        };
        DeviceInfo {
            requested: self.requested.clone(),
            used: self.used.clone(),
            provider: Some(provider.into()),
        }
    }

    fn settings(&self) -> serde_json::Value {
        let precision = self.model.precision();
        let device = self.model.device();
        let mut settings = serde_json::json!({
            "intra_op_threads": self.rayon_threads,
            "rayon_global_pool_built": self.rayon_pool_built,
            "candle_matmul_threads": candle_core::utils::get_num_threads(),
            "candle_elementwise_threads": std::env::var("CANDLE_NUM_THREADS").ok(),
            "precision": precision.name(),
            // read back from the loaded weights
            "dtype": format!("{:?}", self.model.weights_dtype()).to_lowercase(),
            "compute": precision.evidence(device),
        });
        if precision.quantized() {
            let n = self.model.quantized_linears();
            settings["quantized_linear_layers"] = n.into();
            settings["quantization"] = format!("q8_0 weights quantized at load, {n} linear layers").into();
        }
        settings
    }
}

fn main() -> ExitCode {
    run::<CandleEngine>("candle")
}
