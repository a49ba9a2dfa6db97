#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "timing.hpp"

#ifndef EMBEDPERF_CPP_VERSION
#define EMBEDPERF_CPP_VERSION "0.0.0"
#endif

namespace embedperf {
namespace {

using nlohmann::json;

json opt(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

void usage(const char* prog) {
  std::fprintf(stderr, "usage: %s --request REQUEST.json --result RESULT.json\n", prog);
}

}  // namespace

int run_main(int argc, char** argv, Backend& backend, const char* default_runner_name, ShapeStartHook on_shape_start) {
  std::string request_path, result_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag, std::string& dst) {
      size_t n = std::strlen(flag);
      if (a == flag && i + 1 < argc) { dst = argv[++i]; return true; }
      if (a.size() > n && a.compare(0, n, flag) == 0 && a[n] == '=') { dst = a.substr(n + 1); return true; }
      return false;
    };
    if (value("--request", request_path) || value("--result", result_path)) continue;
    if (a == "-h" || a == "--help") { usage(argv[0]); return 0; }
    std::fprintf(stderr, "unknown argument: %s\n", a.c_str());
    usage(argv[0]);
    return 2;
  }
  if (request_path.empty() || result_path.empty()) { usage(argv[0]); return 2; }

  json result = {
      {"protocol", 1},
      {"runner", {{"name", default_runner_name}, {"language", "cpp"}, {"version", EMBEDPERF_CPP_VERSION}}},
      {"framework", {{"name", "unknown"}, {"version", nullptr}}},
      {"device", {{"requested", "cpu"}, {"used", "cpu"}, {"provider", nullptr}}},
      {"threads", {{"intra_op", 1}, {"inter_op", 1}}},
      {"settings", json::object()},
      {"load_s", nullptr},
      {"peak_rss_mb", nullptr},
      {"shapes", json::array()},
      {"error", nullptr},
  };
  auto fail = [&](const char* kind, const std::string& message) {
    std::fprintf(stderr, "%s: %s error: %s\n", argv[0], kind, message.c_str());
    result["error"] = {{"kind", kind}, {"message", message}};
    try {
      write_json_atomic(result_path, result);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    }
    return 1;
  };

  try {
    result["framework"] = backend.framework();
  } catch (const std::exception& e) {
    return fail("load", e.what());
  }

  Request req;
  try {
    req = load_request(request_path);
  } catch (const std::exception& e) {
    return fail("request", e.what());
  }
  if (!req.runtime.empty()) result["runner"]["name"] = req.runtime;
  result["device"] = {{"requested", req.device}, {"used", req.device}, {"provider", nullptr}};
  result["threads"] = {{"intra_op", req.intra_op}, {"inter_op", req.inter_op}};

  // Load.
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  try {
    backend.load(req);
  } catch (const std::exception& e) {
    result["load_s"] = std::chrono::duration<double>(clock::now() - t0).count();
    try { result["settings"] = backend.settings(); } catch (...) {}
    return fail("load", e.what());
  }
  result["load_s"] = std::chrono::duration<double>(clock::now() - t0).count();
  try {
    result["framework"] = backend.framework();  // may know more after loading
    result["device"] = backend.device(req);
    result["settings"] = backend.settings();
  } catch (const std::exception& e) {
    return fail("load", e.what());
  }
  std::optional<double> peak = read_vmhwm_mb();
  result["peak_rss_mb"] = opt(peak);
  try {
    write_json_atomic(result_path, result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }

  auto bump = [&](const std::optional<double>& v) {
    if (v && (!peak || *v > *peak)) peak = v;
  };

  for (size_t i = 0; i < req.shapes.size(); ++i) {
    const ShapeSpec& sp = req.shapes[i];
    json s = {{"batch", sp.batch}, {"seq", sp.seq}, {"status", "failed"}, {"error", nullptr},
              {"first_call_s", nullptr}, {"warmup_ns", json::array()}, {"samples_ns", json::array()},
              {"stop_rule", nullptr}, {"loop_s", nullptr}, {"peak_rss_mb", nullptr},
              {"loop_peak_rss_mb", nullptr}, {"embeddings", nullptr}};
    try {
      if (on_shape_start) on_shape_start(req, i);
      Workload w = load_workload(sp.workload);
      if (w.batch != sp.batch || w.seq != sp.seq)
        throw std::runtime_error("workload " + sp.workload + " is [" + std::to_string(w.batch) + "," +
                                 std::to_string(w.seq) + "], request says [" + std::to_string(sp.batch) + "," +
                                 std::to_string(sp.seq) + "]");
      backend.begin_shape(i, sp, w);
      Output last;
      LoopResult lr = run_timed(req.timing, [&] { last = backend.call(w); });
      s["first_call_s"] = opt(lr.first_call_s);
      s["warmup_ns"] = lr.warmup_ns;
      s["samples_ns"] = lr.samples_ns;
      s["stop_rule"] = lr.stop_rule;
      s["loop_s"] = lr.loop_s;
      bump(lr.pre_loop_hwm_mb);
      bump(lr.post_loop_hwm_mb);
      s["loop_peak_rss_mb"] = opt(lr.loop_peak_rss_mb);
      if (last.rows != sp.batch)
        throw std::runtime_error("output has " + std::to_string(last.rows) + " rows, expected batch " + std::to_string(sp.batch));
      write_safetensors(sp.embeddings, {{"sentence_embedding", "F32", {last.rows, last.cols}, last.data,
                                         static_cast<size_t>(last.rows * last.cols) * sizeof(float)}});
      s["embeddings"] = sp.embeddings;
      s["status"] = "ok";
    } catch (const std::exception& e) {
      s["status"] = "failed";
      s["error"] = e.what();
      std::fprintf(stderr, "%s: shape [%lld,%lld] failed: %s\n", argv[0], static_cast<long long>(sp.batch),
                   static_cast<long long>(sp.seq), e.what());
    }
    bump(read_vmhwm_mb());
    s["peak_rss_mb"] = opt(peak);
    result["peak_rss_mb"] = opt(peak);
    result["shapes"].push_back(s);
    try {
      write_json_atomic(result_path, result);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
      return 1;
    }
  }
  return 0;
}

}  // namespace embedperf
