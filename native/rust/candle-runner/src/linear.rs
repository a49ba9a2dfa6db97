//! A linear layer `y = x W^T (+ b)` whose weight is either a float tensor (at the
//! model's dtype) or, for int8, a Q8_0 `QMatMul` quantized at load from the
//! float32 reference weights.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

/// Q8_0 quantizes the input dimension in blocks of this many values.
pub const Q8_BLOCK: usize = 32;

pub enum Weight {
    /// `[out, in]` at the model's dtype.
    Dense(Tensor),
    /// Q8_0 weights; the activations are quantized per call.
    Q8(QMatMul),
}

pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out: usize,
    /// How many of the model's linear layers this one holds (fused q|k|v: 3).
    parts: usize,
}

impl Linear {
    /// From a float weight `[out, in]` (and bias `[out]`): kept dense, or
    /// quantized to Q8_0 when `quantize` (the input width must then be a
    /// multiple of [`Q8_BLOCK`]).
    pub fn new(w: Tensor, bias: Option<Tensor>, quantize: bool) -> Result<Self> {
        let (out, inp) = w.dims2()?;
        let weight = if quantize {
            if !inp.is_multiple_of(Q8_BLOCK) {
                candle_core::bail!("q8_0 needs an input width that is a multiple of {Q8_BLOCK}, this layer takes {inp}");
            }
            let q = QTensor::quantize(&w.to_dtype(DType::F32)?, GgmlDType::Q8_0)?;
            match QMatMul::from_qtensor(q)? {
                m @ QMatMul::QTensor(_) => Weight::Q8(m),
                // CANDLE_DEQUANTIZE_ALL(_F16) in the environment turns QMatMul into a float matmul.
                _ => candle_core::bail!("candle dequantized the q8_0 weights (CANDLE_DEQUANTIZE_ALL is set): not int8"),
            }
        } else {
            Weight::Dense(w)
        };
        Ok(Linear { weight, bias, out, parts: 1 })
    }

    /// Mark this as `parts` of the model's linear layers fused into one (q|k|v: 3).
    pub fn fused(mut self, parts: usize) -> Self {
        self.parts = parts;
        self
    }

    /// The model's linear layers this one holds that are Q8_0 (0 when dense).
    pub fn quantized_parts(&self) -> usize {
        if self.is_quantized() {
            self.parts
        } else {
            0
        }
    }

    pub fn out_features(&self) -> usize {
        self.out
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Q8(_))
    }

    /// `x [..., in] -> [..., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => match x.rank() {
                2 => x.matmul(&w.t()?)?,
                _ => x.broadcast_matmul(&w.t()?)?,
            },
            Weight::Q8(m) => m.forward(&x.contiguous()?)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn q8_0_is_close_to_but_not_the_float_product() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.5, (48, 64), &dev)?;
        let b = Tensor::randn(0f32, 0.1, 48, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (5, 7, 64), &dev)?;
        let dense = Linear::new(w.clone(), Some(b.clone()), false)?.forward(&x)?;
        let q = Linear::new(w.clone(), Some(b), true)?;
        assert!(q.is_quantized() && q.out_features() == 48);
        let quant = q.forward(&x)?;
        assert_eq!(quant.dims(), &[5, 7, 48]);
        let diff = (&quant - &dense)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let scale = dense.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff > 0.0, "q8_0 gave the float result exactly");
        assert!(diff < 0.05 * scale, "q8_0 error {diff} vs scale {scale}");
        // an input width that is not a multiple of 32 cannot be q8_0
        assert!(Linear::new(Tensor::zeros((4, 48), DType::F32, &dev)?, None, true).is_err());
        Ok(())
    }

    #[test]
    fn dense_is_x_times_w_transposed_plus_bias() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &dev)?;
        let w = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev)?; // [out=3, in=2]
        let y = Linear::new(w.clone(), None, false)?.forward(&x)?.to_vec2::<f32>()?;
        assert_eq!(y, vec![vec![3.0, 4.0, 7.0], vec![0.0, 0.0, 0.0]]);
        let b = Tensor::new(&[1f32, 2., 3.], &dev)?;
        let y = Linear::new(w, Some(b), false)?.forward(&x)?.to_vec2::<f32>()?;
        assert_eq!(y, vec![vec![4.0, 6.0, 10.0], vec![1.0, 2.0, 3.0]]);
        Ok(())
    }
}
