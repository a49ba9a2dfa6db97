// The ONNX graph walk and the precision rules of the ONNX Runtime runner, on
// ModelProto bytes built by hand (the real int8 and fp32 graphs are checked
// end to end in tests/contract/test_precision.py).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "precision.hpp"
#include "runner.hpp"

using namespace embedperf;

namespace {
using Bytes = std::vector<uint8_t>;

void varint(uint64_t v, Bytes& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}
Bytes field(uint64_t number, const Bytes& payload) {
  Bytes out;
  varint(number << 3 | 2, out);
  varint(payload.size(), out);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }
void append(Bytes& a, const Bytes& b) { a.insert(a.end(), b.begin(), b.end()); }
Bytes node(const std::string& op, const Bytes* subgraph = nullptr) {
  Bytes n = field(1, text("x"));
  append(n, field(4, text(op)));
  if (subgraph) {
    Bytes attr = field(1, text("body"));
    append(attr, field(6, *subgraph));
    append(n, field(5, attr));
  }
  return n;
}
Bytes initializer(uint64_t dtype, size_t raw) {
  Bytes t;
  varint(1 << 3, t);  // dims
  varint(raw, t);
  varint(2 << 3, t);  // data_type
  varint(dtype, t);
  append(t, field(9, Bytes(raw, 0xAB)));  // raw_data: skipped
  return t;
}
std::string refusal(const std::string& requested, const std::string& artifact, bool cuda, const GraphFacts& f) {
  try {
    decide_precision(requested, artifact, cuda, f);
  } catch (const Unsupported& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("error: ") + e.what();
  }
  return "ok";
}
}  // namespace

TEST(Precision, GraphWalkCountsOpsInitializersSubgraphsAndFunctions) {
  const Bytes sub = field(1, node("MatMulInteger"));
  Bytes graph;
  for (const char* op : {"DynamicQuantizeLinear", "MatMulInteger", "Add", "QLinearMatMul"}) append(graph, field(1, node(op)));
  append(graph, field(1, node("If", &sub)));
  append(graph, field(5, initializer(3, 300)));
  append(graph, field(5, initializer(1, 7)));
  append(graph, field(5, initializer(1, 0)));
  Bytes model;
  varint(1 << 3, model);  // ir_version
  varint(8, model);
  append(model, field(7, graph));
  append(model, field(25, field(7, node("DequantizeLinear"))));
  GraphFacts f = graph_facts_of(model.data(), model.size());
  EXPECT_EQ(f.op_types["MatMulInteger"], 2);
  EXPECT_EQ(f.op_types["Add"], 1);
  EXPECT_EQ(f.quantized_ops(), 5);
  EXPECT_EQ(f.initializer_types, (std::map<std::string, int64_t>{{"float32", 2}, {"int8", 1}}));
  EXPECT_EQ(f.evidence()["quantized_op_types"]["QLinearMatMul"], 1);
  EXPECT_THROW(graph_facts_of(model.data(), model.size() - 3), std::runtime_error);
  EXPECT_THROW(graph_facts("/nonexistent/model.onnx"), std::runtime_error);
}

TEST(Precision, RulesRefuseOrAccept) {
  GraphFacts q, plain;
  q.op_types["MatMulInteger"] = 3;
  EXPECT_NE(refusal("fp16", "fp32", false, plain).find("CPU execution provider"), std::string::npos);
  EXPECT_NE(refusal("bf16", "fp32", true, plain).find("bf16"), std::string::npos);
  EXPECT_NE(refusal("fp16", "fp32", true, plain).find("fp16 graph"), std::string::npos);
  EXPECT_NE(refusal("int8", "fp32", false, plain).find("int8 artifact"), std::string::npos);
  EXPECT_NE(refusal("int8", "int8", false, plain).find("no quantized"), std::string::npos);
  EXPECT_NE(refusal("int8", "int8", true, q).find("CPU execution provider only"), std::string::npos);
  EXPECT_EQ(refusal("int8", "int8", false, q), "ok");
  EXPECT_EQ(refusal("fp32", "fp32", false, plain), "ok");
  // mislabelled artifacts are errors (a failed cell), not refusals
  EXPECT_EQ(refusal("fp32", "fp32", false, q).rfind("error: the artifact is labelled fp32", 0), 0u);
  EXPECT_EQ(refusal("fp32", "int8", false, q).rfind("error:", 0), 0u);
}
