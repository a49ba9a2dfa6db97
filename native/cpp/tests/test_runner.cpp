// run_main end to end with a fake Backend: the result file and the embeddings
// of the latency (text and image) and throughput scenarios.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "runner.hpp"
#include "safetensors.hpp"
#include "test_util.hpp"
#include "timing.hpp"

using namespace embedperf;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Output [rows, 2]: column 0 is the call's number (1-based, warm-up included),
// column 1 the row's first input_id (or its first pixel for an image workload).
class FakeBackend : public Backend {
 public:
  json framework() override { return {{"name", "fake"}, {"version", "0"}}; }
  void load(const Request& req) override {
    if (req.precision != "fp32") throw Unsupported("precision " + req.precision + " is not run natively here");
  }
  json device(const Request& req) override { return {{"requested", req.device}, {"used", "cpu"}, {"provider", nullptr}}; }
  json settings() override { return json::object(); }
  void begin_shape(size_t, const ShapeSpec&, int64_t max_rows) override { max_rows_.push_back(max_rows); }
  Output call(const Workload& w) override {
    ++calls_;
    if (calls_ == slow_call) std::this_thread::sleep_for(slow_for);
    seen_.push_back(w.has_pixel_values ? -w.batch : w.batch);
    out_.assign(static_cast<size_t>(w.batch * 2), 0.0f);
    for (int64_t r = 0; r < w.batch; ++r) {
      out_[static_cast<size_t>(2 * r)] = static_cast<float>(calls_);
      out_[static_cast<size_t>(2 * r + 1)] =
          w.has_pixel_values ? w.pixel_values[static_cast<size_t>(r * 3 * w.seq * w.pixel_shape[3])]
                             : static_cast<float>(w.input_ids[static_cast<size_t>(r * w.seq)]);
    }
    return {out_.data(), w.batch, 2};
  }
  int slow_call = -1;
  std::chrono::milliseconds slow_for{0};
  int calls_ = 0;
  std::vector<int64_t> seen_;      // rows of each call (negative: an image workload)
  std::vector<int64_t> max_rows_;  // begin_shape's argument per shape

 private:
  std::vector<float> out_;
};

json base_request(const std::string& dir) {
  return {{"protocol", 1},
          {"runtime", "fake-cpp"},
          {"model", {{"name", "m"}, {"family", "bert"}, {"pooling", "mean"}, {"normalize", true}, {"output_dim", 2}}},
          {"artifact", {{"format", "none"}, {"path", dir}}},
          {"shapes", json::array()},
          {"device", "cpu"},
          {"precision", "fp32"},
          {"threads", {{"intra_op", 1}, {"inter_op", 1}}},
          {"timing", {{"warmup", 2}, {"min_calls", 3}, {"min_seconds", 0.0}, {"max_seconds", 30.0}}}};
}

json run(const std::string& dir, const json& req, FakeBackend& backend) {
  std::ofstream(dir + "/request.json") << req.dump();
  std::string a0 = "fake", a1 = "--request", a2 = dir + "/request.json", a3 = "--result", a4 = dir + "/result.json";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data()};
  EXPECT_EQ(run_main(5, argv, backend, "fake-cpp"), 0);
  std::ifstream in(dir + "/result.json");
  return json::parse(in);
}

std::vector<float> embeddings(const std::string& path, std::vector<int64_t>& shape) {
  auto ts = read_safetensors(path);
  const Tensor& t = ts.at("sentence_embedding");
  EXPECT_EQ(t.dtype, "F32");
  shape = t.shape;
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

}  // namespace

TEST(Runner, ThroughputKeepsTheLastFullPassInFeedOrder) {
  std::string dir = temp_dir();
  // 3 batches: rows 2, 3, 1; token [k, r, 0] = 1000 k + r
  const std::vector<std::pair<int64_t, int64_t>> shape = {{2, 4}, {3, 2}, {1, 5}};
  std::vector<std::vector<int64_t>> ids(3), masks(3);
  std::vector<int64_t> batches, order = {5, 4, 3, 2, 1, 0};
  std::vector<TensorView> views;
  for (size_t k = 0; k < 3; ++k) {
    batches.push_back(shape[k].first);
    batches.push_back(shape[k].second);
    for (int64_t r = 0; r < shape[k].first; ++r)
      for (int64_t c = 0; c < shape[k].second; ++c) {
        ids[k].push_back(c == 0 ? 1000 * static_cast<int64_t>(k) + r : 7);
        masks[k].push_back(1);
      }
  }
  views.push_back({"batches", "I64", {3, 2}, batches.data(), batches.size() * 8});
  for (size_t k = 0; k < 3; ++k) {
    views.push_back({"input_ids." + std::to_string(k), "I64", {shape[k].first, shape[k].second}, ids[k].data(), ids[k].size() * 8});
    views.push_back({"attention_mask." + std::to_string(k), "I64", {shape[k].first, shape[k].second}, masks[k].data(), masks[k].size() * 8});
  }
  views.push_back({"order", "I64", {6}, order.data(), 48});
  write_safetensors(dir + "/corpus.safetensors", views);

  json req = base_request(dir);
  req["timing"] = {{"warmup", 2}, {"min_calls", 1000}, {"min_seconds", 100.0}, {"max_seconds", 0.2},
                   {"target_ci", 0.01}};
  req["shapes"] = {{{"batch", 3}, {"seq", 5}, {"workload", dir + "/corpus.safetensors"},
                    {"embeddings", dir + "/emb.safetensors"}, {"scenario", "throughput"}}};
  FakeBackend be;
  // calls 1-2 warm-up (batches 0, 1), 3-5 the first pass (fast), 6 (batch 0 of
  // the second pass) is slow: the time cap cuts that pass
  be.slow_call = 6;
  be.slow_for = 300ms;
  json res = run(dir, req, be);
  ASSERT_EQ(res["shapes"].size(), 1u);
  const json& s = res["shapes"][0];
  EXPECT_EQ(s["status"], "ok") << s.dump();
  EXPECT_EQ(s["scenario"], "throughput");
  EXPECT_EQ(s["stop_rule"], "time_cap");
  EXPECT_EQ(s["items"], 6);
  EXPECT_EQ(s["warmup_ns"].size(), 2u);
  EXPECT_EQ(s["samples_ns"].size(), 3u);  // the cut pass's call is dropped
  EXPECT_EQ(s["passes_ns"].size(), 1u);
  EXPECT_TRUE(s["target_ci"].is_null());  // does not apply to passes
  EXPECT_EQ(s["embeddings"], dir + "/emb.safetensors");
  EXPECT_EQ(be.seen_, (std::vector<int64_t>{2, 3, 2, 3, 1, 2}));
  EXPECT_EQ(be.max_rows_, (std::vector<int64_t>{3}));

  std::vector<int64_t> eshape;
  std::vector<float> e = embeddings(dir + "/emb.safetensors", eshape);
  EXPECT_EQ(eshape, (std::vector<int64_t>{6, 2}));
  // rows of the first (only full) pass: calls 3, 4, 5, rows in feed order
  const std::vector<float> want = {3, 0, 3, 1, 4, 1000, 4, 1001, 4, 1002, 5, 2000};
  EXPECT_EQ(e, want);
}

TEST(Runner, ThroughputFailures) {
  std::string dir = temp_dir();
  std::vector<int64_t> batches = {4, 2}, ids(8, 1), order = {0, 1, 2, 3};
  write_safetensors(dir + "/corpus.safetensors", {{"batches", "I64", {1, 2}, batches.data(), 16},
                                                  {"input_ids.0", "I64", {4, 2}, ids.data(), 64},
                                                  {"attention_mask.0", "I64", {4, 2}, ids.data(), 64},
                                                  {"order", "I64", {4}, order.data(), 32}});
  json req = base_request(dir);
  json shape = {{"batch", 2}, {"seq", 2}, {"workload", dir + "/corpus.safetensors"},
                {"embeddings", dir + "/emb.safetensors"}, {"scenario", "throughput"}};
  req["shapes"] = {shape};
  FakeBackend be;
  json res = run(dir, req, be);
  EXPECT_EQ(res["shapes"][0]["status"], "failed");
  EXPECT_NE(res["shapes"][0]["error"].get<std::string>().find("batch"), std::string::npos);
  // a corpus for an image tower is not defined
  req["model"]["modality"] = "image";
  req["shapes"][0]["batch"] = 4;
  res = run(dir, req, be);
  EXPECT_EQ(res["shapes"][0]["status"], "failed");
  EXPECT_NE(res["shapes"][0]["error"].get<std::string>().find("modality"), std::string::npos);
  // with a text model it runs
  req["model"]["modality"] = "text";
  res = run(dir, req, be);
  EXPECT_EQ(res["shapes"][0]["status"], "ok") << res["shapes"][0].dump();
  EXPECT_EQ(res["shapes"][0]["stop_rule"], "min_reached");
}

TEST(Runner, LatencyImageAndTargetCi) {
  std::string dir = temp_dir();
  const int64_t B = 2, H = 3, W = 3;
  std::vector<float> px(static_cast<size_t>(B * 3 * H * W));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(i);
  write_safetensors(dir + "/img.safetensors", {{"pixel_values", "F32", {B, 3, H, W}, px.data(), px.size() * 4}});
  json req = base_request(dir);
  req["model"]["family"] = "clip";
  req["model"]["pooling"] = "tower";
  req["model"]["modality"] = "image";
  req["timing"]["target_ci"] = 0.5;
  req["timing"]["max_calls"] = 200;
  req["shapes"] = {{{"batch", B}, {"seq", H}, {"workload", dir + "/img.safetensors"}, {"embeddings", dir + "/e.safetensors"}},
                   {{"batch", B}, {"seq", 224}, {"workload", dir + "/img.safetensors"}, {"embeddings", dir + "/f.safetensors"}}};
  FakeBackend be;
  json res = run(dir, req, be);
  ASSERT_EQ(res["shapes"].size(), 2u);
  const json& s = res["shapes"][0];
  EXPECT_EQ(s["status"], "ok") << s.dump();
  EXPECT_EQ(s["scenario"], "latency");
  EXPECT_DOUBLE_EQ(s["target_ci"].get<double>(), 0.5);
  EXPECT_GE(s["ci_checks"].get<int64_t>(), 1);
  EXPECT_TRUE(s["stop_rule"] == "ci_reached" || s["stop_rule"] == "call_cap") << s["stop_rule"];
  EXPECT_GE(s["samples_ns"].size(), 10u);  // the first check is at 10 calls
  EXPECT_FALSE(s.contains("passes_ns"));
  for (int64_t rows : be.seen_) EXPECT_EQ(rows, -B);  // every call got the image workload
  std::vector<int64_t> eshape;
  std::vector<float> e = embeddings(dir + "/e.safetensors", eshape);
  EXPECT_EQ(eshape, (std::vector<int64_t>{B, 2}));
  EXPECT_EQ(e[1], 0.0f);                    // image 0's first pixel
  EXPECT_EQ(e[3], static_cast<float>(27));  // image 1's first pixel
  // the image side must match the request's seq
  const json& f = res["shapes"][1];
  EXPECT_EQ(f["status"], "failed");
  EXPECT_NE(f["error"].get<std::string>().find("224"), std::string::npos) << f["error"];

  // a text workload for an image tower fails the shape, naming pixel_values
  std::vector<int64_t> ids = {1, 2}, len = {2};
  write_safetensors(dir + "/t.safetensors", {{"input_ids", "I64", {1, 2}, ids.data(), 16},
                                             {"attention_mask", "I64", {1, 2}, ids.data(), 16},
                                             {"lengths", "I64", {1}, len.data(), 8}});
  req["shapes"] = {{{"batch", 1}, {"seq", 2}, {"workload", dir + "/t.safetensors"}, {"embeddings", dir + "/g.safetensors"}}};
  res = run(dir, req, be);
  EXPECT_EQ(res["shapes"][0]["status"], "failed");
  EXPECT_NE(res["shapes"][0]["error"].get<std::string>().find("pixel_values"), std::string::npos);
  // without target_ci: no checks, min_reached
  req["model"]["modality"] = "text";
  req["timing"].erase("target_ci");
  res = run(dir, req, be);
  EXPECT_EQ(res["shapes"][0]["status"], "ok") << res["shapes"][0].dump();
  EXPECT_EQ(res["shapes"][0]["stop_rule"], "min_reached");
  EXPECT_TRUE(res["shapes"][0]["target_ci"].is_null());
  EXPECT_EQ(res["shapes"][0]["ci_checks"], 0);
  EXPECT_EQ(res["shapes"][0]["samples_ns"].size(), 3u);
}

namespace {
// A corpus of 3 batches (rows 2, 3, 1); the first id of fed row r is 1000 k + r.
void write_corpus3(const std::string& path) {
  const std::vector<std::pair<int64_t, int64_t>> shape = {{2, 4}, {3, 2}, {1, 5}};
  std::vector<std::vector<int64_t>> ids(3), masks(3);
  static std::vector<int64_t> batches, order;
  batches.clear();
  order = {0, 1, 2, 3, 4, 5};
  std::vector<TensorView> views;
  for (size_t k = 0; k < 3; ++k) {
    batches.push_back(shape[k].first);
    batches.push_back(shape[k].second);
    for (int64_t r = 0; r < shape[k].first; ++r)
      for (int64_t c = 0; c < shape[k].second; ++c) {
        ids[k].push_back(c == 0 ? 1000 * static_cast<int64_t>(k) + r : 7);
        masks[k].push_back(1);
      }
  }
  views.push_back({"batches", "I64", {3, 2}, batches.data(), batches.size() * 8});
  for (size_t k = 0; k < 3; ++k) {
    views.push_back({"input_ids." + std::to_string(k), "I64", {shape[k].first, shape[k].second}, ids[k].data(), ids[k].size() * 8});
    views.push_back({"attention_mask." + std::to_string(k), "I64", {shape[k].first, shape[k].second}, masks[k].data(), masks[k].size() * 8});
  }
  views.push_back({"order", "I64", {6}, order.data(), 48});
  write_safetensors(path, views);
}
}  // namespace

TEST(Runner, FirstEmbeddingsAndAccuracy) {
  std::string dir = temp_dir();
  write_corpus3(dir + "/corpus.safetensors");
  std::vector<int64_t> ids = {5, 1, 6, 1}, mask = {1, 1, 1, 1}, len = {2, 2};
  write_safetensors(dir + "/t.safetensors", {{"input_ids", "I64", {2, 2}, ids.data(), 32},
                                             {"attention_mask", "I64", {2, 2}, mask.data(), 32},
                                             {"lengths", "I64", {2}, len.data(), 16}});
  for (int64_t warmup : {0, 2}) {
    json req = base_request(dir);
    req["timing"] = {{"warmup", warmup}, {"min_calls", 3}, {"min_seconds", 0.0}, {"max_seconds", 30.0}};
    req["shapes"] = {{{"batch", 2}, {"seq", 2}, {"workload", dir + "/t.safetensors"}, {"embeddings", dir + "/e0.safetensors"},
                      {"first_embeddings", dir + "/f0.safetensors"}},
                     {{"batch", 3}, {"seq", 5}, {"workload", dir + "/corpus.safetensors"}, {"embeddings", dir + "/e1.safetensors"},
                      {"first_embeddings", dir + "/f1.safetensors"}, {"scenario", "throughput"}},
                     {{"batch", 3}, {"seq", 5}, {"workload", dir + "/corpus.safetensors"}, {"embeddings", dir + "/e2.safetensors"},
                      {"first_embeddings", dir + "/f2.safetensors"}, {"scenario", "accuracy"}},
                     {{"batch", 2}, {"seq", 2}, {"workload", dir + "/t.safetensors"}, {"embeddings", dir + "/e3.safetensors"}}};
    FakeBackend be;
    json res = run(dir, req, be);
    ASSERT_EQ(res["shapes"].size(), 4u);
    for (const json& s : res["shapes"]) {
      EXPECT_EQ(s["status"], "ok") << s.dump();
      EXPECT_EQ(s["loop_peak_rss_mb"].is_null(), s["memory_method"] != kMemoryReset) << s.dump();
    }
    std::vector<int64_t> shape;
    // latency: calls 1 .. warmup + 3; the first is call 1
    std::vector<float> f = embeddings(dir + "/f0.safetensors", shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(f, (std::vector<float>{1, 5, 1, 6}));
    EXPECT_EQ(embeddings(dir + "/e0.safetensors", shape)[0], static_cast<float>(warmup + 3));
    EXPECT_EQ(res["shapes"][0]["first_embeddings"], dir + "/f0.safetensors");
    // throughput: the shape's first call is on batch 0 (2 rows)
    const float thr_first = static_cast<float>(warmup + 3 + 1);
    f = embeddings(dir + "/f1.safetensors", shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(f, (std::vector<float>{thr_first, 0, thr_first, 1}));
    // accuracy: each batch once in feed order, no warm-up
    const json& acc = res["shapes"][2];
    EXPECT_EQ(acc["stop_rule"], "single_pass");
    EXPECT_EQ(acc["samples_ns"].size(), 3u);
    EXPECT_TRUE(acc["warmup_ns"].empty());
    EXPECT_FALSE(acc.contains("passes_ns"));
    EXPECT_EQ(acc["items"], 6);
    const float c0 = static_cast<float>(warmup + 3 + warmup + res["shapes"][1]["samples_ns"].size());
    std::vector<float> e = embeddings(dir + "/e2.safetensors", shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{6, 2}));
    EXPECT_EQ(e, (std::vector<float>{c0 + 1, 0, c0 + 1, 1, c0 + 2, 1000, c0 + 2, 1001, c0 + 2, 1002, c0 + 3, 2000}));
    f = embeddings(dir + "/f2.safetensors", shape);
    EXPECT_EQ(f, (std::vector<float>{c0 + 1, 0, c0 + 1, 1}));
    EXPECT_TRUE(res["shapes"][3]["first_embeddings"].is_null());
  }
}

TEST(Runner, UnsupportedLoadIsItsOwnErrorKind) {
  std::string dir = temp_dir();
  json req = base_request(dir);
  req["precision"] = "bf16";
  req["shapes"] = {{{"batch", 1}, {"seq", 2}, {"workload", dir + "/none.safetensors"}, {"embeddings", dir + "/e.safetensors"}}};
  std::ofstream(dir + "/request.json") << req.dump();
  std::string a0 = "fake", a1 = "--request", a2 = dir + "/request.json", a3 = "--result", a4 = dir + "/result.json";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data()};
  FakeBackend be;
  EXPECT_EQ(run_main(5, argv, be, "fake-cpp"), 1);
  std::ifstream in(dir + "/result.json");
  json res = json::parse(in);
  EXPECT_EQ(res["error"], (json{{"kind", "unsupported"}, {"message", "precision bf16 is not run natively here"}}));
  EXPECT_TRUE(res["shapes"].empty());
}
