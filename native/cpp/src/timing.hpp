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

// SplitMix64 (Steele, Lea, Flood 2014), the stopping rule's random numbers.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// The stopping rule's constants (docs/protocol.md, "Stopping rule").
constexpr uint64_t kCiSeed = 0x656d626564706572ULL;  // "embedper"
constexpr int kCiResamples = 1000;                   // B
constexpr int64_t kCiFirstCheck = 10;                // first check at n >= max(min_calls, 10)

// Median; the mean of the two middle values when n is even. Empty: 0.
double median_of(std::vector<int64_t> v);

struct BootstrapCi {
  double median = 0.0;  // of the samples themselves
  double low = 0.0;     // m[floor(0.025 B)] of the sorted resample medians
  double high = 0.0;    // m[ceil(0.975 B) - 1]
};
// Percentile bootstrap CI of the median: B resamples of n drawn with
// index = next() mod n from SplitMix64(seed) (resample b takes draws b*n .. b*n+n-1).
BootstrapCi bootstrap_median_ci(const std::vector<int64_t>& samples, int resamples = kCiResamples,
                                uint64_t seed = kCiSeed);
// The CI lies within [median (1 - r), median (1 + r)] (bounds included).
bool ci_within(const BootstrapCi& ci, double r);
// The next check after one at n calls: ceil(1.1 n), in exact integer arithmetic.
int64_t next_ci_check(int64_t n);

// The latency loop's stop decision, fed after every timed call. Without
// target_ci: min_reached once len >= min_calls and elapsed >= min_seconds. With
// it: once those hold, a bootstrap check at n >= max(min_calls, 10), then at
// ceil(1.1 n) after each check, stops with ci_reached. Then time_cap (elapsed
// >= max_seconds), then call_cap (len >= max_calls when set).
class LatencyStop {
 public:
  explicit LatencyStop(const TimingSpec& spec);
  // samples: every timed call so far (the latest included). Returns the stop
  // rule, or nullptr to go on.
  const char* after_call(const std::vector<int64_t>& samples, int64_t elapsed_ns);
  int64_t ci_checks() const { return ci_checks_; }

 private:
  TimingSpec spec_;
  int64_t min_ns_, max_ns_;
  int64_t next_check_;
  int64_t ci_checks_ = 0;
};

struct LoopResult {
  std::optional<double> first_call_s;   // the first warm-up call, timed alone
  std::vector<int64_t> warmup_ns;
  std::vector<int64_t> samples_ns;
  std::string stop_rule;                // "min_reached" | "ci_reached" | "time_cap" | "call_cap"
  double loop_s = 0.0;
  std::optional<double> pre_loop_hwm_mb;   // process peak before the loop
  std::optional<double> loop_peak_rss_mb;  // peak during the loop (null if the reset failed)
  std::string memory_method;               // how loop_peak_rss_mb was measured (kMemory* below)
  std::optional<double> post_loop_hwm_mb;  // VmHWM read after the loop
  int64_t ci_checks = 0;                   // bootstrap checks run (latency with target_ci)
  std::vector<int64_t> passes_ns;          // throughput: wall time of each full pass
};

// shapes[].memory_method, the same strings in every harness.
constexpr const char* kMemoryReset = "VmHWM after clear_refs reset before the loop";
constexpr const char* kMemoryNoReset = "not measured: clear_refs not writable";
constexpr const char* kMemoryNoHwm = "not measured: VmHWM not readable";

struct LoopHooks {
  // Defaults read /proc; tests may replace them.
  std::function<std::optional<double>()> read_hwm = read_vmhwm_mb;
  std::function<bool()> reset_hwm = reset_vmhwm;
  // Runs once, right after the shape's first call (the first warm-up call, else
  // the first timed one), outside every timed span: copy that call's output.
  std::function<void()> first_call;
};

// Latency scenario: warm-up (first call timed alone), read+reset VmHWM, timed
// loop until LatencyStop says stop, read VmHWM. The loop is rotated (a call,
// then [stop check, call]...) so that hooks.first_call can run after the first
// timed call with nothing added inside the loop. Exceptions from `call` propagate.
LoopResult run_timed(const TimingSpec& spec, const std::function<void()>& call,
                     const LoopHooks& hooks = LoopHooks());

// Throughput scenario over a corpus of `batches` batches: warm-up calls on
// batches 0, 1, ... (mod K); read+reset VmHWM; then full passes over batches
// 0..K-1. Each call's time goes into samples_ns, each full pass's wall time
// (first call's start to last call's end) into passes_ns. After each call, in
// this order: at a pass's end min_reached (elapsed >= min_seconds); time_cap
// once elapsed >= max_seconds and at least one full pass is done; at a pass's
// end call_cap (len >= max_calls when set: passes are never cut by it).
// target_ci and min_calls do not apply. `after_call(k)` runs after each timed
// call, outside its timed span (copy the output), `after_pass()` after each
// full pass (before the stop checks). Exceptions propagate.
LoopResult run_passes(const TimingSpec& spec, int64_t batches, const std::function<void(int64_t)>& call,
                      const std::function<void(int64_t)>& after_call = nullptr,
                      const std::function<void()>& after_pass = nullptr, const LoopHooks& hooks = LoopHooks());

// Accuracy scenario: read+reset VmHWM, then every batch 0..K-1 called exactly
// once, in feed order, no warm-up; each call's time goes into samples_ns,
// `after_call(k)` runs after each (outside its timed span), stop_rule is
// "single_pass", first_call_s the first call. Exceptions propagate.
LoopResult run_single_pass(int64_t batches, const std::function<void(int64_t)>& call,
                           const std::function<void(int64_t)>& after_call = nullptr,
                           const LoopHooks& hooks = LoopHooks());

}  // namespace embedperf
