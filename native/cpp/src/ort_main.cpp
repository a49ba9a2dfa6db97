// embedperf-ort-cpp: the ONNX Runtime C++ API runner.
// Built with ORT_API_MANUAL_INIT so that a library older than the headers is
// reported as a clear load error instead of a crash at static initialisation.
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <onnxruntime_cxx_api.h>

#include "embed.hpp"
#include "precision.hpp"
#include "runner.hpp"
#include "sha256.hpp"

#ifndef EMBEDPERF_ORT_HEADERS_VERSION
#define EMBEDPERF_ORT_HEADERS_VERSION "unknown"
#endif

namespace embedperf {
namespace {

using nlohmann::json;

std::string library_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&OrtGetApiBase), &info) == 0 || !info.dli_fname) return {};
  char buf[PATH_MAX];
  if (realpath(info.dli_fname, buf)) return buf;
  return info.dli_fname;
}

bool file_exists_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A graph input the workload cannot feed: a shape failure naming it.
[[noreturn]] void missing(const Workload& w, const char* name) {
  std::string have;
  if (w.has_input_ids) have += "input_ids";
  if (w.has_attention_mask) have += std::string(have.empty() ? "" : ", ") + "attention_mask";
  if (w.has_pixel_values) have += std::string(have.empty() ? "" : ", ") + "pixel_values";
  throw std::runtime_error(std::string("the graph declares input '") + name + "' but workload " + w.path +
                           " has no '" + name + "' (it has: " + (have.empty() ? "nothing" : have) + ")");
}

class OrtBackend : public Backend {
 public:
  json framework() override {
    if (framework_.is_null()) {
      framework_ = {{"name", "onnxruntime"},
                    {"version", OrtGetApiBase()->GetVersionString()},
                    {"binding", std::string("c++ api (headers ") + EMBEDPERF_ORT_HEADERS_VERSION + ")"},
                    {"api_version", ORT_API_VERSION},
                    {"library_path", nullptr},
                    {"library_sha256", nullptr}};
      std::string lib = library_path();
      if (!lib.empty()) {
        framework_["library_path"] = lib;
        try {
          framework_["library_sha256"] = sha256_file(lib);
        } catch (const std::exception&) {
        }
      }
    }
    return framework_;
  }

  void load(const Request& req) override {
    const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (!api)
      throw std::runtime_error(std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() +
                               " does not provide ORT_API_VERSION " + std::to_string(ORT_API_VERSION) +
                               " that this binary was compiled against (headers " EMBEDPERF_ORT_HEADERS_VERSION
                               "): the library is older than the headers");
    Ort::InitApi(api);

    if (req.artifact_format != "onnx")
      throw std::runtime_error("artifact.format is '" + req.artifact_format + "'; this runner needs 'onnx'");
    if (req.model.truncate_dim && *req.model.truncate_dim > req.model.output_dim)
      throw std::runtime_error("model.truncate_dim " + std::to_string(*req.model.truncate_dim) + " > output_dim " +
                               std::to_string(req.model.output_dim));
    truncate_dim_ = req.model.truncate_dim;
    output_dim_ = req.model.output_dim;

    std::string model = req.artifact_path;
    if (file_exists_dir(model)) model += "/model.onnx";

    // Precision first: a refusal comes before any session is built.
    const GraphFacts facts = graph_facts(model);
    decide_precision(req.precision, req.artifact_precision, cuda_device_index(req.device).has_value(), facts);

    env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "embedperf");
    Ort::SessionOptions so;
    json entries = json::object();
    json defaults = json::array();

    so.SetIntraOpNumThreads(static_cast<int>(req.intra_op));
    so.SetInterOpNumThreads(static_cast<int>(req.inter_op));

    const OrtSpec& o = req.onnxruntime;
    std::string level = o.graph_optimization_level.value_or("all");
    if (!o.graph_optimization_level) defaults.push_back("graph_optimization_level");
    GraphOptimizationLevel gl = level == "disable"    ? ORT_DISABLE_ALL
                                : level == "basic"    ? ORT_ENABLE_BASIC
                                : level == "extended" ? ORT_ENABLE_EXTENDED
                                                      : ORT_ENABLE_ALL;
    so.SetGraphOptimizationLevel(gl);

    std::string mode = o.execution_mode.value_or("sequential");
    if (!o.execution_mode) defaults.push_back("execution_mode");
    so.SetExecutionMode(mode == "parallel" ? ORT_PARALLEL : ORT_SEQUENTIAL);

    bool arena = o.enable_cpu_mem_arena.value_or(true);
    if (!o.enable_cpu_mem_arena) defaults.push_back("enable_cpu_mem_arena");
    if (arena) so.EnableCpuMemArena(); else so.DisableCpuMemArena();

    bool spin = o.allow_spinning.value_or(true);
    if (!o.allow_spinning) defaults.push_back("allow_spinning");
    const char* spin_s = spin ? "1" : "0";
    so.AddConfigEntry("session.intra_op.allow_spinning", spin_s);
    so.AddConfigEntry("session.inter_op.allow_spinning", spin_s);
    entries["session.intra_op.allow_spinning"] = spin_s;
    entries["session.inter_op.allow_spinning"] = spin_s;
    // The request's own entries, after the options above: an entry given there wins.
    for (const auto& [key, value] : o.session_config) {
      so.AddConfigEntry(key.c_str(), value.c_str());
      entries[key] = value;
    }

    json providers = json::array();
    auto cuda = cuda_device_index(req.device);
    if (cuda) {
      auto avail = Ort::GetAvailableProviders();
      if (std::find(avail.begin(), avail.end(), "CUDAExecutionProvider") == avail.end()) {
        std::string list;
        for (auto& p : avail) list += (list.empty() ? "" : ", ") + p;
        throw std::runtime_error("device '" + req.device + "' requested but CUDAExecutionProvider is not available in " +
                                 framework().value("library_path", json("libonnxruntime")).dump() +
                                 " (available: " + list + "); use an onnxruntime build with CUDA (e.g. the onnxruntime-gpu wheel)");
      }
      OrtCUDAProviderOptionsV2* cuda_opts = nullptr;
      Ort::ThrowOnError(Ort::GetApi().CreateCUDAProviderOptions(&cuda_opts));
      std::unique_ptr<OrtCUDAProviderOptionsV2, void (*)(OrtCUDAProviderOptionsV2*)> guard(
          cuda_opts, [](OrtCUDAProviderOptionsV2* p) { Ort::GetApi().ReleaseCUDAProviderOptions(p); });
      std::string dev = std::to_string(*cuda);
      const char* keys[] = {"device_id"};
      const char* vals[] = {dev.c_str()};
      Ort::ThrowOnError(Ort::GetApi().UpdateCUDAProviderOptions(cuda_opts, keys, vals, 1));
      so.AppendExecutionProvider_CUDA_V2(*cuda_opts);
      so.AddConfigEntry("session.disable_cpu_ep_fallback", "1");
      entries["session.disable_cpu_ep_fallback"] = "1";
      providers.push_back({{"name", "CUDAExecutionProvider"}, {"device_id", *cuda}});
      provider_ = "CUDAExecutionProvider";
      device_used_ = "cuda:" + dev;
    } else {
      providers.push_back({{"name", "CPUExecutionProvider"}});
      provider_ = "CPUExecutionProvider";
      device_used_ = "cpu";
    }

    settings_ = {{"intra_op_num_threads", req.intra_op},
                 {"inter_op_num_threads", req.inter_op},
                 {"graph_optimization_level", level},
                 {"execution_mode", mode},
                 {"enable_cpu_mem_arena", arena},
                 {"allow_spinning", spin},
                 {"session_config", entries},
                 {"execution_providers", providers},
                 {"precision", req.precision},
                 {"precision_evidence", {{"artifact_precision", req.artifact_precision},
                                         {"source", "op types and initializer types read from the model file"},
                                         {"quantized_ops", facts.quantized_ops()},
                                         {"quantized_op_types", facts.quantized_op_types()},
                                         {"initializer_types", facts.initializer_types}}},
                 {"model_path", model},
                 {"defaults_used", defaults},
                 {"output_copy", "Run() returns a CPU tensor; copied into a std::vector<float>"}};
    if (truncate_dim_) settings_["truncate_dim"] = *truncate_dim_;

    session_ = std::make_unique<Ort::Session>(*env_, model.c_str(), so);

    // Check the graph's interface: it declares a non-empty subset of input_ids,
    // attention_mask (int64 [B,S]) and pixel_values (float32 [B,C,H,W]); each
    // call feeds exactly those, by name, from the workload.
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<std::string> ins, outs;
    for (size_t i = 0; i < session_->GetInputCount(); ++i) ins.push_back(session_->GetInputNameAllocated(i, alloc).get());
    for (size_t i = 0; i < session_->GetOutputCount(); ++i) outs.push_back(session_->GetOutputNameAllocated(i, alloc).get());
    auto has = [](const std::vector<std::string>& v, const char* n) { return std::find(v.begin(), v.end(), n) != v.end(); };
    auto list = [](const std::vector<std::string>& v) {
      std::string l;
      for (auto& n : v) l += (l.empty() ? "" : ", ") + n;
      return l;
    };
    if (ins.empty() || ins.size() > kMaxInputs)
      throw std::runtime_error(model + ": inputs are [" + list(ins) +
                               "], expected a non-empty subset of input_ids, attention_mask, pixel_values");
    inputs_.clear();
    for (size_t i = 0; i < ins.size(); ++i) {
      Input in;
      ONNXTensorElementDataType want;
      size_t rank;
      if (ins[i] == "input_ids") {
        in.kind = Input::kIds, want = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, rank = 2;
      } else if (ins[i] == "attention_mask") {
        in.kind = Input::kMask, want = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, rank = 2;
      } else if (ins[i] == "pixel_values") {
        in.kind = Input::kPixels, want = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, rank = 4;
      } else {
        throw std::runtime_error(model + ": input '" + ins[i] + "' (inputs [" + list(ins) +
                                 "]) is not one of input_ids, attention_mask, pixel_values");
      }
      for (const Input& seen : inputs_)
        if (seen.kind == in.kind) throw std::runtime_error(model + ": input '" + ins[i] + "' is declared twice");
      Ort::TypeInfo type_info = session_->GetInputTypeInfo(i);  // must outlive ti (ti borrows it)
      if (type_info.GetONNXType() != ONNX_TYPE_TENSOR)
        throw std::runtime_error(model + ": input '" + ins[i] + "' is not a tensor");
      auto ti = type_info.GetTensorTypeAndShapeInfo();
      if (ti.GetElementType() != want)
        throw std::runtime_error(model + ": input '" + ins[i] + "' is not " +
                                 (rank == 2 ? "int64" : "float32") + " (element type " +
                                 std::to_string(static_cast<int>(ti.GetElementType())) + ")");
      if (ti.GetDimensionsCount() != 0 && ti.GetDimensionsCount() != rank)  // 0: no shape declared
        throw std::runtime_error(model + ": input '" + ins[i] + "' has rank " + std::to_string(ti.GetDimensionsCount()) +
                                 ", expected " + std::to_string(rank));
      in.name = ins[i];
      inputs_.push_back(in);
    }
    for (size_t i = 0; i < inputs_.size(); ++i) in_names_[i] = inputs_[i].name.c_str();
    if (!has(outs, "sentence_embedding"))
      throw std::runtime_error(model + ": outputs are [" + list(outs) + "], expected sentence_embedding");
    // An output mode's graph returns exactly its outputs (docs/outputs.md): fetch them all, by name.
    sparse_ = req.model.sparse;
    colbert_ = req.model.colbert;
    out_names_.assign(1, "sentence_embedding");
    if (sparse_) out_names_.push_back("token_weights");
    if (colbert_) out_names_.push_back("colbert_vectors");
    if (sparse_ || colbert_) {
      std::vector<std::string> want(out_names_.begin(), out_names_.end()), have = outs;
      std::sort(want.begin(), want.end());
      std::sort(have.begin(), have.end());
      if (want != have)
        throw std::runtime_error(model + ": outputs are [" + list(outs) + "], the request asks for [" + list(want) + "]");
    }
    json fed = json::array();
    for (const Input& in : inputs_) fed.push_back(in.name);
    settings_["inputs"] = fed;
    for (size_t i = 0; i < outs.size(); ++i) {
      if (outs[i] != "sentence_embedding") continue;
      Ort::TypeInfo type_info = session_->GetOutputTypeInfo(i);  // must outlive ti (ti borrows it)
      auto ti = type_info.GetTensorTypeAndShapeInfo();
      if (ti.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        throw std::runtime_error(model + ": sentence_embedding is not float32");
      auto shp = ti.GetShape();
      if (shp.size() != 2) throw std::runtime_error(model + ": sentence_embedding is not 2-D");
      if (shp[1] > 0 && shp[1] != output_dim_)
        throw std::runtime_error(model + ": sentence_embedding width " + std::to_string(shp[1]) +
                                 " != model.output_dim " + std::to_string(output_dim_));
    }
    run_options_ = std::make_unique<Ort::RunOptions>(nullptr);  // default run options
    mem_ = std::make_unique<Ort::MemoryInfo>(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault));
  }

  json device(const Request& req) override {
    return {{"requested", req.device}, {"used", device_used_}, {"provider", provider_}};
  }
  json settings() override { return settings_; }

  Output call(const Workload& w) override {
    // One Ort::Value per declared input, over the workload's arrays (no copy).
    const std::array<int64_t, 2> tok_shape{w.batch, w.seq};
    const size_t tok_n = static_cast<size_t>(w.batch * w.seq);
    std::array<Ort::Value, kMaxInputs> values{Ort::Value(nullptr), Ort::Value(nullptr), Ort::Value(nullptr)};
    for (size_t i = 0; i < inputs_.size(); ++i) {
      switch (inputs_[i].kind) {
        case Input::kIds:
          if (!w.has_input_ids) missing(w, "input_ids");
          values[i] = Ort::Value::CreateTensor<int64_t>(*mem_, const_cast<int64_t*>(w.input_ids.data()), tok_n,
                                                        tok_shape.data(), 2);
          break;
        case Input::kMask:
          if (!w.has_attention_mask) missing(w, "attention_mask");
          values[i] = Ort::Value::CreateTensor<int64_t>(*mem_, const_cast<int64_t*>(w.attention_mask.data()), tok_n,
                                                        tok_shape.data(), 2);
          break;
        case Input::kPixels:
          if (!w.has_pixel_values) missing(w, "pixel_values");
          values[i] = Ort::Value::CreateTensor<float>(*mem_, const_cast<float*>(w.pixel_values.data()),
                                                      w.pixel_values.size(), w.pixel_shape.data(), w.pixel_shape.size());
          break;
      }
    }
    auto out = session_->Run(*run_options_, in_names_, values.data(), inputs_.size(), out_names_.data(),
                             out_names_.size());
    auto info = out[0].GetTensorTypeAndShapeInfo();
    auto oshape = info.GetShape();
    if (oshape.size() != 2 || oshape[0] != w.batch || oshape[1] != output_dim_)
      throw std::runtime_error("sentence_embedding has shape " + json(oshape).dump() + ", expected [" +
                               std::to_string(w.batch) + "," + std::to_string(output_dim_) + "]");
    const float* p = out[0].GetTensorData<float>();
    host_.assign(p, p + oshape[0] * oshape[1]);
    Output o;
    if (truncate_dim_) {
      truncate_normalize(host_.data(), oshape[0], oshape[1], *truncate_dim_, truncated_);
      o.data = truncated_.data(), o.rows = oshape[0], o.cols = *truncate_dim_;
    } else {
      o.data = host_.data(), o.rows = oshape[0], o.cols = oshape[1];
    }
    size_t next = 1;
    if (sparse_) {  // token_weights [B,S], copied to the host as the embedding is
      auto shape = out[next].GetTensorTypeAndShapeInfo().GetShape();
      if (shape.size() != 2 || shape[0] != w.batch || shape[1] != w.seq)
        throw std::runtime_error("token_weights has shape " + json(shape).dump() + ", expected [B,S]");
      const float* t = out[next++].GetTensorData<float>();
      host_tw_.assign(t, t + shape[0] * shape[1]);
      o.token_weights = host_tw_.data(), o.seq = shape[1];
    }
    if (colbert_) {  // colbert_vectors [B,S-1,D]
      auto shape = out[next].GetTensorTypeAndShapeInfo().GetShape();
      if (shape.size() != 3 || shape[0] != w.batch || shape[1] != w.seq - 1)
        throw std::runtime_error("colbert_vectors has shape " + json(shape).dump() + ", expected [B,S-1,D]");
      const float* c = out[next++].GetTensorData<float>();
      host_colbert_.assign(c, c + shape[0] * shape[1] * shape[2]);
      o.colbert = host_colbert_.data(), o.tokens = shape[1], o.colbert_dim = shape[2];
    }
    return o;
  }

 private:
  json framework_;
  json settings_ = json::object();
  std::string provider_;
  std::string device_used_ = "cpu";
  std::optional<int64_t> truncate_dim_;
  int64_t output_dim_ = 0;
  std::unique_ptr<Ort::Env> env_;
  std::unique_ptr<Ort::Session> session_;
  std::unique_ptr<Ort::MemoryInfo> mem_;
  // Ort:: objects are only created after InitApi (their destructors call the API).
  std::unique_ptr<Ort::RunOptions> run_options_;
  // The graph's inputs in its own order, and which workload array feeds each.
  struct Input {
    enum Kind { kIds, kMask, kPixels } kind = kIds;
    std::string name;
  };
  static constexpr size_t kMaxInputs = 3;
  std::vector<Input> inputs_;
  const char* in_names_[kMaxInputs] = {nullptr, nullptr, nullptr};
  std::vector<const char*> out_names_{"sentence_embedding"};
  bool sparse_ = false, colbert_ = false;
  std::vector<float> host_;
  std::vector<float> host_tw_, host_colbert_;
  std::vector<float> truncated_;
};

}  // namespace
}  // namespace embedperf

int main(int argc, char** argv) {
  embedperf::OrtBackend backend;
  return embedperf::run_main(argc, argv, backend, "onnxruntime-cpp");
}
