// Which precision the ONNX Runtime runner may claim, decided from the request
// and the graph file: the same rules and the same walk as the Python runner's
// src/embedperf/runners/ort_precision.py and the Rust runner's precision.rs.
//
// The ONNX protobuf is read over mmap (ModelProto.graph, its nodes' op_type,
// its initializers' data_type, subgraphs in node attributes, model-local
// functions); every weight's bytes are skipped, never read, so the check costs
// no resident memory. An int8 label needs quantized operators in the graph, an
// fp16 label float16 initializers, an fp32 label neither.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace embedperf {

struct GraphFacts {
  std::map<std::string, int64_t> op_types;           // nodes per op type
  std::map<std::string, int64_t> initializer_types;  // initializers per element type (float32, int8, ...)

  std::map<std::string, int64_t> quantized_op_types() const;
  int64_t quantized_ops() const;
  int64_t initializers(const std::string& dtype) const;
  // {quantized_ops, quantized_op_types, initializer_types}: the evidence settings record.
  nlohmann::json evidence() const;
};

// MatMulInteger, DynamicQuantizeLinear, QLinear*, ...: ops only a quantized graph holds.
bool is_quantized_op(const std::string& op);

// Op types and initializer types of a serialized ModelProto; throws on malformed protobuf.
GraphFacts graph_facts_of(const uint8_t* data, size_t size);
// The same for a model file, mapped read-only.
GraphFacts graph_facts(const std::string& path);

// Returns when the graph runs at `requested` natively on this device; throws
// Unsupported (a refusal: the cell is skipped) or std::runtime_error (a
// mislabelled artifact) otherwise.
void decide_precision(const std::string& requested, const std::string& artifact_precision, bool cuda,
                      const GraphFacts& facts);

}  // namespace embedperf
