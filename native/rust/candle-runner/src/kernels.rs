//! CPU kernels that candle does not have in a fused or vectorised form.
//!
//! `gated_act`: the gated MLP activation `act(gate) * up` read straight from the
//! fused `[N, 2I]` gate|up projection, in one pass. candle's own path would be two
//! strided narrows, a unary op whose f32 `gelu` calls scalar libm `tanhf` per
//! element (about 11% of an EmbeddingGemma call in `perf`), and a multiply.
//!
//! Both activations are written as `x * sigmoid(z)`:
//! - silu: `z = x`;
//! - gelu (tanh approximation): `0.5 x (1 + tanh(y)) = x * sigmoid(2 y)` with
//!   `y = sqrt(2/pi) (x + 0.044715 x^3)`;
//!
//! with a branch-free Cephes-style `exp` (relative error < 1e-7 in float32) so
//! the loop vectorises; on x86-64 an AVX2+FMA copy is selected at run time.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::config::Act;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const C1: f32 = 0.693_359_4; // ln 2, high part (Cephes)
const C2: f32 = -2.121_944_4e-4; // ln 2, low part
const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: (t + ROUND) - ROUND rounds t to an integer

/// exp(x) for float32, branch-free. Inputs are clamped to [-87.3, 88.7].
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let bits = ((n as i32 + 127) as u32) << 23;
    y * f32::from_bits(bits)
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2 / pi)
    let y = K * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp_f32(-2.0 * y))
}

#[inline(always)]
fn gated_rows(src: &[f32], dst: &mut [f32], inter: usize, act: Act) {
    for (s, d) in src.chunks_exact(2 * inter).zip(dst.chunks_exact_mut(inter)) {
        let (g, u) = s.split_at(inter);
        match act {
            Act::Silu => {
                for ((o, &g), &u) in d.iter_mut().zip(g).zip(u) {
                    *o = silu(g) * u;
                }
            }
            Act::GeluTanh => {
                for ((o, &g), &u) in d.iter_mut().zip(g).zip(u) {
                    *o = gelu_tanh(g) * u;
                }
            }
            Act::GeluErf => unreachable!("gated_act: exact gelu is not fused"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gated_rows_avx2(src: &[f32], dst: &mut [f32], inter: usize, act: Act) {
    gated_rows(src, dst, inter, act)
}

fn gated_rows_dispatch(src: &[f32], dst: &mut [f32], inter: usize, act: Act) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { gated_rows_avx2(src, dst, inter, act) };
        }
    }
    gated_rows(src, dst, inter, act)
}

struct GatedAct {
    act: Act,
}

impl CustomOp1 for GatedAct {
    fn name(&self) -> &'static str {
        "gated-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("gated-act: f32 only"),
        };
        let src = match layout.contiguous_offsets() {
            Some((a, b)) => &src[a..b],
            None => candle_core::bail!("gated-act: input has to be contiguous"),
        };
        let dims = layout.shape().dims();
        let two_i = *dims.last().unwrap();
        if !two_i.is_multiple_of(2) {
            candle_core::bail!("gated-act: last dim {two_i} is odd");
        }
        let inter = two_i / 2;
        let rows = src.len() / two_i;
        let mut dst = vec![0f32; rows * inter];
        // ~64 KiB of output per task.
        let rows_per_task = (16 * 1024 / inter.max(1)).max(1);
        dst.par_chunks_mut(rows_per_task * inter)
            .zip(src.par_chunks(rows_per_task * two_i))
            .for_each(|(d, s)| gated_rows_dispatch(s, d, inter, self.act));
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = inter;
        Ok((CpuStorage::F32(dst), Shape::from(out_dims)))
    }
}

/// `act(x[..., :I]) * x[..., I:]` for `x [..., 2I]` (gate | up).
pub fn gated_act(x: &Tensor, act: Act) -> Result<Tensor> {
    let two_i = x.dim(candle_core::D::Minus1)?;
    let inter = two_i / 2;
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && act != Act::GeluErf {
        return x.contiguous()?.apply_op1_no_bwd(&GatedAct { act });
    }
    // Other devices: candle's own ops.
    let last = x.rank() - 1;
    let g = x.narrow(last, 0, inter)?;
    let u = x.narrow(last, inter, inter)?;
    let a = match act {
        Act::GeluTanh => g.gelu()?,
        Act::GeluErf => g.gelu_erf()?,
        Act::Silu => candle_nn::ops::silu(&g)?,
    };
    a * u
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_accuracy() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
            x += 0.001_3;
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn activations_match_reference() {
        // reference in f64: silu, and gelu tanh as torch defines it.
        let k = (2.0f64 / std::f64::consts::PI).sqrt();
        let mut x = -30.0f32;
        while x < 30.0 {
            let xd = x as f64;
            let s = xd / (1.0 + (-xd).exp());
            let g = 0.5 * xd * (1.0 + (k * (xd + 0.044715 * xd * xd * xd)).tanh());
            assert!(
                (silu(x) as f64 - s).abs() <= 2e-6 * (1.0 + s.abs()),
                "silu({x})"
            );
            assert!(
                (gelu_tanh(x) as f64 - g).abs() <= 2e-6 * (1.0 + g.abs()),
                "gelu({x})"
            );
            x += 0.0037;
        }
    }

    #[test]
    fn fused_matches_candle_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (5, 7, 2 * 33), &dev)?).contiguous()?;
        for act in [Act::Silu, Act::GeluTanh] {
            let fused = gated_act(&x, act)?;
            let g = x.narrow(2, 0, 33)?;
            let u = x.narrow(2, 33, 33)?;
            let a = if act == Act::Silu {
                candle_nn::ops::silu(&g)?
            } else {
                g.gelu()?
            };
            let want = (a * u)?;
            let diff = (fused - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{act:?}: {diff}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod layout_bench {
    use candle_core::{Device, Tensor};

    /// `cargo test --release -p candle-runner -- --ignored --nocapture matmul_weight_layout`:
    /// x [N, in] times W^T with W stored [out, in] (a transposed view) vs W^T stored
    /// contiguous [in, out].
    #[test]
    #[ignore]
    fn matmul_weight_layout() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for &(n, k, m) in &[
            (1024usize, 768usize, 2304usize),
            (1024, 384, 1536),
            (128, 384, 384),
        ] {
            let x = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let wt = w.t()?.contiguous()?;
            let reps = 20;
            let mut best = [f64::MAX; 2];
            for _ in 0..3 {
                for (i, rhs) in [w.t()?, wt.clone()].iter().enumerate() {
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        let _ = x.matmul(rhs)?;
                    }
                    best[i] = best[i].min(t.elapsed().as_secs_f64() / reps as f64 * 1e3);
                }
            }
            let d = (x.matmul(&w.t()?)? - x.matmul(&wt)?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            println!("N={n} in={k} out={m}: transposed view {:.3} ms, contiguous W^T {:.3} ms (max diff {d:e})", best[0], best[1]);
        }
        Ok(())
    }
}
