#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <stdexcept>
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
  // no warm-up: the first timed call is the first call (as the Python and Rust harnesses)
  ASSERT_TRUE(r.first_call_s.has_value());
  EXPECT_DOUBLE_EQ(*r.first_call_s, r.samples_ns[0] * 1e-9);
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

  EXPECT_EQ(r.memory_method, kMemoryReset);

  hooks.reset_hwm = [] { return false; };  // cannot reset: no loop peak
  r = run_timed(spec, [] {}, hooks);
  EXPECT_FALSE(r.loop_peak_rss_mb.has_value());
  EXPECT_TRUE(r.post_loop_hwm_mb.has_value());
  EXPECT_EQ(r.memory_method, "not measured: clear_refs not writable");
  hooks.reset_hwm = [] { return true; };
  hooks.read_hwm = []() -> std::optional<double> { return std::nullopt; };
  r = run_timed(spec, [] {}, hooks);
  EXPECT_FALSE(r.loop_peak_rss_mb.has_value());
  EXPECT_EQ(r.memory_method, "not measured: VmHWM not readable");
}

TEST(Timing, FirstCallHookRunsOnceAfterTheFirstCall) {
  for (int64_t warmup : {0, 1, 3}) {
    std::vector<std::string> events;
    LoopHooks hooks;
    hooks.read_hwm = [&]() -> std::optional<double> { events.push_back("read"); return 1.0; };
    hooks.reset_hwm = [&] { events.push_back("reset"); return true; };
    hooks.first_call = [&] { events.push_back("first"); };
    TimingSpec spec{warmup, 2, 0.0, 10.0};
    int n = 0;
    run_timed(spec, [&] { events.push_back("call" + std::to_string(++n)); }, hooks);
    std::vector<std::string> want;
    for (int64_t i = 1; i <= warmup; ++i) want.push_back("call" + std::to_string(i));
    if (warmup) want.insert(want.begin() + 1, "first");
    want.insert(want.end(), {"read", "reset", "call" + std::to_string(warmup + 1)});
    if (!warmup) want.push_back("first");  // between the first timed call and the next
    want.insert(want.end(), {"call" + std::to_string(warmup + 2), "read"});
    EXPECT_EQ(events, want) << "warmup " << warmup;
  }
}

TEST(Timing, OneCallWhenMinCallsIsOne) {
  TimingSpec spec{0, 1, 0.0, 10.0};
  int n = 0;
  LoopResult r = run_timed(spec, [&] { ++n; });
  EXPECT_EQ(n, 1);
  EXPECT_EQ(r.samples_ns.size(), 1u);
  EXPECT_EQ(r.stop_rule, "min_reached");
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

// ------------------------------------------------------------ stopping rule

TEST(StoppingRule, SplitMix64FirstOutputs) {
  // The protocol's seed, 0x656d626564706572 ("embedper"); the Rust and Python
  // runners must produce the same numbers.
  SplitMix64 rng(kCiSeed);
  const uint64_t a = rng.next(), b = rng.next(), c = rng.next();
  std::printf("SplitMix64(0x656d626564706572): %llu %llu %llu\n", static_cast<unsigned long long>(a),
              static_cast<unsigned long long>(b), static_cast<unsigned long long>(c));
  EXPECT_EQ(a, 6995891256140823929ULL);   // 0x611666081988fd79
  EXPECT_EQ(b, 11013611704714590932ULL);  // 0x98d8357e2998fad4
  EXPECT_EQ(c, 16138631498005762699ULL);  // 0xdff7efd75f90528b
  // a fresh generator with the same seed starts over (each check re-seeds)
  EXPECT_EQ(SplitMix64(kCiSeed).next(), a);
  // SplitMix64 seeded with 0 (a commonly published vector)
  EXPECT_EQ(SplitMix64(0).next(), 0xe220a8397b1dcdafULL);
}

TEST(StoppingRule, Median) {
  EXPECT_DOUBLE_EQ(median_of({5}), 5.0);
  EXPECT_DOUBLE_EQ(median_of({9, 1, 5}), 5.0);
  EXPECT_DOUBLE_EQ(median_of({4, 1, 3, 2}), 2.5);  // mean of the two middle values
  EXPECT_DOUBLE_EQ(median_of({7, 8}), 7.5);
}

TEST(StoppingRule, CheckSchedule) {
  // ceil(1.1 n) exactly: 1.1 * 50 is 55.000000000000007 in binary floating point
  EXPECT_EQ(next_ci_check(10), 11);
  EXPECT_EQ(next_ci_check(11), 13);
  EXPECT_EQ(next_ci_check(13), 15);
  EXPECT_EQ(next_ci_check(50), 55);
  EXPECT_EQ(next_ci_check(100), 110);
  EXPECT_EQ(next_ci_check(101), 112);
}

TEST(StoppingRule, BootstrapReferenceValues) {
  // Checked against an independent, sort-based implementation of the protocol's
  // rule (B = 1000, index = next() mod n, m[25] and m[974]).
  std::vector<int64_t> even, odd;
  for (int64_t i = 1; i <= 21; ++i) {
    int64_t x = 1000 + (i * 7919) % 101;
    if (i <= 20) even.push_back(x);
    odd.push_back(x);
  }
  BootstrapCi e = bootstrap_median_ci(even);
  EXPECT_DOUBLE_EQ(e.median, 1045.5);
  EXPECT_DOUBLE_EQ(e.low, 1026.5);
  EXPECT_DOUBLE_EQ(e.high, 1067.5);
  BootstrapCi o = bootstrap_median_ci(odd);
  EXPECT_DOUBLE_EQ(o.median, 1047.0);
  EXPECT_DOUBLE_EQ(o.low, 1028.0);
  EXPECT_DOUBLE_EQ(o.high, 1066.0);
  // +-3% of 1045.5 is [1014.1, 1076.9]: inside; +-2% is [1024.6, 1066.4]: 1067.5 is out
  EXPECT_TRUE(ci_within(e, 0.03));
  EXPECT_FALSE(ci_within(e, 0.02));
  // a constant sample's CI is the median itself: bounds are included
  BootstrapCi c = bootstrap_median_ci(std::vector<int64_t>(10, 77));
  EXPECT_DOUBLE_EQ(c.low, 77.0);
  EXPECT_DOUBLE_EQ(c.high, 77.0);
  EXPECT_TRUE(ci_within(c, 1e-12));
}

TEST(StoppingRule, ConstantSamplesStopAtFirstCheck) {
  TimingSpec spec{0, 1, 0.0, 1e6};
  spec.target_ci = 0.01;
  LatencyStop stop(spec);
  std::vector<int64_t> s;
  const char* rule = nullptr;
  while (!rule && s.size() < 1000) {
    s.push_back(123456);
    rule = stop.after_call(s, static_cast<int64_t>(s.size()) * 123456);
  }
  ASSERT_NE(rule, nullptr);
  EXPECT_STREQ(rule, "ci_reached");
  EXPECT_EQ(s.size(), 10u);  // the first check, at max(min_calls, 10)
  EXPECT_EQ(stop.ci_checks(), 1);

  // min_calls above 10 moves the first check; min_seconds delays it
  spec.min_calls = 25;
  LatencyStop later(spec);
  s.clear();
  rule = nullptr;
  while (!rule) {
    s.push_back(7);
    rule = later.after_call(s, 0);
  }
  EXPECT_STREQ(rule, "ci_reached");
  EXPECT_EQ(s.size(), 25u);
  spec.min_calls = 1;
  spec.min_seconds = 1.0;
  LatencyStop timed(spec);
  s.clear();
  rule = nullptr;
  while (!rule) {
    s.push_back(70'000'000);  // 0.07 s a call: min_seconds (1 s) is met at the 15th
    rule = timed.after_call(s, static_cast<int64_t>(s.size()) * 70'000'000);
  }
  EXPECT_STREQ(rule, "ci_reached");
  EXPECT_EQ(s.size(), 15u);  // the first check waits for min_seconds
  EXPECT_EQ(timed.ci_checks(), 1);
}

TEST(StoppingRule, WideTwoValuedSampleNeverStops) {
  TimingSpec spec{0, 1, 0.0, 1e6};
  spec.target_ci = 0.05;
  LatencyStop stop(spec);
  std::vector<int64_t> s;
  int64_t expected_checks = 0, next = 10;
  for (int64_t n = 1; n <= 2000; ++n) {
    s.push_back(n % 2 ? 1'000'000 : 3'000'000);
    if (n == next) {
      ++expected_checks;
      next = next_ci_check(n);
    }
    const char* rule = stop.after_call(s, n * 2'000'000);
    ASSERT_EQ(rule, nullptr) << "stopped with " << rule << " at n = " << n;
  }
  EXPECT_EQ(stop.ci_checks(), expected_checks);
  EXPECT_GT(expected_checks, 40);
  // it goes on to the time cap, then (when set) the call cap
  s.push_back(1'000'000);
  EXPECT_STREQ(stop.after_call(s, 1'000'000'000'000'000LL), "time_cap");
  spec.max_calls = 30;
  LatencyStop capped(spec);
  s.clear();
  const char* rule = nullptr;
  while (!rule) {
    s.push_back(s.size() % 2 ? 1'000'000 : 3'000'000);
    rule = capped.after_call(s, 0);
  }
  EXPECT_STREQ(rule, "call_cap");
  EXPECT_EQ(s.size(), 30u);
  EXPECT_EQ(capped.ci_checks(), 10);  // at 10, 11, 13, 15, 17, 19, 21, 24, 27, 30
}

TEST(StoppingRule, WithoutTargetCiIsMinReached) {
  TimingSpec spec{0, 3, 0.0, 10.0};
  LatencyStop stop(spec);
  std::vector<int64_t> s = {5, 1000};
  EXPECT_EQ(stop.after_call(s, 0), nullptr);
  s.push_back(7);
  EXPECT_STREQ(stop.after_call(s, 0), "min_reached");
  EXPECT_EQ(stop.ci_checks(), 0);
}

TEST(StoppingRule, RunTimedRecordsChecks) {
  TimingSpec spec{1, 1, 0.0, 20.0};
  spec.target_ci = 0.9;  // very loose: reached at (or soon after) the first check
  LoopResult r = run_timed(spec, [] { std::this_thread::sleep_for(1ms); });
  EXPECT_EQ(r.stop_rule, "ci_reached");
  EXPECT_GE(r.samples_ns.size(), 10u);
  EXPECT_GE(r.ci_checks, 1);
  TimingSpec plain{0, 2, 0.0, 20.0};
  EXPECT_EQ(run_timed(plain, [] {}).ci_checks, 0);
}

// ------------------------------------------------------------ throughput passes

TEST(Throughput, WarmupCyclesThenFullPasses) {
  TimingSpec spec{5, 1000, 0.0, 60.0};  // min_calls does not apply to passes
  spec.target_ci = 0.01;                // nor does target_ci
  std::vector<int64_t> calls, copied;
  int passes = 0;
  LoopResult r = run_passes(
      spec, 3, [&](int64_t k) { calls.push_back(k); }, [&](int64_t k) { copied.push_back(k); }, [&] { ++passes; });
  EXPECT_EQ(calls, (std::vector<int64_t>{0, 1, 2, 0, 1, 0, 1, 2}));
  EXPECT_EQ(copied, (std::vector<int64_t>{0, 1, 2}));  // timed calls only
  EXPECT_EQ(passes, 1);
  EXPECT_EQ(r.warmup_ns.size(), 5u);
  ASSERT_TRUE(r.first_call_s.has_value());
  EXPECT_EQ(r.samples_ns.size(), 3u);
  ASSERT_EQ(r.passes_ns.size(), 1u);
  EXPECT_GE(r.passes_ns[0], r.samples_ns[0] + r.samples_ns[1] + r.samples_ns[2]);
  EXPECT_EQ(r.stop_rule, "min_reached");
  EXPECT_EQ(r.ci_checks, 0);
}

TEST(Throughput, MinReachedAfterFullPasses) {
  TimingSpec spec{0, 1, 0.03, 60.0};
  LoopResult r = run_passes(spec, 4, [](int64_t) { std::this_thread::sleep_for(3ms); });
  EXPECT_EQ(r.stop_rule, "min_reached");
  EXPECT_GE(r.passes_ns.size(), 2u);  // one pass is >= 12 ms
  EXPECT_EQ(r.samples_ns.size(), r.passes_ns.size() * 4);
  EXPECT_GE(r.loop_s, 0.03);
  int64_t all_but_last = 0;
  for (size_t i = 0; i + 1 < r.passes_ns.size(); ++i) all_but_last += r.passes_ns[i];
  EXPECT_LT(all_but_last, 30'000'000);  // it stopped at the first pass end past min_seconds
}

TEST(Throughput, TimeCapWaitsForAFullPass) {
  TimingSpec spec{0, 1, 100.0, 0.001};
  int passes = 0;
  LoopResult r = run_passes(
      spec, 3, [](int64_t) { std::this_thread::sleep_for(5ms); }, nullptr, [&] { ++passes; });
  EXPECT_EQ(r.stop_rule, "time_cap");
  EXPECT_EQ(r.samples_ns.size(), 3u);  // max_seconds passed at the first call, but a pass comes first
  EXPECT_EQ(r.passes_ns.size(), 1u);
  EXPECT_EQ(passes, 1);
}

TEST(Throughput, TimeCapCanCutALaterPass) {
  TimingSpec spec{0, 1, 100.0, 0.2};
  int n = 0, passes = 0;
  LoopResult r = run_passes(
      spec, 3, [&](int64_t) { if (++n == 4) std::this_thread::sleep_for(300ms); }, nullptr, [&] { ++passes; });
  EXPECT_EQ(r.stop_rule, "time_cap");
  EXPECT_EQ(r.samples_ns.size(), 3u);  // the cut pass's call is dropped: whole passes only
  EXPECT_EQ(r.passes_ns.size(), 1u);   // only full passes
  EXPECT_EQ(passes, 1);
  EXPECT_GE(r.loop_s, 0.2);
}

TEST(Throughput, CallCapOnlyAtPassEnds) {
  TimingSpec spec{0, 1, 100.0, 60.0, 5};
  LoopResult r = run_passes(spec, 3, [](int64_t) {});
  EXPECT_EQ(r.stop_rule, "call_cap");
  EXPECT_EQ(r.samples_ns.size(), 6u);
  EXPECT_EQ(r.passes_ns.size(), 2u);
}

TEST(Throughput, HighWaterMarkAndErrors) {
  std::vector<std::string> events;
  LoopHooks hooks;
  hooks.read_hwm = [&]() -> std::optional<double> { events.push_back("read"); return 50.0; };
  hooks.reset_hwm = [&] { events.push_back("reset"); return true; };
  TimingSpec spec{1, 1, 0.0, 1.0};
  LoopResult r = run_passes(spec, 2, [&](int64_t k) { events.push_back("call" + std::to_string(k)); }, nullptr, nullptr, hooks);
  EXPECT_EQ(events, (std::vector<std::string>{"call0", "read", "reset", "call0", "call1", "read"}));
  EXPECT_DOUBLE_EQ(*r.loop_peak_rss_mb, 50.0);
  EXPECT_EQ(r.memory_method, kMemoryReset);
  EXPECT_THROW(run_passes(spec, 0, [](int64_t) {}), std::runtime_error);
  EXPECT_THROW(run_passes(spec, 2, [](int64_t k) { if (k == 1) throw std::runtime_error("boom"); }), std::runtime_error);
}

TEST(Throughput, FirstCallHookAndOneBatchCorpus) {
  for (int64_t warmup : {0, 2}) {
    std::vector<std::string> events;
    LoopHooks hooks;
    hooks.read_hwm = [] { return std::optional<double>(1.0); };
    hooks.reset_hwm = [] { return true; };
    hooks.first_call = [&] { events.push_back("first"); };
    TimingSpec spec{warmup, 1, 0.0, 10.0};
    run_passes(spec, 2, [&](int64_t k) { events.push_back("call" + std::to_string(k)); },
               [&](int64_t k) { events.push_back("copy" + std::to_string(k)); }, nullptr, hooks);
    std::vector<std::string> want =
        warmup ? std::vector<std::string>{"call0", "first", "call1", "call0", "copy0", "call1", "copy1"}
               : std::vector<std::string>{"call0", "copy0", "first", "call1", "copy1"};
    EXPECT_EQ(events, want) << "warmup " << warmup;
  }
  // K = 1: every call ends a pass
  TimingSpec spec{0, 1, 100.0, 60.0, 4};
  LoopResult r = run_passes(spec, 1, [](int64_t) {});
  EXPECT_EQ(r.stop_rule, "call_cap");
  EXPECT_EQ(r.samples_ns.size(), 4u);
  EXPECT_EQ(r.passes_ns.size(), 4u);
}

TEST(Accuracy, EveryBatchOnceInFeedOrder) {
  std::vector<std::string> events;
  LoopHooks hooks;
  hooks.read_hwm = [&]() -> std::optional<double> { events.push_back("read"); return 7.0; };
  hooks.reset_hwm = [&] { events.push_back("reset"); return true; };
  LoopResult r = run_single_pass(
      3, [&](int64_t k) { events.push_back("call" + std::to_string(k)); std::this_thread::sleep_for(1ms); },
      [&](int64_t k) { events.push_back("copy" + std::to_string(k)); }, hooks);
  EXPECT_EQ(events, (std::vector<std::string>{"read", "reset", "call0", "copy0", "call1", "copy1", "call2", "copy2", "read"}));
  EXPECT_EQ(r.stop_rule, "single_pass");
  EXPECT_EQ(r.samples_ns.size(), 3u);
  EXPECT_TRUE(r.warmup_ns.empty() && r.passes_ns.empty());
  ASSERT_TRUE(r.first_call_s.has_value());
  EXPECT_DOUBLE_EQ(*r.first_call_s, r.samples_ns[0] * 1e-9);
  EXPECT_GE(r.loop_s, 0.003);
  EXPECT_DOUBLE_EQ(*r.loop_peak_rss_mb, 7.0);
  EXPECT_THROW(run_single_pass(0, [](int64_t) {}), std::runtime_error);
}
