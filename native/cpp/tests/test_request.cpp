#include <gtest/gtest.h>

#include <fstream>

#include "protocol.hpp"
#include "test_util.hpp"

using namespace embedperf;
using nlohmann::json;

static json valid() {
  return json::parse(R"({
    "protocol": 1,
    "runtime": "onnxruntime-cpp",
    "model": {"name": "m", "family": "bert", "pooling": "mean", "normalize": true, "output_dim": 384,
              "truncate_dim": 128, "dense": []},
    "artifact": {"format": "onnx", "path": "/x/model.onnx", "sha256": null},
    "shapes": [{"batch": 4, "seq": 128, "workload": "/w/4x128.safetensors", "embeddings": "/o/4x128.safetensors"},
               {"batch": 1, "seq": 16, "workload": "/w/1x16.safetensors", "embeddings": "/o/1x16.safetensors"}],
    "device": "cpu",
    "precision": "fp32",
    "threads": {"intra_op": 8, "inter_op": 1},
    "timing": {"warmup": 3, "min_calls": 10, "min_seconds": 1.5, "max_seconds": 30},
    "onnxruntime": {"graph_optimization_level": "extended", "execution_mode": "parallel",
                    "enable_cpu_mem_arena": false, "allow_spinning": false}
  })");
}

static std::string error_of(const json& j) {
  try {
    parse_request(j);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Request, ParsesEverything) {
  Request r = parse_request(valid());
  EXPECT_EQ(r.protocol, 1);
  EXPECT_EQ(r.runtime, "onnxruntime-cpp");
  EXPECT_EQ(r.model.output_dim, 384);
  ASSERT_TRUE(r.model.truncate_dim.has_value());
  EXPECT_EQ(*r.model.truncate_dim, 128);
  EXPECT_EQ(r.artifact_format, "onnx");
  ASSERT_EQ(r.shapes.size(), 2u);
  EXPECT_EQ(r.shapes[0].batch, 4);
  EXPECT_EQ(r.shapes[0].seq, 128);
  EXPECT_EQ(r.shapes[1].workload, "/w/1x16.safetensors");
  EXPECT_EQ(r.intra_op, 8);
  EXPECT_EQ(r.inter_op, 1);
  EXPECT_EQ(r.timing.warmup, 3);
  EXPECT_EQ(r.timing.min_calls, 10);
  EXPECT_DOUBLE_EQ(r.timing.min_seconds, 1.5);
  EXPECT_DOUBLE_EQ(r.timing.max_seconds, 30.0);  // an integer in JSON is fine for a number
  EXPECT_TRUE(r.onnxruntime.present);
  EXPECT_EQ(*r.onnxruntime.graph_optimization_level, "extended");
  EXPECT_EQ(*r.onnxruntime.execution_mode, "parallel");
  EXPECT_FALSE(*r.onnxruntime.enable_cpu_mem_arena);
  EXPECT_FALSE(*r.onnxruntime.allow_spinning);
  EXPECT_FALSE(r.fault.has_value());
}

TEST(Request, OptionalParts) {
  json j = valid();
  j["model"]["truncate_dim"] = nullptr;
  j["onnxruntime"] = nullptr;
  j["fault"] = {{"kind", "hang"}};
  Request r = parse_request(j);
  EXPECT_FALSE(r.model.truncate_dim.has_value());
  EXPECT_FALSE(r.onnxruntime.present);
  EXPECT_FALSE(r.onnxruntime.allow_spinning.has_value());
  ASSERT_TRUE(r.fault.has_value());
  EXPECT_EQ(r.fault->kind, "hang");
  EXPECT_EQ(r.fault->at_shape, 0);  // default

  j.erase("onnxruntime");
  j["model"].erase("truncate_dim");
  j["fault"] = {{"kind", "oom"}, {"at_shape", 1}};
  r = parse_request(j);
  EXPECT_EQ(r.fault->at_shape, 1);
}

TEST(Request, RejectsBadInput) {
  json j = valid();
  j["protocol"] = 2;
  EXPECT_NE(error_of(j).find("protocol"), std::string::npos);

  j = valid();
  j["threads"].erase("intra_op");
  EXPECT_NE(error_of(j).find("intra_op"), std::string::npos);

  j = valid();
  j["onnxruntime"]["graph_optimization_level"] = "max";
  EXPECT_NE(error_of(j).find("graph_optimization_level"), std::string::npos);

  j = valid();
  j["device"] = "gpu";
  EXPECT_NE(error_of(j).find("device"), std::string::npos);

  j = valid();
  j["shapes"] = json::array();
  EXPECT_NE(error_of(j).find("shapes"), std::string::npos);

  j = valid();
  j["timing"]["max_seconds"] = 0;
  EXPECT_NE(error_of(j).find("max_seconds"), std::string::npos);

  j = valid();
  j["surprise"] = 1;  // additionalProperties: false
  EXPECT_NE(error_of(j).find("surprise"), std::string::npos);

  j = valid();
  j["shapes"][0]["batch"] = "4";
  EXPECT_NE(error_of(j).find("shapes[0].batch"), std::string::npos);
}

TEST(Request, TowersScenariosAndTargetCi) {
  // defaults when the new optional fields are absent
  Request r = parse_request(valid());
  EXPECT_EQ(r.model.modality, "text");
  EXPECT_EQ(r.shapes[0].scenario, "latency");
  EXPECT_FALSE(r.timing.target_ci.has_value());

  json j = valid();
  j["model"]["family"] = "siglip";
  j["model"]["pooling"] = "tower";
  j["model"]["modality"] = "image";
  j["shapes"][0]["scenario"] = "throughput";
  j["shapes"][1]["scenario"] = "latency";
  j["timing"]["target_ci"] = 0.01;
  r = parse_request(j);
  EXPECT_EQ(r.model.family, "siglip");
  EXPECT_EQ(r.model.pooling, "tower");
  EXPECT_EQ(r.model.modality, "image");
  EXPECT_EQ(r.shapes[0].scenario, "throughput");
  EXPECT_EQ(r.shapes[1].scenario, "latency");
  ASSERT_TRUE(r.timing.target_ci.has_value());
  EXPECT_DOUBLE_EQ(*r.timing.target_ci, 0.01);

  j["model"]["family"] = "clip";
  j["model"]["modality"] = "text";
  j["timing"]["target_ci"] = nullptr;  // null: the plain min_reached rule
  r = parse_request(j);
  EXPECT_EQ(r.model.family, "clip");
  EXPECT_EQ(r.model.modality, "text");
  EXPECT_FALSE(r.timing.target_ci.has_value());
}

TEST(Request, RejectsBadTowersScenariosAndTargetCi) {
  json j = valid();
  j["model"]["modality"] = "audio";
  EXPECT_NE(error_of(j).find("model.modality"), std::string::npos);
  j["model"]["modality"] = nullptr;
  EXPECT_NE(error_of(j).find("model.modality"), std::string::npos);

  j = valid();
  j["model"]["family"] = "t5";
  EXPECT_NE(error_of(j).find("model.family"), std::string::npos);

  j = valid();
  j["model"]["pooling"] = "median";  // not one of sentence-transformers' modes
  EXPECT_NE(error_of(j).find("model.pooling"), std::string::npos);
  j = valid();
  j["model"]["pooling"] = "cls+mea";
  EXPECT_NE(error_of(j).find("model.pooling"), std::string::npos);
  for (const char* mode : {"max", "mean_sqrt_len_tokens", "weightedmean", "cls+mean", "tower"}) {
    j = valid();
    j["model"]["pooling"] = mode;  // the graph holds the pooling: every mode the schema allows parses
    EXPECT_EQ(parse_request(j).model.pooling, mode);
  }

  j = valid();
  j["shapes"][1]["scenario"] = "offline";
  EXPECT_NE(error_of(j).find("shapes[1].scenario"), std::string::npos);

  for (json bad : {json(0), json(1), json(-0.5), json(1.5), json("0.01"), json(true)}) {
    j = valid();
    j["timing"]["target_ci"] = bad;
    EXPECT_NE(error_of(j).find("timing.target_ci"), std::string::npos) << bad.dump();
  }
}

TEST(Request, PrecisionFirstEmbeddingsAccuracyAndSessionConfig) {
  json j = valid();
  Request r = parse_request(j);
  EXPECT_EQ(r.artifact_precision, "fp32");
  EXPECT_TRUE(r.onnxruntime.session_config.empty());
  EXPECT_TRUE(r.shapes[0].first_embeddings.empty());
  j["precision"] = "int8";
  j["artifact"]["precision"] = "int8";
  j["shapes"][0]["first_embeddings"] = "/o/first.safetensors";
  j["shapes"][1]["scenario"] = "accuracy";
  j["onnxruntime"]["session_config"] = {{"session.intra_op_thread_affinities", "1;2"}, {"session.x", "y"}};
  r = parse_request(j);
  EXPECT_EQ(r.precision, "int8");
  EXPECT_EQ(r.artifact_precision, "int8");
  EXPECT_EQ(r.shapes[0].first_embeddings, "/o/first.safetensors");
  EXPECT_EQ(r.shapes[1].scenario, "accuracy");
  ASSERT_EQ(r.onnxruntime.session_config.size(), 2u);
  EXPECT_EQ(r.onnxruntime.session_config[0], (std::pair<std::string, std::string>{"session.intra_op_thread_affinities", "1;2"}));
  json bad = j;
  bad["onnxruntime"]["session_config"]["session.x"] = 1;
  EXPECT_NE(error_of(bad).find("session_config.session.x"), std::string::npos) << error_of(bad);
  bad = j;
  bad["artifact"]["precision"] = "int4";
  EXPECT_NE(error_of(bad).find("artifact.precision"), std::string::npos);
  bad = j;
  bad["precision"] = "fp64";
  EXPECT_NE(error_of(bad).find("precision"), std::string::npos);
}

TEST(Request, LoadFromFile) {
  std::string dir = temp_dir();
  std::ofstream(dir + "/r.json") << valid().dump();
  EXPECT_EQ(load_request(dir + "/r.json").runtime, "onnxruntime-cpp");
  std::ofstream(dir + "/bad.json") << "{not json";
  EXPECT_THROW(load_request(dir + "/bad.json"), std::runtime_error);
  EXPECT_THROW(load_request(dir + "/none.json"), std::runtime_error);
}

TEST(Request, CudaDeviceIndex) {
  EXPECT_FALSE(cuda_device_index("cpu").has_value());
  EXPECT_EQ(*cuda_device_index("cuda"), 0);
  EXPECT_EQ(*cuda_device_index("cuda:3"), 3);
  EXPECT_FALSE(cuda_device_index("cuda:").has_value());
  EXPECT_FALSE(cuda_device_index("cuda:x").has_value());
}

TEST(Protocol, AtomicJsonWrite) {
  std::string dir = temp_dir();
  std::string p = dir + "/result.json";
  write_json_atomic(p, {{"a", 1}});
  write_json_atomic(p, {{"a", 2}});
  std::ifstream in(p);
  EXPECT_EQ(json::parse(in)["a"], 2);
  std::ifstream tmp(p + ".tmp." + std::to_string(::getpid()));
  EXPECT_FALSE(tmp.good());  // no temporary left behind
}
