#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "timing.hpp"

using namespace embedperf;
using namespace std::chrono_literals;

TEST(Timing, MinReachedWithSlowCall) {
  TimingSpec spec{2, 3, 0.05, 5.0};
  int calls = 0;
  LoopResult r = run_timed(spec, [&] { ++calls; std::this_thread::sleep_for(5ms); });
  EXPECT_EQ(r.stop_rule, "min_reached");
  EXPECT_EQ(r.warmup_ns.size(), 2u);
  ASSERT_TRUE(r.first_call_s.has_value());
  EXPECT_DOUBLE_EQ(*r.first_call_s, r.warmup_ns[0] * 1e-9);
  EXPECT_GE(r.samples_ns.size(), 3u);
  EXPECT_GE(r.loop_s, 0.05);
  EXPECT_LT(r.loop_s, 1.0);
  EXPECT_EQ(static_cast<size_t>(calls), r.warmup_ns.size() + r.samples_ns.size());
  for (int64_t s : r.samples_ns) EXPECT_GE(s, 5'000'000);
  // stops at the first call that satisfies both conditions: one call fewer would not have
  int64_t before_last = 0;
  for (size_t i = 0; i + 1 < r.samples_ns.size(); ++i) before_last += r.samples_ns[i];
  EXPECT_TRUE(r.samples_ns.size() == 3u || before_last < 50'000'000);
}

TEST(Timing, MinCallsDominate) {
  TimingSpec spec{0, 4, 0.0, 10.0};
  LoopResult r = run_timed(spec, [] { std::this_thread::sleep_for(1ms); });
  EXPECT_EQ(r.stop_rule, "min_reached");
  EXPECT_EQ(r.samples_ns.size(), 4u);  // exactly min_calls when min_seconds is 0
  EXPECT_TRUE(r.warmup_ns.empty());
  EXPECT_FALSE(r.first_call_s.has_value());
}

TEST(Timing, TimeCap) {
  TimingSpec spec{1, 1000, 0.0, 0.06};
  LoopResult r = run_timed(spec, [] { std::this_thread::sleep_for(10ms); });
  EXPECT_EQ(r.stop_rule, "time_cap");
  EXPECT_LT(r.samples_ns.size(), 1000u);
  EXPECT_GE(r.samples_ns.size(), 5u);
  EXPECT_GE(r.loop_s, 0.06);
  EXPECT_LT(r.loop_s, 0.5);
}

TEST(Timing, CallCap) {
  // min_seconds would take 10 s; max_calls stops the loop after 7 calls
  TimingSpec spec{0, 3, 10.0, 60.0, 7};
  LoopResult r = run_timed(spec, [] {});
  EXPECT_EQ(r.stop_rule, "call_cap");
  EXPECT_EQ(r.samples_ns.size(), 7u);
}

TEST(Timing, MinReachedWinsWhenBothHold) {
  // one 20 ms call satisfies min_calls=1, min_seconds=0.01 and max_seconds=0.01 at once
  TimingSpec spec{0, 1, 0.01, 0.01};
  LoopResult r = run_timed(spec, [] { std::this_thread::sleep_for(20ms); });
  EXPECT_EQ(r.stop_rule, "min_reached");
  EXPECT_EQ(r.samples_ns.size(), 1u);
}

TEST(Timing, HighWaterMarkOrder) {
  std::vector<std::string> events;
  LoopHooks hooks;
  double hwm = 100.0;
  hooks.read_hwm = [&]() -> std::optional<double> { events.push_back("read"); return hwm; };
  hooks.reset_hwm = [&] { events.push_back("reset"); hwm = 10.0; return true; };
  TimingSpec spec{2, 2, 0.0, 1.0};
  LoopResult r = run_timed(spec, [&] { events.push_back("call"); hwm += 1.0; }, hooks);
  EXPECT_EQ(events, (std::vector<std::string>{"call", "call", "read", "reset", "call", "call", "read"}));
  EXPECT_DOUBLE_EQ(*r.pre_loop_hwm_mb, 102.0);
  EXPECT_DOUBLE_EQ(*r.loop_peak_rss_mb, 12.0);

  hooks.reset_hwm = [] { return false; };  // cannot reset: no loop peak
  r = run_timed(spec, [] {}, hooks);
  EXPECT_FALSE(r.loop_peak_rss_mb.has_value());
  EXPECT_TRUE(r.post_loop_hwm_mb.has_value());
}

TEST(Timing, RealProcReadings) {
  auto v = read_vmhwm_mb();
  ASSERT_TRUE(v.has_value());
  EXPECT_GT(*v, 0.0);
  if (!reset_vmhwm()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here: loop_peak_rss_mb will be null";
}

TEST(Timing, CallExceptionPropagates) {
  TimingSpec spec{1, 3, 0.0, 1.0};
  int n = 0;
  EXPECT_THROW(run_timed(spec, [&] { if (++n == 3) throw std::runtime_error("boom"); }), std::runtime_error);
}
