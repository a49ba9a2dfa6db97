// Small self-contained SHA-256 (FIPS 180-4), for library_sha256.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace embedperf {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  std::string hexdigest();  // finalises

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buflen_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t len);
std::string sha256_file(const std::string& path);  // throws on I/O error

}  // namespace embedperf
