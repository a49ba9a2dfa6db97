//! Resident-memory readings (Linux `/proc`).
//!
//! `VmHWM` in `/proc/self/status` is the process's peak resident set size
//! ("high-water mark"). Writing `5` to `/proc/self/clear_refs` (Linux >= 4.0,
//! see proc(5)) resets that peak to the *current* RSS. The harness reads the
//! peak after warm-up (the process peak so far: loading + warm-up), resets it,
//! runs the timed loop and reads it again: the second reading is then the peak
//! of the timed loop alone (`loop_peak_rss_mb`), not the load-time peak that
//! would otherwise dominate it.

/// `VmHWM` of this process in MiB, or `None` where `/proc` is unavailable.
pub fn vm_hwm_mib() -> Option<f64> {
    proc_status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// Current `VmRSS` of this process in MiB.
pub fn vm_rss_mib() -> Option<f64> {
    proc_status_kib("VmRSS:").map(|kib| kib as f64 / 1024.0)
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&text, key)
}

/// Parse a `Key:   12345 kB` line out of `/proc/self/status` text.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Reset the resident high-water mark (`VmHWM`) to the current RSS by writing
/// `5` to `/proc/self/clear_refs`, so that a later [`vm_hwm_mib`] reports the
/// peak reached since this call. Returns `false` when the kernel refused
/// (then a later reading is still the whole-process peak).
pub fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// `memory_method` when the reset succeeded and VmHWM was read after the loop.
pub const MEMORY_RESET: &str = "VmHWM after clear_refs reset before the loop";
/// `memory_method` when `/proc/self/clear_refs` could not be written.
pub const MEMORY_NO_RESET: &str = "not measured: clear_refs not writable";
/// `memory_method` when VmHWM could not be read.
pub const MEMORY_NO_HWM: &str = "not measured: VmHWM not readable";

/// `(loop_peak_rss_mb, memory_method)` from whether the reset worked and the
/// reading after the loop. Without a reset the reading is the process's peak
/// since it started, not the loop's: it is not reported as the loop's.
pub fn loop_peak(reset: bool, reading: Option<f64>) -> (Option<f64>, &'static str) {
    match (reset, reading) {
        (false, _) => (None, MEMORY_NO_RESET),
        (true, None) => (None, MEMORY_NO_HWM),
        (true, Some(mb)) => (Some(mb), MEMORY_RESET),
    }
}
