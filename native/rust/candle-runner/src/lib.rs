//! Candle runner for embedperf: the embedding models written natively on candle.
//!
//! The model code here does not depend on the protocol crate: [`EmbeddingModel`]
//! loads a `reference` artifact folder (transformers' `config.json` +
//! `model.safetensors`, `heads.safetensors`) and embeds a padded batch of token
//! ids. `main.rs` wires it to the protocol harness.
//!
//! Families:
//! - `bert`: candle-transformers' `BertModel` (fits transformers exactly).
//! - `xlm-roberta`: candle-transformers' `XLMRobertaModel` (fits exactly,
//!   including fairseq position ids computed from `input_ids != padding_idx`).
//! - `gemma3`: own encoder ([`decoder`]) — candle-transformers' gemma3 is causal
//!   only, has no padding mask and returns logits.
//! - `qwen3`: same own encoder — candle-transformers' qwen3 builds a causal mask
//!   without a padding mask (batched right-padded input would differ) and keeps a
//!   KV cache we do not need.
//! - `clip`, `siglip` (pooling `tower`, text or image per `model.modality`):
//!   candle-transformers' `clip` / `siglip` stacks built from config.json, with
//!   the pooling and projection each family defines ([`towers`]).
//!
//! Precisions ([`precision`]): fp32; bf16 and fp16 (weights and activations
//! at that dtype; BERT and XLM-R then run the encoder written here, [`bert`]);
//! int8 (Q8_0 linear layers through candle's quantized matmul, [`linear`]) for
//! the text families. What cannot run natively is refused ([`Refused`]).

pub mod bert;
pub mod config;
pub mod decoder;
pub mod device;
pub mod encoders;
pub mod kernels;
pub mod linear;
pub mod masks;
pub mod model;
pub mod pooling;
pub mod precision;
pub mod rope;
pub mod towers;

pub use config::Modality;
pub use model::{EmbeddingModel, Family, ModelSpec, Pooling, Refused};
pub use precision::Precision;

/// Version of the candle-core crate this binary was built against.
pub const CANDLE_VERSION: &str = "0.11.1";

#[cfg(test)]
mod tests {
    #[test]
    fn candle_version_matches_lockfile() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("native/rust/Cargo.lock");
        let want = format!(
            "name = \"candle-core\"\nversion = \"{}\"",
            super::CANDLE_VERSION
        );
        assert!(
            lock.contains(&want),
            "CANDLE_VERSION {} is not the locked candle-core",
            super::CANDLE_VERSION
        );
    }
}
