#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

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
  } catch (const Unsupported& e) {
    result["load_s"] = std::chrono::duration<double>(clock::now() - t0).count();
    return fail("unsupported", e.what());
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
              {"loop_peak_rss_mb", nullptr}, {"memory_method", nullptr}, {"embeddings", nullptr},
              {"first_embeddings", nullptr}, {"scenario", sp.scenario}, {"target_ci", nullptr}, {"ci_checks", nullptr}};
    auto record = [&](const LoopResult& lr) {
      s["first_call_s"] = opt(lr.first_call_s);
      s["warmup_ns"] = lr.warmup_ns;
      s["samples_ns"] = lr.samples_ns;
      s["stop_rule"] = lr.stop_rule;
      s["loop_s"] = lr.loop_s;
      bump(lr.pre_loop_hwm_mb);
      bump(lr.post_loop_hwm_mb);
      s["loop_peak_rss_mb"] = opt(lr.loop_peak_rss_mb);
      s["memory_method"] = lr.memory_method;
    };
    // The shape's first call's output, copied by LoopHooks::first_call outside every timed span.
    const bool keep_first = !sp.first_embeddings.empty();
    std::vector<float> first;
    int64_t first_rows = 0, first_cols = 0;
    auto keep = [&](const Output& o) {
      first.assign(o.data, o.data + o.rows * o.cols);
      first_rows = o.rows;
      first_cols = o.cols;
    };
    auto write_first = [&] {
      if (!keep_first) return;
      if (first_rows == 0) throw std::runtime_error("first_embeddings asked but no first call was kept");
      write_safetensors(sp.first_embeddings, {{"sentence_embedding", "F32", {first_rows, first_cols}, first.data(),
                                               first.size() * sizeof(float)}});
      s["first_embeddings"] = sp.first_embeddings;
    };
    try {
      if (on_shape_start) on_shape_start(req, i);
      if (sp.scenario == "throughput" || sp.scenario == "accuracy") {
        if (req.model.modality != "text")
          throw std::runtime_error("scenario " + sp.scenario + " needs a text corpus; model.modality is '" +
                                   req.model.modality + "'");
        if (sp.scenario == "throughput") s["passes_ns"] = json::array();
        s["items"] = nullptr;
        const Corpus c = load_corpus(sp.workload);
        if (c.max_rows > sp.batch)
          throw std::runtime_error("corpus " + sp.workload + " has a batch of " + std::to_string(c.max_rows) +
                                   " rows, more than the request's batch " + std::to_string(sp.batch));
        backend.begin_shape(i, sp, c.max_rows);
        const int64_t k_count = static_cast<int64_t>(c.batches.size());
        std::vector<int64_t> first_row(c.batches.size());
        for (int64_t k = 1; k < k_count; ++k)
          first_row[static_cast<size_t>(k)] = first_row[static_cast<size_t>(k - 1)] + c.batches[static_cast<size_t>(k - 1)].batch;
        // The rows of a pass in feed order: `pass` fills as calls return, `full`
        // is the last completed pass (swapped in after each pass; accuracy has one).
        int64_t cols = req.model.truncate_dim.value_or(req.model.output_dim);
        bool cols_known = false;
        std::vector<float> pass(static_cast<size_t>(c.items * cols)), full(pass.size());
        Output out;
        auto call = [&](int64_t k) { out = backend.call(c.batches[static_cast<size_t>(k)]); };
        auto copy_rows = [&](int64_t k) {
          const int64_t rows = c.batches[static_cast<size_t>(k)].batch;
          if (out.rows != rows)
            throw std::runtime_error("output of corpus batch " + std::to_string(k) + " has " + std::to_string(out.rows) +
                                     " rows, expected " + std::to_string(rows));
          if (out.cols != cols) {
            if (cols_known)
              throw std::runtime_error("output of corpus batch " + std::to_string(k) + " has " +
                                       std::to_string(out.cols) + " columns, earlier calls " + std::to_string(cols));
            cols = out.cols;
            pass.assign(static_cast<size_t>(c.items * cols), 0.0f);
            full.assign(pass.size(), 0.0f);
          }
          cols_known = true;
          std::memcpy(pass.data() + first_row[static_cast<size_t>(k)] * cols, out.data,
                      static_cast<size_t>(rows * cols) * sizeof(float));
        };
        LoopHooks hooks;
        if (keep_first) hooks.first_call = [&] { keep(out); };
        if (sp.scenario == "throughput") {
          LoopResult lr = run_passes(req.timing, k_count, call, copy_rows, [&] { pass.swap(full); }, hooks);
          record(lr);
          s["passes_ns"] = lr.passes_ns;
          if (lr.passes_ns.empty()) throw std::runtime_error("no full pass over the corpus was timed");
        } else {
          // accuracy: one pass, no warm-up; its first call is batch 0, whose rows lead `pass`
          LoopResult lr = run_single_pass(k_count, call, copy_rows, LoopHooks());
          record(lr);
          pass.swap(full);
          if (keep_first)
            keep({full.data(), c.batches.front().batch, cols});
        }
        s["items"] = c.items;
        write_safetensors(sp.embeddings, {{"sentence_embedding", "F32", {c.items, cols}, full.data(),
                                           full.size() * sizeof(float)}});
      } else {
        const bool image = req.model.modality == "image";
        Workload w = image ? load_image_workload(sp.workload) : load_workload(sp.workload);
        if (w.batch != sp.batch || w.seq != sp.seq)
          throw std::runtime_error("workload " + sp.workload + (image ? " has pixel_values [B,3,H,W] with [B,H] = [" : " is [") +
                                   std::to_string(w.batch) + "," + std::to_string(w.seq) + "], request says [" +
                                   std::to_string(sp.batch) + "," + std::to_string(sp.seq) + "]");
        backend.begin_shape(i, sp, w.batch);
        Output last;
        LoopHooks hooks;
        if (keep_first) hooks.first_call = [&] { keep(last); };
        LoopResult lr = run_timed(req.timing, [&] { last = backend.call(w); }, hooks);
        record(lr);
        s["target_ci"] = req.timing.target_ci ? json(*req.timing.target_ci) : json(nullptr);
        s["ci_checks"] = lr.ci_checks;
        if (last.rows != sp.batch)
          throw std::runtime_error("output has " + std::to_string(last.rows) + " rows, expected batch " + std::to_string(sp.batch));
        write_safetensors(sp.embeddings, {{"sentence_embedding", "F32", {last.rows, last.cols}, last.data,
                                           static_cast<size_t>(last.rows * last.cols) * sizeof(float)}});
      }
      write_first();
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
