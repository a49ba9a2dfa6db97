#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <string>
#include <vector>

#include "embed.hpp"
#include "sha256.hpp"

using namespace embedperf;

TEST(Embed, TruncateNormaliseHandChecked) {
  // row 0: [3, 4, 12, 0] -> keep 2 -> [3,4]/5 = [0.6, 0.8]
  // row 1: [1, 2, 2, 9]  -> keep 2 -> [1,2]/sqrt(5)
  // row 2: [0, 0, 5, 1]  -> keep 2 -> zero norm stays zero (clamped, no NaN)
  std::vector<float> in = {3, 4, 12, 0, 1, 2, 2, 9, 0, 0, 5, 1};
  std::vector<float> out;
  truncate_normalize(in.data(), 3, 4, 2, out);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_FLOAT_EQ(out[0], 0.6f);
  EXPECT_FLOAT_EQ(out[1], 0.8f);
  EXPECT_FLOAT_EQ(out[2], 1.0f / std::sqrt(5.0f));
  EXPECT_FLOAT_EQ(out[3], 2.0f / std::sqrt(5.0f));
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[5], 0.0f);
}

TEST(Embed, FullWidthRenormalises) {
  std::vector<float> in = {1, 2, 2};  // norm 3
  std::vector<float> out;
  truncate_normalize(in.data(), 1, 3, 3, out);
  EXPECT_FLOAT_EQ(out[0], 1.0f / 3);
  EXPECT_FLOAT_EQ(out[1], 2.0f / 3);
  EXPECT_FLOAT_EQ(out[2], 2.0f / 3);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two.data(), two.size()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million.data(), million.size()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // incremental updates across block boundaries give the same digest
  Sha256 s;
  for (size_t i = 0; i < million.size(); i += 77) s.update(million.data() + i, std::min<size_t>(77, million.size() - i));
  EXPECT_EQ(s.hexdigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
