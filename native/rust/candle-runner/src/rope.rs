//! Rotary position embeddings, "rotate_half" form (transformers' default rope):
//! `q' = q * cos + rotate_half(q) * sin` with `cos`/`sin` of
//! `pos * inv_freq` duplicated over the two halves of the head.
//!
//! The tables are computed the way transformers does in float32:
//! `inv_freq = 1 / base ** (arange(0, dim, 2) / dim)`, `freqs = pos * inv_freq`.
//! candle-nn's `rope_thd` applies them to a `[B, S, H, D]` tensor.

use candle_core::{Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct Rotary {
    pub head_dim: usize,
    pub inv_freq: Vec<f32>,
}

impl Rotary {
    /// `base`: rope_theta. `linear_factor`: rope_type "linear" divides inv_freq by it.
    pub fn new(base: f64, head_dim: usize, linear_factor: Option<f64>) -> Self {
        assert!(head_dim.is_multiple_of(2), "rotary head_dim must be even");
        let base = base as f32;
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| {
                let exponent = i as f32 / head_dim as f32;
                let mut f = 1.0f32 / base.powf(exponent);
                if let Some(factor) = linear_factor {
                    f /= factor as f32;
                }
                f
            })
            .collect();
        Rotary { head_dim, inv_freq }
    }

    /// `(cos, sin)`, each `[seq * head_dim / 2]` row-major over positions `0..seq`.
    pub fn tables(&self, seq: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for &f in &self.inv_freq {
                // product rounded in f32 like torch; cos/sin of that f32 angle.
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// `(cos, sin)` tensors `[seq, head_dim / 2]` on `device`.
    pub fn tensors(&self, seq: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let (c, s) = self.tables(seq);
        let half = self.head_dim / 2;
        Ok((
            Tensor::from_vec(c, (seq, half), device)?,
            Tensor::from_vec(s, (seq, half), device)?,
        ))
    }
}

/// Apply rope to `x` `[B, S, H, D]` (contiguous) with tables `[S, D/2]`.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope_thd(x, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv_freq_hand_checked() {
        // dim 4, base 10000: 1/10000^(0/4) = 1, 1/10000^(2/4) = 0.01
        let r = Rotary::new(10000.0, 4, None);
        assert_eq!(r.inv_freq.len(), 2);
        assert!((r.inv_freq[0] - 1.0).abs() < 1e-7);
        assert!((r.inv_freq[1] - 0.01).abs() < 1e-9);
        let lin = Rotary::new(10000.0, 4, Some(8.0));
        assert!((lin.inv_freq[1] - 0.00125).abs() < 1e-9);
    }

    #[test]
    fn rotate_half_hand_checked() -> Result<()> {
        // one head, dim 4, positions 0 and 1.
        // pos 1: angles (1, 0.01). x = [1, 2, 3, 4] (halves x1=[1,2], x2=[3,4]):
        // y[0] = 1*cos1 - 3*sin1, y[1] = 2*cos.01 - 4*sin.01,
        // y[2] = 3*cos1 + 1*sin1, y[3] = 4*cos.01 + 2*sin.01
        let r = Rotary::new(10000.0, 4, None);
        let dev = Device::Cpu;
        let (cos, sin) = r.tensors(2, &dev)?;
        let x = Tensor::new(&[[[[1f32, 2., 3., 4.]], [[1., 2., 3., 4.]]]], &dev)?; // [1, 2, 1, 4]
        let y = apply(&x, &cos, &sin)?.flatten_all()?.to_vec1::<f32>()?;
        let (c1, s1) = (1f64.cos(), 1f64.sin());
        let (c2, s2) = (0.01f64.cos(), 0.01f64.sin());
        let want = [
            1.0,
            2.0,
            3.0,
            4.0, // position 0: identity
            1.0 * c1 - 3.0 * s1,
            2.0 * c2 - 4.0 * s2,
            3.0 * c1 + 1.0 * s1,
            4.0 * c2 + 2.0 * s2,
        ];
        for (a, b) in y.iter().zip(want.iter()) {
            assert!((*a as f64 - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
        // hand value: 1*cos(1) - 3*sin(1) = 0.540302 - 2.524413 = -1.984110
        assert!((y[4] - (-1.984_11)).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn rope_preserves_norm_per_pair() -> Result<()> {
        let r = Rotary::new(1_000_000.0, 8, None);
        let dev = Device::Cpu;
        let (cos, sin) = r.tensors(5, &dev)?;
        let x = Tensor::ones((1, 5, 2, 8), candle_core::DType::F32, &dev)?;
        let y = apply(&x, &cos, &sin)?;
        let n = y.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!((n - 80.0).abs() < 1e-4);
        Ok(())
    }
}
