// The runner protocol (docs/protocol.md, src/embedperf/protocol/*.schema.json):
// request parsing and atomic JSON writes. No ONNX Runtime dependency.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace embedperf {

struct TimingSpec {
  int64_t warmup = 0;
  int64_t min_calls = 1;
  double min_seconds = 0.0;
  double max_seconds = 1.0;
  int64_t max_calls = 0;  // 0: no cap on the number of timed calls
  // Stopping rule (docs/protocol.md): stop once the 95% bootstrap CI of the
  // median lies within +-target_ci of the median (stop_rule ci_reached).
  std::optional<double> target_ci;
};

struct ShapeSpec {
  int64_t batch = 0;
  int64_t seq = 0;
  std::string workload;
  std::string embeddings;
  std::string scenario = "latency";  // latency | throughput | accuracy
  std::string first_embeddings;      // where to write the first call's output; empty: not asked
};

// request.onnxruntime; every field optional (absent -> ONNX Runtime's default).
struct OrtSpec {
  bool present = false;  // the object itself was given (not null/absent)
  std::optional<std::string> graph_optimization_level;  // disable|basic|extended|all
  std::optional<std::string> execution_mode;            // sequential|parallel
  std::optional<bool> enable_cpu_mem_arena;
  std::optional<bool> allow_spinning;
  // Extra session config entries (key -> value), applied after the options above.
  std::vector<std::pair<std::string, std::string>> session_config;
};

struct FaultSpec {
  std::string kind;  // crash|hang|exit|oom
  int64_t at_shape = 0;
};

struct ModelSpec {
  std::string name;
  std::string family;
  std::string pooling;
  bool normalize = true;
  std::vector<std::string> dense;
  int64_t output_dim = 0;
  std::optional<int64_t> truncate_dim;
  std::string modality = "text";  // text | image (which tower of a multimodal model)
  // What each call returns beyond sentence_embedding (docs/outputs.md): BGE-M3's
  // token weights (sparse, + lexical weights) and multi-vectors (colbert).
  bool sparse = false;
  bool colbert = false;
  std::vector<int64_t> unused_token_ids;  // with sparse: ids the lexical weights drop
};

struct Request {
  int protocol = 0;
  std::string runtime;
  ModelSpec model;
  std::string artifact_format;
  std::string artifact_path;
  std::optional<std::string> artifact_sha256;
  std::string artifact_precision = "fp32";  // what the artifact itself holds (fp32 when absent)
  std::vector<ShapeSpec> shapes;
  std::string device;  // cpu | cuda | cuda:N
  std::string precision;  // fp32 | fp16 | bf16 | int8: run natively or refuse (Unsupported)
  int64_t intra_op = 1;
  int64_t inter_op = 1;
  TimingSpec timing;
  OrtSpec onnxruntime;
  std::optional<FaultSpec> fault;
  nlohmann::json raw;  // the request as read
};

// Throws std::runtime_error naming the offending field.
Request parse_request(const nlohmann::json& j);
Request load_request(const std::string& path);

// "cuda" -> 0, "cuda:3" -> 3, "cpu" -> nullopt.
std::optional<int> cuda_device_index(const std::string& device);

// Write text to path atomically: temporary file in the same directory, then rename.
void write_file_atomic(const std::string& path, const std::string& contents);
void write_json_atomic(const std::string& path, const nlohmann::json& j);

}  // namespace embedperf
