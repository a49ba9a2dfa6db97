#include "precision.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <stdexcept>

#include "runner.hpp"

namespace embedperf {
namespace {

// Field numbers of onnx.proto3 the walk follows.
constexpr uint64_t kModelGraph = 7, kModelFunctions = 25;
constexpr uint64_t kGraphNode = 1, kGraphInitializer = 5;
constexpr uint64_t kNodeOpType = 4, kNodeAttribute = 5;
constexpr uint64_t kAttributeGraph = 6, kAttributeGraphs = 11;
constexpr uint64_t kTensorDataType = 2;
constexpr uint64_t kFunctionNode = 7;

const std::array<const char*, 11> kQuantizedOps = {
    "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm", "QEmbedLayerNormalization",
    "DynamicQuantizeLSTM"};

std::string data_type(uint64_t t) {
  switch (t) {
    case 1: return "float32";
    case 2: return "uint8";
    case 3: return "int8";
    case 4: return "uint16";
    case 5: return "int16";
    case 6: return "int32";
    case 7: return "int64";
    case 9: return "bool";
    case 10: return "float16";
    case 11: return "float64";
    case 12: return "uint32";
    case 13: return "uint64";
    case 16: return "bfloat16";
    default: return "type" + std::to_string(t);
  }
}

struct Span {
  const uint8_t* p;
  size_t n;
};

uint64_t varint(Span s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= s.n) throw std::runtime_error("malformed protobuf: truncated varint");
    const uint8_t byte = s.p[pos++];
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (byte < 0x80) return v;
  }
  throw std::runtime_error("malformed protobuf varint");
}

// Calls on_field(number, varint value, payload) for every field of a message;
// payload.p is null for a varint field, value is 0 for a length-delimited one.
void for_each_field(Span s, const std::function<void(uint64_t, uint64_t, Span)>& on_field) {
  size_t pos = 0;
  while (pos < s.n) {
    const uint64_t key = varint(s, pos);
    const uint64_t number = key >> 3;
    switch (key & 7) {
      case 0: {
        const uint64_t v = varint(s, pos);
        on_field(number, v, Span{nullptr, 0});
        break;
      }
      case 1:
        pos += 8;
        if (pos > s.n) throw std::runtime_error("malformed protobuf: truncated fixed64");
        break;
      case 2: {
        const uint64_t len = varint(s, pos);
        if (len > s.n - pos) throw std::runtime_error("malformed protobuf: a field runs past its message");
        on_field(number, 0, Span{s.p + pos, static_cast<size_t>(len)});
        pos += static_cast<size_t>(len);
        break;
      }
      case 5:
        pos += 4;
        if (pos > s.n) throw std::runtime_error("malformed protobuf: truncated fixed32");
        break;
      default:
        throw std::runtime_error("unsupported protobuf wire type " + std::to_string(key & 7));
    }
  }
}

void walk_graph(Span g, GraphFacts& facts);

void walk_node(Span node, GraphFacts& facts) {
  for_each_field(node, [&](uint64_t number, uint64_t, Span sub) {
    if (!sub.p) return;
    if (number == kNodeOpType) {
      ++facts.op_types[std::string(reinterpret_cast<const char*>(sub.p), sub.n)];
    } else if (number == kNodeAttribute) {
      for_each_field(sub, [&](uint64_t inner, uint64_t, Span graph) {
        if (graph.p && (inner == kAttributeGraph || inner == kAttributeGraphs)) walk_graph(graph, facts);
      });
    }
  });
}

void walk_graph(Span g, GraphFacts& facts) {
  for_each_field(g, [&](uint64_t number, uint64_t, Span sub) {
    if (!sub.p) return;
    if (number == kGraphNode) {
      walk_node(sub, facts);
    } else if (number == kGraphInitializer) {
      for_each_field(sub, [&](uint64_t inner, uint64_t value, Span payload) {
        if (inner == kTensorDataType && !payload.p) ++facts.initializer_types[data_type(value)];
      });
    }
  });
}

}  // namespace

bool is_quantized_op(const std::string& op) {
  for (const char* q : kQuantizedOps)
    if (op == q) return true;
  return op.rfind("QLinear", 0) == 0;
}

std::map<std::string, int64_t> GraphFacts::quantized_op_types() const {
  std::map<std::string, int64_t> out;
  for (const auto& [op, n] : op_types)
    if (is_quantized_op(op)) out[op] = n;
  return out;
}

int64_t GraphFacts::quantized_ops() const {
  int64_t total = 0;
  for (const auto& [op, n] : quantized_op_types()) total += n;
  return total;
}

int64_t GraphFacts::initializers(const std::string& dtype) const {
  auto it = initializer_types.find(dtype);
  return it == initializer_types.end() ? 0 : it->second;
}

nlohmann::json GraphFacts::evidence() const {
  return {{"quantized_ops", quantized_ops()},
          {"quantized_op_types", quantized_op_types()},
          {"initializer_types", initializer_types}};
}

GraphFacts graph_facts_of(const uint8_t* data, size_t size) {
  GraphFacts facts;
  for_each_field(Span{data, size}, [&](uint64_t number, uint64_t, Span sub) {
    if (!sub.p) return;
    if (number == kModelGraph) {
      walk_graph(sub, facts);
    } else if (number == kModelFunctions) {
      for_each_field(sub, [&](uint64_t inner, uint64_t, Span node) {
        if (node.p && inner == kFunctionNode) walk_node(node, facts);
      });
    }
  });
  return facts;
}

GraphFacts graph_facts(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot stat " + path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return GraphFacts{};
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw std::runtime_error("cannot map " + path);
  try {
    GraphFacts facts = graph_facts_of(static_cast<const uint8_t*>(map), size);
    ::munmap(map, size);
    return facts;
  } catch (const std::exception& e) {
    ::munmap(map, size);
    throw std::runtime_error("reading the graph of " + path + ": " + e.what());
  }
}

void decide_precision(const std::string& requested, const std::string& artifact_precision, bool cuda,
                      const GraphFacts& facts) {
  if ((requested == "fp16" || requested == "bf16") && !cuda)
    throw Unsupported("ONNX Runtime's CPU execution provider has no fp16/bf16 kernels for this graph");
  if (requested == "bf16") throw Unsupported("no bf16 ONNX graph is exported (the onnx artifacts are fp32 and int8)");
  if (requested == "fp16") {
    if (artifact_precision != "fp16")
      throw Unsupported("fp16 on CUDA needs an fp16 graph; the request's artifact is " + artifact_precision);
    if (facts.initializers("float16") == 0)
      throw Unsupported("the artifact is labelled fp16 but holds no float16 initializers");
    return;
  }
  if (requested == "int8") {
    if (cuda)
      throw Unsupported(
          "a dynamically quantized graph runs on ONNX Runtime's CPU execution provider only "
          "(no CUDA kernel for DynamicQuantizeLinear)");
    if (artifact_precision != "int8")
      throw Unsupported("int8 needs the int8 artifact (onnx/model.int8.onnx); the request's artifact is " +
                        artifact_precision);
    if (facts.quantized_ops() == 0)
      throw Unsupported("the artifact is labelled int8 but its graph has no quantized operators");
    return;
  }
  if (requested != "fp32") throw std::runtime_error("unknown precision '" + requested + "' (fp32, fp16, bf16, int8)");
  if (artifact_precision != "fp32")
    throw std::runtime_error("precision fp32 asked, but the request's artifact is " + artifact_precision);
  if (facts.quantized_ops() > 0 || facts.initializers("float16") > 0 || facts.initializers("bfloat16") > 0)
    throw std::runtime_error("the artifact is labelled fp32 but holds " + facts.evidence().dump());
}

}  // namespace embedperf
