#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace embedperf {

std::optional<double> read_vmhwm_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      long long kb = std::atoll(line.c_str() + 6);  // "VmHWM:\t   1234 kB"
      return static_cast<double>(kb) / 1024.0;
    }
  }
  return std::nullopt;
}

bool reset_vmhwm() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = std::fputs("5", f) >= 0;
  ok = (std::fclose(f) == 0) && ok;
  return ok;
}

double median_of(std::vector<int64_t> v) {
  const size_t n = v.size();
  if (n == 0) return 0.0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(n / 2);
  std::nth_element(v.begin(), mid, v.end());
  const double hi = static_cast<double>(*mid);
  if (n % 2 == 1) return hi;
  const double lo = static_cast<double>(*std::max_element(v.begin(), mid));
  return (lo + hi) / 2.0;
}

BootstrapCi bootstrap_median_ci(const std::vector<int64_t>& samples, int resamples, uint64_t seed) {
  BootstrapCi ci;
  const size_t n = samples.size();
  if (n == 0 || resamples < 1) return ci;
  // A resample is a multiset of the samples: count how often each sorted
  // position is drawn, then walk the counts to the middle position(s). Same
  // medians as sorting each resample, without sorting.
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return samples[a] < samples[b]; });
  std::vector<int64_t> sorted(n);
  std::vector<uint32_t> rank(n);
  for (size_t r = 0; r < n; ++r) {
    sorted[r] = samples[order[r]];
    rank[order[r]] = static_cast<uint32_t>(r);
  }
  const size_t lo_pos = (n - 1) / 2, hi_pos = n / 2;  // equal when n is odd
  ci.median = (static_cast<double>(sorted[lo_pos]) + static_cast<double>(sorted[hi_pos])) / 2.0;

  SplitMix64 rng(seed);
  std::vector<uint32_t> count(n);
  std::vector<double> medians(static_cast<size_t>(resamples));
  const uint64_t un = static_cast<uint64_t>(n);
  for (int b = 0; b < resamples; ++b) {
    std::fill(count.begin(), count.end(), 0u);
    for (size_t i = 0; i < n; ++i) ++count[rank[static_cast<size_t>(rng.next() % un)]];
    size_t seen = 0, r = 0;
    while (seen + count[r] <= lo_pos) seen += count[r++];
    const int64_t lo = sorted[r];
    while (seen + count[r] <= hi_pos) seen += count[r++];
    const int64_t hi = sorted[r];
    medians[static_cast<size_t>(b)] = (static_cast<double>(lo) + static_cast<double>(hi)) / 2.0;
  }
  std::sort(medians.begin(), medians.end());
  // floor(0.025 B) and ceil(0.975 B) - 1, in integers (exact for every B).
  const int64_t bb = resamples;
  const int64_t lo_i = (25 * bb) / 1000;
  const int64_t hi_i = (975 * bb + 999) / 1000 - 1;
  ci.low = medians[static_cast<size_t>(lo_i)];
  ci.high = medians[static_cast<size_t>(std::max<int64_t>(hi_i, 0))];
  return ci;
}

bool ci_within(const BootstrapCi& ci, double r) {
  return ci.low >= ci.median * (1.0 - r) && ci.high <= ci.median * (1.0 + r);
}

int64_t next_ci_check(int64_t n) { return (11 * n + 9) / 10; }

LatencyStop::LatencyStop(const TimingSpec& spec)
    : spec_(spec),
      min_ns_(static_cast<int64_t>(spec.min_seconds * 1e9)),
      max_ns_(static_cast<int64_t>(spec.max_seconds * 1e9)),
      next_check_(std::max(spec.min_calls, kCiFirstCheck)) {}

const char* LatencyStop::after_call(const std::vector<int64_t>& samples, int64_t elapsed_ns) {
  const int64_t n = static_cast<int64_t>(samples.size());
  if (n >= spec_.min_calls && elapsed_ns >= min_ns_) {
    if (!spec_.target_ci) return "min_reached";
    if (n >= next_check_) {
      ++ci_checks_;
      next_check_ = next_ci_check(n);
      if (ci_within(bootstrap_median_ci(samples), *spec_.target_ci)) return "ci_reached";
    }
  }
  if (elapsed_ns >= max_ns_) return "time_cap";
  if (spec_.max_calls > 0 && n >= spec_.max_calls) return "call_cap";
  return nullptr;
}

namespace {
using clock = std::chrono::steady_clock;
int64_t ns(clock::duration d) {
  return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

// Warm-up calls (call(i) for i < warmup), timed; the first is the first call.
void warm_up(LoopResult& r, int64_t warmup, const std::function<void(int64_t)>& call, const LoopHooks& hooks) {
  r.warmup_ns.reserve(static_cast<size_t>(warmup));
  for (int64_t i = 0; i < warmup; ++i) {
    auto t0 = clock::now();
    call(i);
    auto t1 = clock::now();
    r.warmup_ns.push_back(ns(t1 - t0));
    if (i == 0 && hooks.first_call) hooks.first_call();
  }
  if (!r.warmup_ns.empty()) r.first_call_s = static_cast<double>(r.warmup_ns.front()) * 1e-9;
}

// The loop's peak after it: null (and said so) when the reset failed.
void finish_memory(LoopResult& r, bool reset_ok, const LoopHooks& hooks) {
  r.post_loop_hwm_mb = hooks.read_hwm();
  if (!reset_ok) {
    r.memory_method = kMemoryNoReset;
  } else if (!r.post_loop_hwm_mb) {
    r.memory_method = kMemoryNoHwm;
  } else {
    r.loop_peak_rss_mb = r.post_loop_hwm_mb;
    r.memory_method = kMemoryReset;
  }
}
}  // namespace

LoopResult run_timed(const TimingSpec& spec, const std::function<void()>& call, const LoopHooks& hooks) {
  LoopResult r;
  warm_up(r, spec.warmup, [&](int64_t) { call(); }, hooks);

  r.pre_loop_hwm_mb = hooks.read_hwm();
  const bool reset_ok = hooks.reset_hwm();

  LatencyStop stop(spec);
  r.samples_ns.reserve(static_cast<size_t>(std::min<int64_t>(std::max(spec.min_calls, spec.max_calls), 1 << 20)));
  const auto start = clock::now();
  auto t0 = clock::now();
  call();
  auto t1 = clock::now();
  r.samples_ns.push_back(ns(t1 - t0));
  if (r.warmup_ns.empty() && hooks.first_call) hooks.first_call();
  int64_t elapsed = 0;
  for (;;) {
    elapsed = ns(t1 - start);
    if (const char* rule = stop.after_call(r.samples_ns, elapsed)) {
      r.stop_rule = rule;
      break;
    }
    t0 = clock::now();
    call();
    t1 = clock::now();
    r.samples_ns.push_back(ns(t1 - t0));
  }
  r.loop_s = static_cast<double>(elapsed) * 1e-9;
  r.ci_checks = stop.ci_checks();
  if (!r.first_call_s) r.first_call_s = static_cast<double>(r.samples_ns.front()) * 1e-9;
  finish_memory(r, reset_ok, hooks);
  return r;
}

LoopResult run_passes(const TimingSpec& spec, int64_t batches, const std::function<void(int64_t)>& call,
                      const std::function<void(int64_t)>& after_call, const std::function<void()>& after_pass,
                      const LoopHooks& hooks) {
  if (batches < 1) throw std::runtime_error("throughput: the corpus has no batches");
  LoopResult r;
  warm_up(r, spec.warmup, [&](int64_t i) { call(i % batches); }, hooks);

  r.pre_loop_hwm_mb = hooks.read_hwm();
  const bool reset_ok = hooks.reset_hwm();

  const int64_t min_ns = static_cast<int64_t>(spec.min_seconds * 1e9);
  const int64_t max_ns = static_cast<int64_t>(spec.max_seconds * 1e9);
  const int64_t max_calls = spec.max_calls;
  r.samples_ns.reserve(static_cast<size_t>(std::min<int64_t>(std::max<int64_t>(batches, max_calls), 1 << 20)));
  // One flat loop over calls, rotated like run_timed's: the first call is made
  // before it, so hooks.first_call can run with nothing added inside the loop.
  int64_t k = 0;  // the latest call's batch
  const auto start = clock::now();
  auto t0 = clock::now();
  auto pass_start = t0;  // a pass: its first call's start to its last call's end
  call(0);
  auto t1 = clock::now();
  r.samples_ns.push_back(ns(t1 - t0));
  if (after_call) after_call(0);
  if (r.warmup_ns.empty() && hooks.first_call) hooks.first_call();
  int64_t elapsed = 0;
  int64_t full_passes = 0;
  for (;;) {
    elapsed = ns(t1 - start);
    const bool pass_end = k == batches - 1;
    if (pass_end) {
      r.passes_ns.push_back(ns(t1 - pass_start));
      ++full_passes;
      if (after_pass) after_pass();
      if (elapsed >= min_ns) {
        r.stop_rule = "min_reached";
        break;
      }
    }
    if (full_passes >= 1 && elapsed >= max_ns) {
      // a cut pass's calls are dropped: samples_ns always holds whole passes (passes_ns.size() * batches)
      r.samples_ns.resize(static_cast<size_t>(full_passes * batches));
      r.stop_rule = "time_cap";
      break;
    }
    if (pass_end && max_calls > 0 && static_cast<int64_t>(r.samples_ns.size()) >= max_calls) {
      r.stop_rule = "call_cap";
      break;
    }
    k = pass_end ? 0 : k + 1;
    t0 = clock::now();
    if (k == 0) pass_start = t0;
    call(k);
    t1 = clock::now();
    r.samples_ns.push_back(ns(t1 - t0));
    if (after_call) after_call(k);
  }
  r.loop_s = static_cast<double>(elapsed) * 1e-9;
  if (!r.first_call_s) r.first_call_s = static_cast<double>(r.samples_ns.front()) * 1e-9;
  finish_memory(r, reset_ok, hooks);
  return r;
}

LoopResult run_single_pass(int64_t batches, const std::function<void(int64_t)>& call,
                           const std::function<void(int64_t)>& after_call, const LoopHooks& hooks) {
  if (batches < 1) throw std::runtime_error("accuracy: the corpus has no batches");
  LoopResult r;
  r.pre_loop_hwm_mb = hooks.read_hwm();
  const bool reset_ok = hooks.reset_hwm();
  r.samples_ns.reserve(static_cast<size_t>(batches));
  const auto start = clock::now();
  for (int64_t k = 0; k < batches; ++k) {
    auto t0 = clock::now();
    call(k);
    auto t1 = clock::now();
    r.samples_ns.push_back(ns(t1 - t0));
    if (after_call) after_call(k);
  }
  r.loop_s = static_cast<double>(ns(clock::now() - start)) * 1e-9;
  r.stop_rule = "single_pass";
  r.first_call_s = static_cast<double>(r.samples_ns.front()) * 1e-9;
  finish_memory(r, reset_ok, hooks);
  return r;
}

}  // namespace embedperf
