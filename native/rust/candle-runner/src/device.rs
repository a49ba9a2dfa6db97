//! Device selection from the request's `device` string (`cpu`, `cuda`, `cuda:N`).

use anyhow::{bail, Result};
use candle_core::Device;

/// The candle device for `requested`, and the name of what is used.
pub fn select(requested: &str) -> Result<(Device, String)> {
    if requested == "cpu" {
        return Ok((Device::Cpu, "cpu".to_string()));
    }
    let ordinal = match requested.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("unrecognised device {requested:?}"),
        },
        None => bail!("unrecognised device {requested:?} (cpu, cuda or cuda:N)"),
    };
    cuda(ordinal)
}

/// `Device::new_cuda` exists in every candle build (without candle's `cuda` feature
/// it returns "not compiled with cuda support"), so this code is the same in both
/// builds; the `cuda` feature of this crate only turns on candle's.
fn cuda(ordinal: usize) -> Result<(Device, String)> {
    if !cfg!(feature = "cuda") {
        bail!("this embedperf-candle was built without the `cuda` feature (cargo build --features cuda)");
    }
    let dev = Device::new_cuda(ordinal)?;
    Ok((dev, format!("cuda:{ordinal}")))
}

/// Wait for queued device work (no-op on CPU).
pub fn synchronize(device: &Device) -> Result<()> {
    device.synchronize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_bad_names() {
        assert_eq!(select("cpu").unwrap().1, "cpu");
        assert!(select("gpu").is_err());
        assert!(select("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(select("cuda:0").is_err());
    }
}
