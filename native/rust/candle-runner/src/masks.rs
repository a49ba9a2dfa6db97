//! Attention masks, built on the host as additive biases (0 = attend,
//! [`MASKED`] = blocked) exactly as transformers' eager attention adds them.
//!
//! Every entry is chosen with a select (`if allowed {0} else {MASKED}`), never by
//! multiplying with the mask, and the blocked value is finite
//! (`f32::MIN`, torch.finfo(float32).min as transformers uses): a query row whose
//! window holds only padding then gets a finite, uniform softmax instead of NaN.
//! Such rows are padding positions, whose outputs are never pooled.

/// The additive value for a blocked (query, key) pair: torch.finfo(float32).min.
pub const MASKED: f32 = f32::MIN;

/// Which (query, key) pairs a layer may attend to, before the padding mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Every key (bidirectional encoder, full-attention layer).
    Full,
    /// `kv <= q` (decoder).
    Causal,
    /// `q - window < kv <= q` (transformers' `sliding_window_causal_mask_function`).
    CausalWindow(usize),
    /// `|q - kv| < radius`: bidirectional sliding window. For Gemma3 with
    /// `use_bidirectional_attention`, transformers' config sets
    /// `sliding_window = sliding_window // 2 + 1` at load and the mask becomes
    /// `OR(sliding causal, |q - kv| < sliding_window)`, which is this set with
    /// `radius = config.sliding_window // 2 + 1` (see [`bidirectional_radius`]).
    BidirectionalWindow(usize),
}

impl Pattern {
    #[inline]
    pub fn allows(self, q: usize, kv: usize) -> bool {
        match self {
            Pattern::Full => true,
            Pattern::Causal => kv <= q,
            Pattern::CausalWindow(w) => kv <= q && kv + w > q,
            Pattern::BidirectionalWindow(r) => q.abs_diff(kv) < r,
        }
    }

    /// True when the pattern does not depend on the query (only padding remains),
    /// so a `[B, 1, 1, S]` bias broadcast over queries is enough.
    pub fn query_independent(self) -> bool {
        matches!(self, Pattern::Full)
    }
}

/// The radius transformers uses for Gemma3's bidirectional sliding window, from the
/// `sliding_window` written in config.json: `Gemma3TextConfig.__post_init__` sets
/// `sliding_window = sliding_window // 2 + 1` ("exclusive bounds"), and
/// `_bidirectional_window_overlay` allows `abs(q - kv) < sliding_window`.
/// (`to_dict` writes back `(w - 1) * 2`, so a re-saved config maps to the same radius.)
pub fn bidirectional_radius(config_sliding_window: usize) -> usize {
    config_sliding_window / 2 + 1
}

/// Additive bias `[batch, rows, seq]` flattened, where `rows` is 1 for a
/// query-independent pattern and `seq` otherwise. `mask` is the attention mask
/// `[batch, seq]` (1 real, 0 padding); padding keys are always blocked.
pub fn attention_bias(
    mask: &[i64],
    batch: usize,
    seq: usize,
    pattern: Pattern,
) -> (Vec<f32>, usize) {
    assert_eq!(
        mask.len(),
        batch * seq,
        "attention mask has {} entries, expected {batch}x{seq}",
        mask.len()
    );
    if pattern.query_independent() {
        let bias = mask
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { MASKED })
            .collect();
        return (bias, 1);
    }
    let mut bias = vec![MASKED; batch * seq * seq];
    for b in 0..batch {
        let row_mask = &mask[b * seq..(b + 1) * seq];
        for q in 0..seq {
            let out = &mut bias[(b * seq + q) * seq..(b * seq + q + 1) * seq];
            for (kv, o) in out.iter_mut().enumerate() {
                *o = if row_mask[kv] != 0 && pattern.allows(q, kv) {
                    0.0
                } else {
                    MASKED
                };
            }
        }
    }
    (bias, seq)
}

/// The same bias as [`attention_bias`], `[batch, 1, rows, seq]`, built on `device`
/// from the `[batch, 1, 1, seq]` padding mask and the `[seq, seq]` pattern with a
/// select (`where(allowed, 0, MASKED)`). Used on CUDA, where uploading a host-built
/// `batch x seq x seq` float bias would cost a large copy per call.
pub fn device_bias(
    mask: &[i64],
    batch: usize,
    seq: usize,
    pattern: Pattern,
    device: &candle_core::Device,
) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::{DType, Tensor};
    let pad: Vec<u8> = mask.iter().map(|&m| (m != 0) as u8).collect();
    let pad = Tensor::from_vec(pad, (batch, 1, 1, seq), device)?;
    let allowed = if pattern.query_independent() {
        pad
    } else {
        let win: Vec<u8> = (0..seq * seq)
            .map(|i| pattern.allows(i / seq, i % seq) as u8)
            .collect();
        let win = Tensor::from_vec(win, (1, 1, seq, seq), device)?;
        win.broadcast_mul(&pad)?
    };
    let zeros = Tensor::zeros(allowed.shape(), DType::F32, device)?;
    let blocked = Tensor::full(MASKED, allowed.shape(), device)?;
    allowed.where_cond(&zeros, &blocked)
}

/// Index of the last position whose mask is 1, per row (0 for a row without any).
/// Never derived from token ids: Qwen3's last real token is an EOS that is also the pad id.
pub fn last_token_indices(mask: &[i64], batch: usize, seq: usize) -> Vec<usize> {
    (0..batch)
        .map(|b| {
            mask[b * seq..(b + 1) * seq]
                .iter()
                .rposition(|&m| m != 0)
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(bias: &[f32]) -> Vec<u8> {
        bias.iter().map(|&v| (v == 0.0) as u8).collect()
    }

    #[test]
    fn padding_only_full() {
        let mask = [1, 1, 0, 1, 1, 1];
        let (bias, rows) = attention_bias(&mask, 2, 3, Pattern::Full);
        assert_eq!(rows, 1);
        assert_eq!(allowed(&bias), vec![1, 1, 0, 1, 1, 1]);
        assert!(bias.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn causal_with_padding() {
        let mask = [1, 1, 1, 0];
        let (bias, rows) = attention_bias(&mask, 1, 4, Pattern::Causal);
        assert_eq!(rows, 4);
        #[rustfmt::skip]
        let want = vec![
            1, 0, 0, 0,
            1, 1, 0, 0,
            1, 1, 1, 0,
            1, 1, 1, 0, // padded query still sees the real tokens before it
        ];
        assert_eq!(allowed(&bias), want);
    }

    #[test]
    fn bidirectional_window_vs_causal_window() {
        // config sliding_window 4 -> radius 3: |q - kv| < 3
        let r = bidirectional_radius(4);
        assert_eq!(r, 3);
        let mask = [1, 1, 1, 1, 1, 0];
        let (bias, _) = attention_bias(&mask, 1, 6, Pattern::BidirectionalWindow(r));
        #[rustfmt::skip]
        let want = vec![
            1, 1, 1, 0, 0, 0,
            1, 1, 1, 1, 0, 0,
            1, 1, 1, 1, 1, 0,
            0, 1, 1, 1, 1, 0,
            0, 0, 1, 1, 1, 0,
            0, 0, 0, 1, 1, 0, // padding query: window holds real tokens 3, 4
        ];
        assert_eq!(allowed(&bias), want);
        let (bias, _) = attention_bias(&mask, 1, 6, Pattern::CausalWindow(3));
        #[rustfmt::skip]
        let want = vec![
            1, 0, 0, 0, 0, 0,
            1, 1, 0, 0, 0, 0,
            1, 1, 1, 0, 0, 0,
            0, 1, 1, 1, 0, 0,
            0, 0, 1, 1, 1, 0,
            0, 0, 0, 1, 1, 0,
        ];
        assert_eq!(allowed(&bias), want);
    }

    #[test]
    fn radius_matches_transformers_round_trip() {
        // EmbeddingGemma: 512 in the hub config -> 257 at load; transformers 5.24 saves
        // (257 - 1) * 2 = 512 back, so a re-saved config gives the same radius.
        assert_eq!(bidirectional_radius(512), 257);
        assert_eq!(bidirectional_radius((257 - 1) * 2), 257);
        // odd windows: 7 -> 4, saved as 6 -> 4
        assert_eq!(bidirectional_radius(7), 4);
        assert_eq!(bidirectional_radius(6), 4);
    }

    #[test]
    fn padding_row_window_all_padding_is_finite() {
        // radius 2; row of length 1 padded to 6: queries 2.. see only padding keys.
        let mask = [1, 0, 0, 0, 0, 0];
        let (bias, _) = attention_bias(&mask, 1, 6, Pattern::BidirectionalWindow(2));
        assert!(bias.iter().all(|v| v.is_finite()));
        let row5 = &bias[5 * 6..6 * 6];
        assert!(row5.iter().all(|&v| v == MASKED));
    }

    #[test]
    fn device_bias_equals_host_bias() {
        let dev = candle_core::Device::Cpu;
        let mask = [1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        for p in [
            Pattern::Full,
            Pattern::Causal,
            Pattern::CausalWindow(2),
            Pattern::BidirectionalWindow(3),
        ] {
            let (host, rows) = attention_bias(&mask, 3, 6, p);
            let d = device_bias(&mask, 3, 6, p, &dev).unwrap();
            assert_eq!(d.dims(), &[3, 1, rows, 6]);
            assert_eq!(
                d.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                host,
                "{p:?}"
            );
        }
    }

    #[test]
    fn last_index_from_mask() {
        // pad id equal to the last real token must not matter: only the mask is read.
        let mask = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0];
        assert_eq!(last_token_indices(&mask, 4, 5), vec![2, 4, 0, 2]);
    }
}
