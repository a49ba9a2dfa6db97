// BGE-M3's outputs in the C++ harness: the lexical weights (the hand-computed
// case of tests/unit/test_outputs.py), the request's model.outputs, and a
// sparse + colbert call through run_main writing every tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "outputs.hpp"
#include "protocol.hpp"
#include "runner.hpp"
#include "safetensors.hpp"
#include "test_util.hpp"

using namespace embedperf;
using nlohmann::json;

namespace {

// Two rows of 8 tokens: repeated ids (7 twice in row 0, the larger weight wins;
// 5 twice in row 1, the first is larger), a zero and a negative weight (never
// kept), the special ids 0 cls, 2 eos, 1 pad, 3 unk, and padding that holds an
// ordinary id (9 in row 1, dropped by the mask).
const std::vector<int64_t> kIds = {0, 7, 9, 7, 3, 2, 1, 1, 0, 5, 5, 8, 2, 1, 9, 9};
const std::vector<int64_t> kMask = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0};
const std::vector<float> kWeights = {0.9f, 0.2f, 0.0f, 0.5f, 0.7f, 0.8f, 0.6f, 0.6f,
                                     0.4f, 0.3f, 0.1f, -0.2f, 0.9f, 0.5f, 0.9f, 0.9f};

template <typename T>
std::vector<T> tensor(const std::map<std::string, Tensor>& ts, const std::string& name, std::vector<int64_t>& shape) {
  const Tensor& t = ts.at(name);
  shape = t.shape;
  std::vector<T> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

// Returns the hand-case token weights and a [2, 7, 2] multi-vector output whose
// values are the token's position, zero at padding.
class TokenBackend : public Backend {
 public:
  json framework() override { return {{"name", "fake"}, {"version", "0"}}; }
  void load(const Request& req) override { model_ = req.model; }
  json device(const Request& req) override { return {{"requested", req.device}, {"used", "cpu"}, {"provider", nullptr}}; }
  json settings() override { return json::object(); }
  Output call(const Workload& w) override {
    dense_.assign(static_cast<size_t>(w.batch * 2), 1.0f);
    Output o{dense_.data(), w.batch, 2};
    if (model_.sparse) o.token_weights = kWeights.data(), o.seq = w.seq;
    if (model_.colbert) {
      colbert_.assign(static_cast<size_t>(w.batch * (w.seq - 1) * 2), 0.0f);
      for (int64_t r = 0; r < w.batch; ++r)
        for (int64_t t = 1; t < w.seq; ++t)
          if (w.attention_mask[static_cast<size_t>(r * w.seq + t)])
            colbert_[static_cast<size_t>((r * (w.seq - 1) + t - 1) * 2)] = static_cast<float>(t);
      o.colbert = colbert_.data(), o.tokens = w.seq - 1, o.colbert_dim = 2;
    }
    return o;
  }

 private:
  ModelSpec model_;
  std::vector<float> dense_, colbert_;
};

}  // namespace

TEST(Outputs, LexicalWeightsByHand) {
  Lexical lex;
  lexical_weights(kWeights.data(), kIds.data(), kMask.data(), 2, 8, {0, 1, 2, 3}, lex);
  EXPECT_EQ(lex.offsets, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(lex.ids, (std::vector<int64_t>{7, 5}));
  EXPECT_EQ(lex.weights, (std::vector<float>{0.5f, 0.3f}));
  // nothing dropped: every real id keeps its max, ids ascending (and the buffers are reused)
  lexical_weights(kWeights.data(), kIds.data(), kMask.data(), 2, 8, {}, lex);
  EXPECT_EQ(lex.offsets, (std::vector<int64_t>{0, 4, 7}));
  EXPECT_EQ(lex.ids, (std::vector<int64_t>{0, 2, 3, 7, 0, 2, 5}));
  EXPECT_EQ(lex.weights, (std::vector<float>{0.9f, 0.8f, 0.7f, 0.5f, 0.4f, 0.9f, 0.3f}));
}

TEST(Outputs, RequestModelOutputs) {
  json j = {{"protocol", 1}, {"runtime", "x"},
            {"model", {{"name", "m"}, {"family", "xlm-roberta"}, {"pooling", "cls"}, {"normalize", true},
                       {"output_dim", 2}, {"outputs", {"dense", "sparse", "colbert"}}, {"unused_token_ids", {0, 1, 2, 3}}}},
            {"artifact", {{"format", "none"}, {"path", ""}}},
            {"shapes", {{{"batch", 1}, {"seq", 2}, {"workload", "w"}, {"embeddings", "e"}}}},
            {"device", "cpu"}, {"precision", "fp32"}, {"threads", {{"intra_op", 1}, {"inter_op", 1}}},
            {"timing", {{"warmup", 0}, {"min_calls", 1}, {"min_seconds", 0}, {"max_seconds", 1}}}};
  Request r = parse_request(j);
  EXPECT_TRUE(r.model.sparse && r.model.colbert);
  EXPECT_EQ(r.model.unused_token_ids, (std::vector<int64_t>{0, 1, 2, 3}));
  j["model"]["outputs"] = {"dense"};
  r = parse_request(j);
  EXPECT_FALSE(r.model.sparse || r.model.colbert);
  j["model"]["outputs"] = {"sparse"};
  EXPECT_THROW(parse_request(j), std::runtime_error);  // dense is always returned
  j["model"]["outputs"] = {"dense", "lexical"};
  EXPECT_THROW(parse_request(j), std::runtime_error);
}

TEST(Outputs, SparseAndColbertThroughTheHarness) {
  std::string dir = temp_dir();
  std::vector<int64_t> len = {6, 5};
  write_safetensors(dir + "/w.safetensors", {{"input_ids", "I64", {2, 8}, kIds.data(), 128},
                                             {"attention_mask", "I64", {2, 8}, kMask.data(), 128},
                                             {"lengths", "I64", {2}, len.data(), 16}});
  json req = {{"protocol", 1}, {"runtime", "fake-cpp"},
              {"model", {{"name", "m"}, {"family", "xlm-roberta"}, {"pooling", "cls"}, {"normalize", true},
                         {"output_dim", 2}, {"outputs", {"dense", "sparse", "colbert"}}, {"unused_token_ids", {0, 1, 2, 3}}}},
              {"artifact", {{"format", "none"}, {"path", dir}}},
              {"shapes", {{{"batch", 2}, {"seq", 8}, {"workload", dir + "/w.safetensors"}, {"embeddings", dir + "/e.safetensors"},
                           {"first_embeddings", dir + "/f.safetensors"}}}},
              {"device", "cpu"}, {"precision", "fp32"}, {"threads", {{"intra_op", 1}, {"inter_op", 1}}},
              {"timing", {{"warmup", 1}, {"min_calls", 2}, {"min_seconds", 0.0}, {"max_seconds", 30.0}}}};
  std::ofstream(dir + "/request.json") << req.dump();
  std::string a0 = "fake", a1 = "--request", a2 = dir + "/request.json", a3 = "--result", a4 = dir + "/result.json";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data()};
  TokenBackend be;
  ASSERT_EQ(run_main(5, argv, be, "fake-cpp"), 0);
  json res = json::parse(std::ifstream(dir + "/result.json"));
  ASSERT_EQ(res["shapes"][0]["status"], "ok") << res.dump();
  for (const char* file : {"/e.safetensors", "/f.safetensors"}) {
    auto ts = read_safetensors(dir + file);
    std::vector<int64_t> shape;
    EXPECT_EQ(tensor<float>(ts, "token_weights", shape), kWeights);
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 8}));
    EXPECT_EQ(tensor<int64_t>(ts, "lexical_ids", shape), (std::vector<int64_t>{7, 5}));
    EXPECT_EQ(tensor<float>(ts, "lexical_weights", shape), (std::vector<float>{0.5f, 0.3f}));
    EXPECT_EQ(tensor<int64_t>(ts, "lexical_offsets", shape), (std::vector<int64_t>{0, 1, 2}));
    std::vector<float> c = tensor<float>(ts, "colbert_vectors", shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 7, 2}));
    EXPECT_EQ(c[0], 1.0f);       // row 0, token 1
    EXPECT_EQ(c[2 * 5], 0.0f);   // row 0, token 6: padding
    EXPECT_EQ(c[2 * 7 + 2 * 3], 4.0f);  // row 1, token 4
    EXPECT_EQ(tensor<float>(ts, "sentence_embedding", shape).size(), 4u);
  }
}
