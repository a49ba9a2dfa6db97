// The per-shape timing loop of docs/protocol.md, independent of any framework.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace embedperf {

// VmHWM of /proc/self/status in MiB; nullopt if unreadable.
std::optional<double> read_vmhwm_mb();
// Reset the resident high-water mark (write "5" to /proc/self/clear_refs).
bool reset_vmhwm();

struct LoopResult {
  std::optional<double> first_call_s;   // the first warm-up call, timed alone
  std::vector<int64_t> warmup_ns;
  std::vector<int64_t> samples_ns;
  std::string stop_rule;                // "min_reached" | "time_cap" | "call_cap"
  double loop_s = 0.0;
  std::optional<double> pre_loop_hwm_mb;   // process peak before the loop
  std::optional<double> loop_peak_rss_mb;  // peak during the loop (null if the reset failed)
  std::optional<double> post_loop_hwm_mb;  // VmHWM read after the loop
};

struct LoopHooks {
  // Defaults read /proc; tests may replace them.
  std::function<std::optional<double>()> read_hwm = read_vmhwm_mb;
  std::function<bool()> reset_hwm = reset_vmhwm;
};

// warm-up (first call timed alone), read+reset VmHWM, timed loop until
// len >= min_calls && elapsed >= min_seconds (min_reached) or elapsed >= max_seconds
// (time_cap), read VmHWM. Exceptions from `call` propagate.
LoopResult run_timed(const TimingSpec& spec, const std::function<void()>& call,
                     const LoopHooks& hooks = LoopHooks());

}  // namespace embedperf
