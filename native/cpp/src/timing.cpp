#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
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

LoopResult run_timed(const TimingSpec& spec, const std::function<void()>& call, const LoopHooks& hooks) {
  using clock = std::chrono::steady_clock;
  auto ns = [](clock::duration d) { return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()); };
  LoopResult r;

  r.warmup_ns.reserve(static_cast<size_t>(spec.warmup));
  for (int64_t i = 0; i < spec.warmup; ++i) {
    auto t0 = clock::now();
    call();
    auto t1 = clock::now();
    r.warmup_ns.push_back(ns(t1 - t0));
  }
  if (!r.warmup_ns.empty()) r.first_call_s = static_cast<double>(r.warmup_ns.front()) * 1e-9;

  r.pre_loop_hwm_mb = hooks.read_hwm();
  const bool reset_ok = hooks.reset_hwm();

  const int64_t min_ns = static_cast<int64_t>(spec.min_seconds * 1e9);
  const int64_t max_ns = static_cast<int64_t>(spec.max_seconds * 1e9);
  r.samples_ns.reserve(static_cast<size_t>(std::min<int64_t>(std::max(spec.min_calls, spec.max_calls), 1 << 20)));
  const auto start = clock::now();
  int64_t elapsed = 0;
  for (;;) {
    auto t0 = clock::now();
    call();
    auto t1 = clock::now();
    r.samples_ns.push_back(ns(t1 - t0));
    elapsed = ns(t1 - start);
    if (static_cast<int64_t>(r.samples_ns.size()) >= spec.min_calls && elapsed >= min_ns) {
      r.stop_rule = "min_reached";
      break;
    }
    if (elapsed >= max_ns) {
      r.stop_rule = "time_cap";
      break;
    }
    if (spec.max_calls > 0 && static_cast<int64_t>(r.samples_ns.size()) >= spec.max_calls) {
      r.stop_rule = "call_cap";
      break;
    }
  }
  r.loop_s = static_cast<double>(elapsed) * 1e-9;

  r.post_loop_hwm_mb = hooks.read_hwm();
  if (reset_ok) r.loop_peak_rss_mb = r.post_loop_hwm_mb;
  return r;
}

}  // namespace embedperf
