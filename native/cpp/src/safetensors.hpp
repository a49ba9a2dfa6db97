// Minimal safetensors reader/writer: 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace embedperf {

struct Tensor {
  std::string dtype;             // "F32", "I64", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;     // raw bytes, little-endian
  int64_t numel() const;
};

size_t dtype_size(const std::string& dtype);  // throws on unknown dtype

// Throws std::runtime_error on malformed files.
std::map<std::string, Tensor> read_safetensors(const std::string& path);

struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Written atomically (temporary file + rename).
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors);

// The workload of one shape (docs/protocol.md): input_ids I64 [B,S],
// attention_mask I64 [B,S], lengths I64 [B].
struct Workload {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
  std::vector<int64_t> lengths;
};
Workload load_workload(const std::string& path);

}  // namespace embedperf
