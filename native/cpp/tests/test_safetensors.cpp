#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
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
