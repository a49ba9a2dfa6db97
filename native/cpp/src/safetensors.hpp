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

// The workload of one shape (docs/protocol.md, Files). A text workload holds
// input_ids I64 [B,S], attention_mask I64 [B,S], lengths I64 [B]; an image
// workload holds pixel_values F32 [B,3,H,W] (batch = B, seq = H) and no token
// arrays. One batch of a corpus holds input_ids/attention_mask only. The has_*
// flags say which graph inputs the workload can feed.
struct Workload {
  std::string path;  // the file it came from (for messages)
  int64_t batch = 0;
  int64_t seq = 0;   // text: S; image: the image side H
  bool has_input_ids = false;
  bool has_attention_mask = false;
  bool has_pixel_values = false;
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
  std::vector<int64_t> lengths;
  std::vector<int64_t> pixel_shape;  // [B,C,H,W]
  std::vector<float> pixel_values;
};
// Text workload: input_ids, attention_mask, lengths (all required).
Workload load_workload(const std::string& path);
// Image workload: pixel_values F32 [B,3,H,W] (required).
Workload load_image_workload(const std::string& path);

// A throughput corpus (docs/protocol.md, Throughput scenario): batches I64 [K,2]
// (rows, seq of each batch in feed order), input_ids.k / attention_mask.k I64
// [rows,seq] for k = 0..K-1 (decimal, no padding), order I64 [N] with N the
// total number of rows.
struct Corpus {
  std::string path;
  std::vector<Workload> batches;  // in feed order; lengths left empty
  std::vector<int64_t> order;     // corpus index of each fed row
  int64_t items = 0;              // rows per pass (N)
  int64_t max_rows = 0;           // the largest batch
  int64_t max_seq = 0;            // the longest batch
};
Corpus load_corpus(const std::string& path);

}  // namespace embedperf
