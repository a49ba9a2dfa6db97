//! Pooling, Dense heads and L2 normalisation, as sentence-transformers does them:
//! - mean: `sum(where(mask, h, 0)) / clamp(sum(mask), 1)` as the project's
//!   `embedperf.models.embedder.pool` (a select, so a NaN in a padded position
//!   cannot leak in);
//! - cls: position 0;
//! - last: the last position whose mask is 1 (index from the mask, never from ids);
//! - normalize: `x / max(||x||_2, 1e-12)` (torch.nn.functional.normalize).

use candle_core::{DType, Result, Tensor, D};

use crate::masks::last_token_indices;

/// Masked mean over the sequence. `h [B, S, H]`, `mask` host `[B * S]`.
pub fn mean(h: &Tensor, mask: &[i64]) -> Result<Tensor> {
    let (b, s, hid) = h.dims3()?;
    let m: Vec<u8> = mask.iter().map(|&x| (x != 0) as u8).collect();
    let counts: Vec<f32> = (0..b)
        .map(|i| (mask[i * s..(i + 1) * s].iter().filter(|&&x| x != 0).count() as f32).max(1.0))
        .collect();
    let m = Tensor::from_vec(m, (b, s, 1), h.device())?.broadcast_as((b, s, hid))?;
    let zeros = Tensor::zeros((b, s, hid), h.dtype(), h.device())?;
    let summed = m.where_cond(h, &zeros)?.sum(1)?; // [B, H]
    let counts = Tensor::from_vec(counts, (b, 1), h.device())?.to_dtype(h.dtype())?;
    summed.broadcast_div(&counts)
}

/// First position. `h [B, S, H]` -> `[B, H]`.
pub fn cls(h: &Tensor) -> Result<Tensor> {
    h.narrow(1, 0, 1)?.squeeze(1)
}

/// Last real position from the mask. `h [B, S, H]` -> `[B, H]`.
pub fn last(h: &Tensor, mask: &[i64]) -> Result<Tensor> {
    let (b, s, hid) = h.dims3()?;
    let idx: Vec<u32> = last_token_indices(mask, b, s)
        .iter()
        .enumerate()
        .map(|(i, &j)| (i * s + j) as u32)
        .collect();
    let idx = Tensor::from_vec(idx, b, h.device())?;
    h.reshape((b * s, hid))?.index_select(&idx, 0)
}

/// Row-wise L2 normalisation with torch's eps.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}

/// Host copy of a `[B, D]` tensor, row-major.
pub fn to_host(x: &Tensor) -> Result<Vec<f32>> {
    x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn h() -> Tensor {
        // B=2, S=3, H=2: row 0 = [[1,2],[3,4],[NaN,NaN]] (last is padding), row 1 = [[5,6],[7,8],[9,10]]
        Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [f32::NAN, f32::NAN]],
                [[5., 6.], [7., 8.], [9., 10.]],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn mean_with_padding_ignores_nan() {
        let out = to_host(&mean(&h(), &[1, 1, 0, 1, 1, 1]).unwrap()).unwrap();
        assert_eq!(out, vec![2.0, 3.0, 7.0, 8.0]);
    }

    #[test]
    fn cls_takes_position_zero() {
        assert_eq!(
            to_host(&cls(&h()).unwrap()).unwrap(),
            vec![1.0, 2.0, 5.0, 6.0]
        );
    }

    #[test]
    fn last_from_mask() {
        let out = to_host(&last(&h(), &[1, 1, 0, 1, 1, 1]).unwrap()).unwrap();
        assert_eq!(out, vec![3.0, 4.0, 9.0, 10.0]);
        // left padding: last real position is still the last 1 in the mask
        let out = to_host(&last(&h(), &[1, 0, 0, 0, 1, 1]).unwrap()).unwrap();
        assert_eq!(out, vec![1.0, 2.0, 9.0, 10.0]);
    }

    #[test]
    fn normalize() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let n = to_host(&l2_normalize(&x).unwrap()).unwrap();
        assert_eq!(n, vec![0.6, 0.8, 0.0, 0.0]); // zero row stays zero (eps), no NaN
    }
}
