//! The precision a candle model runs at, and how each is really computed.
//!
//! A label is a promise, so each precision is a real change of what candle
//! computes, and [`Precision::evidence`] says how (the numbers were read from
//! candle 0.11.1's CPU backend, `candle-core/src/cpu_backend/mod.rs` and
//! `quantized/`):
//!
//! - `fp32`: float32 weights and activations.
//! - `bf16`: weights and activations stored as bfloat16; every op's result is
//!   rounded to bfloat16. candle's CPU matmul has no bf16 kernel: it widens both
//!   operands to f32, multiplies with f32 accumulation, rounds the product to
//!   bf16 (what bf16 hardware does too); softmax and the norms accumulate in f32.
//! - `fp16`: weights and activations stored as float16, every op's result rounded
//!   to f16; matmul is the `gemm` crate's f16 kernel (f32 accumulation).
//! - `int8`: the linear layers' weights quantized to Q8_0 at load (blocks of 32
//!   int8 values with one f16 scale); at each call candle quantizes the
//!   activations to Q8_0 blocks and takes int8 dot products (`QMatMul` on a
//!   `QTensor`, k_quants' `vec_dot`). Embedding tables, norms, attention scores
//!   and the softmax stay float32.
//!
//! Reduced float precisions run the transformer only: pooling and L2
//! normalisation take its last hidden states in float32.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
    F16,
    /// Q8_0 weights for every linear layer, f32 elsewhere.
    Q8,
}

impl Precision {
    /// The request's `precision`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "fp32" => Precision::F32,
            "bf16" => Precision::Bf16,
            "fp16" => Precision::F16,
            "int8" => Precision::Q8,
            other => bail!("unknown precision {other:?} (fp32, fp16, bf16, int8)"),
        })
    }

    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "fp16",
            Precision::Q8 => "int8",
        }
    }

    /// dtype of the weights and activations (int8: the activations are f32 and
    /// the linear layers' weights Q8_0).
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Q8 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Whether the linear layers' weights are quantized at load.
    pub fn quantized(self) -> bool {
        self == Precision::Q8
    }

    /// How candle computes at this precision on `device` (for the result's settings).
    pub fn evidence(self, device: &Device) -> &'static str {
        match (self, device.is_cpu()) {
            (Precision::F32, _) => "float32 weights and activations",
            (Precision::Bf16, true) => {
                "bfloat16 weights and activations, every op's result rounded to bf16; candle's CPU matmul widens \
                 bf16 operands to f32, accumulates in f32 and rounds the product to bf16 (no bf16 gemm kernel); \
                 softmax and norms accumulate in f32"
            }
            (Precision::Bf16, false) => "bfloat16 weights and activations (candle's CUDA bf16 kernels)",
            (Precision::F16, true) => {
                "float16 weights and activations, every op's result rounded to f16; matmul is the gemm crate's \
                 f16 kernel (f32 accumulation); softmax and norms accumulate in f32"
            }
            (Precision::F16, false) => "float16 weights and activations (candle's CUDA f16 kernels)",
            (Precision::Q8, _) => {
                "linear layers: q8_0 weights quantized at load, activations quantized to q8_0 blocks at each call, \
                 int8 dot products (candle QMatMul on a QTensor); embeddings, norms and attention in float32"
            }
        }
    }
}

/// The additive value for a blocked (query, key) pair at `dtype`: float32's
/// lowest, as transformers' eager attention uses; for f16/bf16 half of the
/// dtype's lowest finite value, so that adding a score to it cannot overflow to
/// -inf (a row of -inf would make the softmax NaN).
pub fn masked_value(dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => BF16_LOWEST / 2.0,
        DType::F16 => F16_LOWEST / 2.0,
        _ => crate::masks::MASKED,
    }
}

/// The lowest finite bfloat16 (`-(2 - 2^-7) * 2^127`) and float16 (`-65504`).
const BF16_LOWEST: f32 = -3.389_531_4e38;
const F16_LOWEST: f32 = -65504.0;

/// An additive attention bias built in f32 (blocked = [`crate::masks::MASKED`])
/// at the model's `dtype`, with blocked entries at [`masked_value`].
pub fn bias_at(bias: Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if dtype == DType::F32 {
        return Ok(bias);
    }
    bias.maximum(masked_value(dtype))?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_bias_stays_finite_at_reduced_precision() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let bias = Tensor::new(&[0f32, crate::masks::MASKED], &dev)?;
        for dtype in [DType::BF16, DType::F16] {
            // a very negative score plus the bias must stay finite, and softmax must not be NaN
            let scores = (bias_at(bias.clone(), dtype)? + Tensor::new(&[-30000f32, -30000.0], &dev)?.to_dtype(dtype)?)?;
            let v = scores.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            assert!(v.iter().all(|x| x.is_finite()), "{dtype:?}: {v:?}");
            let p = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            assert!((p[0] - 1.0).abs() < 1e-3 && p[1] == 0.0, "{dtype:?}: {p:?}");
        }
        assert_eq!(bias_at(bias.clone(), DType::F32)?.to_vec1::<f32>()?[1], f32::MIN);
        Ok(())
    }

    #[test]
    fn names_round_trip() {
        for p in ["fp32", "bf16", "fp16", "int8"] {
            assert_eq!(Precision::parse(p).unwrap().name(), p);
        }
        assert!(Precision::parse("fp64").is_err());
        assert_eq!(Precision::Q8.dtype(), DType::F32);
    }
}
