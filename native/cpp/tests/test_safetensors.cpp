#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "safetensors.hpp"
#include "test_util.hpp"

using namespace embedperf;

TEST(Safetensors, RoundTrip) {
  std::string dir = temp_dir();
  std::vector<float> f = {1.5f, -2.25f, 0.0f, 3.0f, 1e-7f, -1e7f};
  std::vector<int64_t> ids = {101, 2023, 102, 0, 101, 9999999999LL};
  std::vector<int64_t> len = {3, 2};
  std::string p = dir + "/rt.safetensors";
  write_safetensors(p, {{"emb", "F32", {2, 3}, f.data(), f.size() * 4},
                        {"input_ids", "I64", {2, 3}, ids.data(), ids.size() * 8},
                        {"lengths", "I64", {2}, len.data(), len.size() * 8}});
  auto ts = read_safetensors(p);
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts["emb"].dtype, "F32");
  EXPECT_EQ(ts["emb"].shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> f2(6);
  std::memcpy(f2.data(), ts["emb"].data.data(), 24);
  EXPECT_EQ(f, f2);
  std::vector<int64_t> ids2(6);
  std::memcpy(ids2.data(), ts["input_ids"].data.data(), 48);
  EXPECT_EQ(ids, ids2);
  EXPECT_EQ(ts["lengths"].shape, (std::vector<int64_t>{2}));

  // header is 8-byte aligned so the data starts aligned
  std::ifstream in(p, std::ios::binary);
  uint64_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 8);
  EXPECT_EQ(hlen % 8, 0u);
}

TEST(Safetensors, Workload) {
  std::string dir = temp_dir();
  std::vector<int64_t> ids = {101, 7, 102, 101, 102, 0};
  std::vector<int64_t> mask = {1, 1, 1, 1, 1, 0};
  std::vector<int64_t> len = {3, 2};
  std::string p = dir + "/w.safetensors";
  write_safetensors(p, {{"input_ids", "I64", {2, 3}, ids.data(), 48},
                        {"attention_mask", "I64", {2, 3}, mask.data(), 48},
                        {"lengths", "I64", {2}, len.data(), 16}});
  Workload w = load_workload(p);
  EXPECT_EQ(w.batch, 2);
  EXPECT_EQ(w.seq, 3);
  EXPECT_EQ(w.input_ids, ids);
  EXPECT_EQ(w.attention_mask, mask);
  EXPECT_EQ(w.lengths, len);

  // wrong dtype / missing tensor are clear errors
  std::vector<int32_t> mask32 = {1, 1, 1, 1, 1, 0};
  std::string q = dir + "/bad.safetensors";
  write_safetensors(q, {{"input_ids", "I64", {2, 3}, ids.data(), 48},
                        {"attention_mask", "I32", {2, 3}, mask32.data(), 24},
                        {"lengths", "I64", {2}, len.data(), 16}});
  try {
    load_workload(q);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("attention_mask"), std::string::npos) << e.what();
  }
  std::string r = dir + "/missing.safetensors";
  write_safetensors(r, {{"input_ids", "I64", {2, 3}, ids.data(), 48}});
  EXPECT_THROW(load_workload(r), std::runtime_error);
}

TEST(Safetensors, RejectsMalformed) {
  std::string dir = temp_dir();
  std::string p = dir + "/junk.safetensors";
  {
    std::ofstream o(p, std::ios::binary);
    uint64_t hlen = 1000;  // longer than the file
    o.write(reinterpret_cast<const char*>(&hlen), 8);
    o << "{}";
  }
  EXPECT_THROW(read_safetensors(p), std::runtime_error);
  {
    std::ofstream o(p, std::ios::binary);
    std::string h = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})";  // 4 floats need 16 bytes
    uint64_t hlen = h.size();
    o.write(reinterpret_cast<const char*>(&hlen), 8);
    o << h << std::string(8, '\0');
  }
  EXPECT_THROW(read_safetensors(p), std::runtime_error);
  EXPECT_THROW(read_safetensors(dir + "/does-not-exist"), std::runtime_error);
}

TEST(Safetensors, ReadsMetadataAndPythonStyleHeader) {
  // A file as the Python safetensors library writes it: __metadata__, header padded with spaces.
  std::string dir = temp_dir();
  std::string p = dir + "/py.safetensors";
  std::string h = R"({"__metadata__":{"format":"pt"},"lengths":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})";
  while ((h.size() + 8) % 8) h += ' ';
  {
    std::ofstream o(p, std::ios::binary);
    uint64_t hlen = h.size();
    o.write(reinterpret_cast<const char*>(&hlen), 8);
    o << h;
    int64_t v = 42;
    o.write(reinterpret_cast<const char*>(&v), 8);
  }
  auto ts = read_safetensors(p);
  ASSERT_EQ(ts.size(), 1u);
  int64_t v = 0;
  std::memcpy(&v, ts["lengths"].data.data(), 8);
  EXPECT_EQ(v, 42);
}

TEST(Safetensors, ImageWorkload) {
  std::string dir = temp_dir();
  const int64_t B = 2, H = 4, W = 5;
  std::vector<float> px(static_cast<size_t>(B * 3 * H * W));
  for (size_t i = 0; i < px.size(); ++i) px[i] = 0.25f * static_cast<float>(i) - 3.0f;
  std::string p = dir + "/img.safetensors";
  write_safetensors(p, {{"pixel_values", "F32", {B, 3, H, W}, px.data(), px.size() * 4}});
  Workload w = load_image_workload(p);
  EXPECT_EQ(w.path, p);
  EXPECT_EQ(w.batch, B);
  EXPECT_EQ(w.seq, H);  // the image side
  EXPECT_EQ(w.pixel_shape, (std::vector<int64_t>{B, 3, H, W}));
  EXPECT_EQ(w.pixel_values, px);
  EXPECT_TRUE(w.has_pixel_values);
  EXPECT_FALSE(w.has_input_ids);
  EXPECT_FALSE(w.has_attention_mask);
  EXPECT_TRUE(w.input_ids.empty());

  auto error_of = [](const std::string& path) -> std::string {
    try {
      load_image_workload(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  // a text workload is not an image workload (and the reverse)
  std::vector<int64_t> ids = {1, 2}, len = {2};
  std::string t = dir + "/text.safetensors";
  write_safetensors(t, {{"input_ids", "I64", {1, 2}, ids.data(), 16},
                        {"attention_mask", "I64", {1, 2}, ids.data(), 16},
                        {"lengths", "I64", {1}, len.data(), 8}});
  EXPECT_NE(error_of(t).find("pixel_values"), std::string::npos) << error_of(t);
  try {
    load_workload(p);
    FAIL() << "an image workload read as a text workload";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("input_ids"), std::string::npos) << e.what();
  }
  // wrong dtype, wrong channel count, wrong rank
  std::vector<double> px64(px.begin(), px.end());
  std::string d = dir + "/f64.safetensors";
  write_safetensors(d, {{"pixel_values", "F64", {B, 3, H, W}, px64.data(), px64.size() * 8}});
  EXPECT_NE(error_of(d).find("F32"), std::string::npos) << error_of(d);
  std::string c = dir + "/c4.safetensors";
  write_safetensors(c, {{"pixel_values", "F32", {1, 4, 3, 5}, px.data(), 60 * 4}});
  EXPECT_NE(error_of(c).find("[B,3,H,W]"), std::string::npos) << error_of(c);
  std::string r3 = dir + "/r3.safetensors";
  write_safetensors(r3, {{"pixel_values", "F32", {B * 3, H, W}, px.data(), px.size() * 4}});
  EXPECT_NE(error_of(r3).find("[B,3,H,W]"), std::string::npos) << error_of(r3);
}

namespace {
// A corpus of batches with the given [rows, seq]; token values encode (k, row, col).
void write_corpus(const std::string& path, const std::vector<std::pair<int64_t, int64_t>>& shape, int64_t order_len = -1,
                  const std::string& skip = "") {
  std::vector<std::vector<int64_t>> ids, masks;
  std::vector<int64_t> batches, order;
  int64_t n = 0;
  for (size_t k = 0; k < shape.size(); ++k) {
    auto [rows, seq] = shape[k];
    batches.push_back(rows);
    batches.push_back(seq);
    std::vector<int64_t> id, mask;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < seq; ++c) {
        id.push_back(static_cast<int64_t>(k) * 10000 + r * 100 + c);
        mask.push_back(c <= r ? 1 : 0);
      }
    ids.push_back(id);
    masks.push_back(mask);
    n += rows;
  }
  if (order_len < 0) order_len = n;
  for (int64_t i = 0; i < order_len; ++i) order.push_back(order_len - 1 - i);
  std::vector<TensorView> views;
  std::vector<std::string> names;  // keep the names alive
  names.reserve(2 * shape.size());
  views.push_back({"batches", "I64", {static_cast<int64_t>(shape.size()), 2}, batches.data(), batches.size() * 8});
  for (size_t k = 0; k < shape.size(); ++k) {
    std::vector<int64_t> dims = {shape[k].first, shape[k].second};
    for (const char* base : {"input_ids.", "attention_mask."}) {
      std::string name = base + std::to_string(k);
      if (name == skip) continue;
      const auto& v = base[0] == 'i' ? ids[k] : masks[k];
      views.push_back({name, "I64", dims, v.data(), v.size() * 8});
    }
  }
  views.push_back({"order", "I64", {order_len}, order.data(), order.size() * 8});
  write_safetensors(path, views);
}

std::string corpus_error(const std::string& path) {
  try {
    load_corpus(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Safetensors, Corpus) {
  std::string dir = temp_dir();
  std::string p = dir + "/corpus.safetensors";
  // 12 batches so that "input_ids.10" / "input_ids.11" (decimal, no padding) are read
  std::vector<std::pair<int64_t, int64_t>> shape;
  for (int64_t k = 0; k < 12; ++k) shape.emplace_back(k % 3 + 1, 2 + k);
  write_corpus(p, shape);
  Corpus c = load_corpus(p);
  ASSERT_EQ(c.batches.size(), 12u);
  int64_t n = 0;
  for (size_t k = 0; k < shape.size(); ++k) {
    const Workload& w = c.batches[k];
    EXPECT_EQ(w.batch, shape[k].first);
    EXPECT_EQ(w.seq, shape[k].second);
    EXPECT_TRUE(w.has_input_ids && w.has_attention_mask);
    EXPECT_FALSE(w.has_pixel_values);
    ASSERT_EQ(w.input_ids.size(), static_cast<size_t>(w.batch * w.seq));
    ASSERT_EQ(w.attention_mask.size(), w.input_ids.size());
    // row r, column c of batch k
    int64_t r = w.batch - 1, col = w.seq - 1;
    EXPECT_EQ(w.input_ids[static_cast<size_t>(r * w.seq + col)], static_cast<int64_t>(k) * 10000 + r * 100 + col);
    EXPECT_EQ(w.attention_mask[static_cast<size_t>(r * w.seq + col)], col <= r ? 1 : 0);
    n += w.batch;
  }
  EXPECT_EQ(c.items, n);
  EXPECT_EQ(c.max_rows, 3);
  EXPECT_EQ(c.max_seq, 13);
  ASSERT_EQ(c.order.size(), static_cast<size_t>(n));
  EXPECT_EQ(c.order.front(), n - 1);
  EXPECT_EQ(c.order.back(), 0);

  // a missing batch tensor is named
  std::string m = dir + "/missing.safetensors";
  write_corpus(m, {{2, 3}, {1, 4}}, -1, "attention_mask.1");
  EXPECT_NE(corpus_error(m).find("attention_mask.1"), std::string::npos) << corpus_error(m);
  // order must have one entry per fed row
  std::string o = dir + "/order.safetensors";
  write_corpus(o, {{2, 3}, {1, 4}}, 2);
  EXPECT_NE(corpus_error(o).find("order"), std::string::npos) << corpus_error(o);
  // batches that disagree with their tensors
  std::string s = dir + "/shape.safetensors";
  {
    std::vector<int64_t> batches = {2, 3}, ids(6), order = {0, 1};
    write_safetensors(s, {{"batches", "I64", {1, 2}, batches.data(), 16},
                          {"input_ids.0", "I64", {3, 2}, ids.data(), 48},
                          {"attention_mask.0", "I64", {2, 3}, ids.data(), 48},
                          {"order", "I64", {2}, order.data(), 16}});
  }
  EXPECT_NE(corpus_error(s).find("input_ids.0"), std::string::npos) << corpus_error(s);
  // no batches at all / a bad batches table
  std::string e = dir + "/empty.safetensors";
  {
    std::vector<int64_t> none;
    write_safetensors(e, {{"batches", "I64", {0, 2}, none.data(), 0}, {"order", "I64", {0}, none.data(), 0}});
  }
  EXPECT_NE(corpus_error(e).find("batches"), std::string::npos) << corpus_error(e);
  std::string z = dir + "/zero.safetensors";
  {
    std::vector<int64_t> batches = {0, 3}, order;
    write_safetensors(z, {{"batches", "I64", {1, 2}, batches.data(), 16}, {"order", "I64", {0}, order.data(), 0}});
  }
  EXPECT_NE(corpus_error(z).find("batches[0]"), std::string::npos) << corpus_error(z);
  // a latency workload is not a corpus
  std::vector<int64_t> ids = {1, 2}, len = {2};
  std::string t = dir + "/text.safetensors";
  write_safetensors(t, {{"input_ids", "I64", {1, 2}, ids.data(), 16},
                        {"attention_mask", "I64", {1, 2}, ids.data(), 16},
                        {"lengths", "I64", {1}, len.data(), 8}});
  EXPECT_NE(corpus_error(t).find("batches"), std::string::npos) << corpus_error(t);
}
