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

#include "outputs.hpp"
#include "timing.hpp"

#ifndef EMBEDPERF_CPP_VERSION
#define EMBEDPERF_CPP_VERSION "0.0.0"
#endif

namespace embedperf {
namespace {

using nlohmann::json;

json opt(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

// One call's output and what the harness made of it, copied to owned buffers
// (the first call's, kept for shapes[].first_embeddings; or views of the last).
struct Kept {
  std::vector<float> dense, token_weights, colbert;
  int64_t rows = 0, cols = 0, seq = 0, tokens = 0, colbert_dim = 0;
  Lexical lexical;
  bool has_lexical = false;
};

// The tensors of an embeddings file (docs/protocol.md, Files): sentence_embedding,
// and what an output mode adds.
std::vector<TensorView> output_views(const float* dense, int64_t rows, int64_t cols, const float* token_weights,
                                     int64_t seq, const Lexical* lexical, const float* colbert, int64_t tokens,
                                     int64_t colbert_dim) {
  std::vector<TensorView> v{{"sentence_embedding", "F32", {rows, cols}, dense,
                             static_cast<size_t>(rows * cols) * sizeof(float)}};
  if (token_weights)
    v.push_back({"token_weights", "F32", {rows, seq}, token_weights, static_cast<size_t>(rows * seq) * sizeof(float)});
  if (lexical) {
    const int64_t n = static_cast<int64_t>(lexical->ids.size());
    v.push_back({"lexical_ids", "I64", {n}, lexical->ids.data(), lexical->ids.size() * sizeof(int64_t)});
    v.push_back({"lexical_weights", "F32", {n}, lexical->weights.data(), lexical->weights.size() * sizeof(float)});
    v.push_back({"lexical_offsets", "I64", {static_cast<int64_t>(lexical->offsets.size())}, lexical->offsets.data(),
                 lexical->offsets.size() * sizeof(int64_t)});
  }
  if (colbert)
    v.push_back({"colbert_vectors", "F32", {rows, tokens, colbert_dim}, colbert,
                 static_cast<size_t>(rows * tokens * colbert_dim) * sizeof(float)});
  return v;
}

// An output mode's call must return exactly the outputs asked, at the protocol's shapes.
void check_extra(const Output& o, const ModelSpec& m, int64_t batch, int64_t seq) {
  if (m.sparse != (o.token_weights != nullptr))
    throw std::runtime_error(m.sparse ? "the request asks for sparse; the backend returned no token_weights"
                                      : "the backend returned token_weights, which the request does not ask for");
  if (m.colbert != (o.colbert != nullptr))
    throw std::runtime_error(m.colbert ? "the request asks for colbert; the backend returned no colbert_vectors"
                                       : "the backend returned colbert_vectors, which the request does not ask for");
  if (o.token_weights && o.seq != seq)
    throw std::runtime_error("token_weights has " + std::to_string(o.seq) + " columns, expected seq " +
                             std::to_string(seq));
  if (o.colbert && (o.tokens != seq - 1 || o.colbert_dim < 1))
    throw std::runtime_error("colbert_vectors is [" + std::to_string(o.rows) + "," + std::to_string(o.tokens) + "," +
                             std::to_string(o.colbert_dim) + "], expected [" + std::to_string(batch) + "," +
                             std::to_string(seq - 1) + ",D]");
}

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
    const bool extra = req.model.sparse || req.model.colbert;
    Lexical lexical;  // the latest sparse call's lexical weights (made inside the call)
    Kept first;
    auto keep = [&](const Output& o) {
      first.dense.assign(o.data, o.data + o.rows * o.cols);
      first.rows = o.rows;
      first.cols = o.cols;
      if (o.token_weights) first.token_weights.assign(o.token_weights, o.token_weights + o.rows * o.seq);
      if (o.colbert) first.colbert.assign(o.colbert, o.colbert + o.rows * o.tokens * o.colbert_dim);
      first.seq = o.seq, first.tokens = o.tokens, first.colbert_dim = o.colbert_dim;
      first.lexical = lexical;
      first.has_lexical = req.model.sparse;
    };
    auto write_first = [&] {
      if (!keep_first) return;
      if (first.rows == 0) throw std::runtime_error("first_embeddings asked but no first call was kept");
      write_safetensors(sp.first_embeddings,
                        output_views(first.dense.data(), first.rows, first.cols,
                                     first.token_weights.empty() ? nullptr : first.token_weights.data(), first.seq,
                                     first.has_lexical ? &first.lexical : nullptr,
                                     first.colbert.empty() ? nullptr : first.colbert.data(), first.tokens,
                                     first.colbert_dim));
      s["first_embeddings"] = sp.first_embeddings;
    };
    try {
      if (on_shape_start) on_shape_start(req, i);
      if (sp.scenario == "throughput" || sp.scenario == "accuracy") {
        if (req.model.modality != "text")
          throw std::runtime_error("scenario " + sp.scenario + " needs a text corpus; model.modality is '" +
                                   req.model.modality + "'");
        if (extra)
          throw std::runtime_error("scenario " + sp.scenario + " takes the dense output only; model.outputs asks for more");
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
          if (keep_first) {
            Output o;
            o.data = full.data(), o.rows = c.batches.front().batch, o.cols = cols;
            keep(o);
          }
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
        LoopResult lr;
        if (req.model.sparse) {
          // a sparse call: the lexical weights are made inside it, as its user does (docs/outputs.md)
          lr = run_timed(req.timing, [&] {
            last = backend.call(w);
            if (!last.token_weights) throw std::runtime_error("the backend returned no token_weights");
            lexical_weights(last.token_weights, w.input_ids.data(), w.attention_mask.data(), w.batch, w.seq,
                            req.model.unused_token_ids, lexical);
          }, hooks);
        } else {
          lr = run_timed(req.timing, [&] { last = backend.call(w); }, hooks);
        }
        record(lr);
        s["target_ci"] = req.timing.target_ci ? json(*req.timing.target_ci) : json(nullptr);
        s["ci_checks"] = lr.ci_checks;
        if (last.rows != sp.batch)
          throw std::runtime_error("output has " + std::to_string(last.rows) + " rows, expected batch " + std::to_string(sp.batch));
        check_extra(last, req.model, w.batch, w.seq);
        write_safetensors(sp.embeddings, output_views(last.data, last.rows, last.cols, last.token_weights, last.seq,
                                                      req.model.sparse ? &lexical : nullptr, last.colbert, last.tokens,
                                                      last.colbert_dim));
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
