#include "protocol.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace embedperf {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::runtime_error("request: " + where + ": " + what);
}

const json& need(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) bad(where, std::string("missing required field '") + key + "'");
  return *it;
}

std::string str(const json& v, const std::string& where) {
  if (!v.is_string()) bad(where, "must be a string, got " + v.dump());
  return v.get<std::string>();
}
int64_t integer(const json& v, const std::string& where, int64_t minimum) {
  if (!v.is_number_integer()) bad(where, "must be an integer, got " + v.dump());
  int64_t x = v.get<int64_t>();
  if (x < minimum) bad(where, "must be >= " + std::to_string(minimum) + ", got " + v.dump());
  return x;
}
double number(const json& v, const std::string& where) {
  if (!v.is_number()) bad(where, "must be a number, got " + v.dump());
  return v.get<double>();
}
bool boolean(const json& v, const std::string& where) {
  if (!v.is_boolean()) bad(where, "must be a boolean, got " + v.dump());
  return v.get<bool>();
}
std::string one_of(const json& v, const std::string& where, std::initializer_list<const char*> allowed) {
  std::string s = str(v, where);
  std::string list;
  for (const char* a : allowed) {
    if (s == a) return s;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  bad(where, "'" + s + "' is not one of " + list);
}
const json& object(const json& v, const std::string& where) {
  if (!v.is_object()) bad(where, "must be an object, got " + v.dump());
  return v;
}
void no_extra(const json& obj, const std::string& where, std::initializer_list<const char*> keys) {
  std::set<std::string> allowed(keys.begin(), keys.end());
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!allowed.count(it.key())) bad(where, "unknown field '" + it.key() + "'");
}

}  // namespace

Request parse_request(const json& j) {
  Request r;
  r.raw = j;
  object(j, "request");
  no_extra(j, "request", {"protocol", "runtime", "model", "artifact", "shapes", "device", "precision",
                          "threads", "timing", "onnxruntime", "fault"});
  const json& proto = need(j, "protocol", "request");
  if (!proto.is_number_integer() || proto.get<int64_t>() != 1)
    bad("protocol", "unsupported protocol " + proto.dump() + " (this runner speaks 1)");
  r.protocol = 1;
  r.runtime = str(need(j, "runtime", "request"), "runtime");

  const json& m = object(need(j, "model", "request"), "model");
  no_extra(m, "model", {"name", "family", "pooling", "normalize", "dense", "output_dim", "truncate_dim", "modality",
                        "outputs", "unused_token_ids"});
  r.model.name = str(need(m, "name", "model"), "model.name");
  r.model.family = one_of(need(m, "family", "model"), "model.family",
                          {"bert", "gemma3", "qwen3", "xlm-roberta", "clip", "siglip"});
  // The graph holds its pooling, so this runner never applies it; it only checks the schema's grammar:
  // "tower", or sentence-transformers' modes joined by '+' (concatenated in that order).
  r.model.pooling = str(need(m, "pooling", "model"), "model.pooling");
  if (r.model.pooling != "tower") {
    static const std::set<std::string> modes{"mean", "cls", "last", "max", "mean_sqrt_len_tokens", "weightedmean"};
    std::size_t start = 0;
    while (true) {
      const std::size_t plus = r.model.pooling.find('+', start);
      const std::string part = r.model.pooling.substr(start, plus == std::string::npos ? std::string::npos
                                                                                        : plus - start);
      if (!modes.count(part)) bad("model.pooling", "unknown pooling mode \"" + part + "\" in \"" +
                                  r.model.pooling + "\"");
      if (plus == std::string::npos) break;
      start = plus + 1;
    }
  }
  r.model.normalize = boolean(need(m, "normalize", "model"), "model.normalize");
  if (m.contains("dense")) {
    const json& d = m["dense"];
    if (!d.is_array()) bad("model.dense", "must be an array");
    for (const auto& x : d) r.model.dense.push_back(str(x, "model.dense[]"));
  }
  r.model.output_dim = integer(need(m, "output_dim", "model"), "model.output_dim", 1);
  if (m.contains("truncate_dim") && !m["truncate_dim"].is_null())
    r.model.truncate_dim = integer(m["truncate_dim"], "model.truncate_dim", 1);
  if (m.contains("modality")) r.model.modality = one_of(m["modality"], "model.modality", {"text", "image"});
  if (m.contains("outputs")) {
    const json& o = m["outputs"];
    if (!o.is_array() || o.empty()) bad("model.outputs", "must be a non-empty array");
    bool dense = false;
    for (const auto& x : o) {
      const std::string out = one_of(x, "model.outputs[]", {"dense", "sparse", "colbert"});
      dense |= out == "dense";
      r.model.sparse |= out == "sparse";
      r.model.colbert |= out == "colbert";
    }
    if (!dense) bad("model.outputs", "must contain \"dense\"");
  }
  if (m.contains("unused_token_ids")) {
    const json& u = m["unused_token_ids"];
    if (!u.is_array()) bad("model.unused_token_ids", "must be an array");
    for (const auto& x : u) r.model.unused_token_ids.push_back(integer(x, "model.unused_token_ids[]", 0));
  }

  const json& a = object(need(j, "artifact", "request"), "artifact");
  no_extra(a, "artifact", {"format", "path", "sha256", "attention", "precision"});
  r.artifact_format = one_of(need(a, "format", "artifact"), "artifact.format", {"reference", "onnx", "openvino", "none"});
  r.artifact_path = str(need(a, "path", "artifact"), "artifact.path");
  if (a.contains("sha256") && !a["sha256"].is_null()) r.artifact_sha256 = str(a["sha256"], "artifact.sha256");
  if (a.contains("attention") && !a["attention"].is_null()) str(a["attention"], "artifact.attention");
  if (a.contains("precision"))
    r.artifact_precision = one_of(a["precision"], "artifact.precision", {"fp32", "fp16", "bf16", "int8"});

  const json& shapes = need(j, "shapes", "request");
  if (!shapes.is_array() || shapes.empty()) bad("shapes", "must be a non-empty array");
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::string w = "shapes[" + std::to_string(i) + "]";
    const json& s = object(shapes[i], w);
    no_extra(s, w, {"batch", "seq", "workload", "embeddings", "scenario", "first_embeddings"});
    ShapeSpec sp;
    sp.batch = integer(need(s, "batch", w), w + ".batch", 1);
    sp.seq = integer(need(s, "seq", w), w + ".seq", 1);
    sp.workload = str(need(s, "workload", w), w + ".workload");
    sp.embeddings = str(need(s, "embeddings", w), w + ".embeddings");
    if (s.contains("scenario"))
      sp.scenario = one_of(s["scenario"], w + ".scenario", {"latency", "throughput", "accuracy"});
    if (s.contains("first_embeddings")) sp.first_embeddings = str(s["first_embeddings"], w + ".first_embeddings");
    r.shapes.push_back(sp);
  }

  r.device = str(need(j, "device", "request"), "device");
  if (r.device != "cpu" && !cuda_device_index(r.device)) bad("device", "'" + r.device + "' is not cpu, cuda or cuda:N");
  r.precision = one_of(need(j, "precision", "request"), "precision", {"fp32", "fp16", "bf16", "int8"});

  const json& t = object(need(j, "threads", "request"), "threads");
  no_extra(t, "threads", {"intra_op", "inter_op"});
  r.intra_op = integer(need(t, "intra_op", "threads"), "threads.intra_op", 1);
  r.inter_op = integer(need(t, "inter_op", "threads"), "threads.inter_op", 1);

  const json& tm = object(need(j, "timing", "request"), "timing");
  no_extra(tm, "timing", {"warmup", "min_calls", "min_seconds", "max_seconds", "max_calls", "target_ci"});
  r.timing.warmup = integer(need(tm, "warmup", "timing"), "timing.warmup", 0);
  r.timing.min_calls = integer(need(tm, "min_calls", "timing"), "timing.min_calls", 1);
  r.timing.min_seconds = number(need(tm, "min_seconds", "timing"), "timing.min_seconds");
  if (r.timing.min_seconds < 0) bad("timing.min_seconds", "must be >= 0");
  r.timing.max_seconds = number(need(tm, "max_seconds", "timing"), "timing.max_seconds");
  if (!(r.timing.max_seconds > 0)) bad("timing.max_seconds", "must be > 0");
  if (tm.contains("max_calls") && !tm["max_calls"].is_null())
    r.timing.max_calls = integer(tm["max_calls"], "timing.max_calls", 1);
  if (tm.contains("target_ci") && !tm["target_ci"].is_null()) {
    double ci = number(tm["target_ci"], "timing.target_ci");
    if (!(ci > 0 && ci < 1)) bad("timing.target_ci", "must be > 0 and < 1, got " + tm["target_ci"].dump());
    r.timing.target_ci = ci;
  }

  if (j.contains("onnxruntime") && !j["onnxruntime"].is_null()) {
    const json& o = object(j["onnxruntime"], "onnxruntime");
    no_extra(o, "onnxruntime",
             {"graph_optimization_level", "execution_mode", "enable_cpu_mem_arena", "allow_spinning", "session_config"});
    r.onnxruntime.present = true;
    if (o.contains("graph_optimization_level"))
      r.onnxruntime.graph_optimization_level = one_of(o["graph_optimization_level"], "onnxruntime.graph_optimization_level",
                                                      {"disable", "basic", "extended", "all"});
    if (o.contains("execution_mode"))
      r.onnxruntime.execution_mode = one_of(o["execution_mode"], "onnxruntime.execution_mode", {"sequential", "parallel"});
    if (o.contains("enable_cpu_mem_arena"))
      r.onnxruntime.enable_cpu_mem_arena = boolean(o["enable_cpu_mem_arena"], "onnxruntime.enable_cpu_mem_arena");
    if (o.contains("allow_spinning"))
      r.onnxruntime.allow_spinning = boolean(o["allow_spinning"], "onnxruntime.allow_spinning");
    if (o.contains("session_config")) {
      const json& c = object(o["session_config"], "onnxruntime.session_config");
      for (auto it = c.begin(); it != c.end(); ++it)
        r.onnxruntime.session_config.emplace_back(it.key(), str(it.value(), "onnxruntime.session_config." + it.key()));
    }
  }

  if (j.contains("fault") && !j["fault"].is_null()) {
    const json& f = object(j["fault"], "fault");
    no_extra(f, "fault", {"kind", "at_shape"});
    FaultSpec fs;
    fs.kind = one_of(need(f, "kind", "fault"), "fault.kind", {"crash", "hang", "exit", "oom"});
    if (f.contains("at_shape")) fs.at_shape = integer(f["at_shape"], "fault.at_shape", 0);
    r.fault = fs;
  }
  return r;
}

Request load_request(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open request file " + path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw std::runtime_error("request " + path + " is not valid JSON: " + e.what());
  }
  return parse_request(j);
}

std::optional<int> cuda_device_index(const std::string& device) {
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return std::nullopt;
  int idx = 0;
  for (size_t i = 5; i < device.size(); ++i) {
    if (device[i] < '0' || device[i] > '9') return std::nullopt;
    idx = idx * 10 + (device[i] - '0');
  }
  return idx;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + tmp);
  bool ok = std::fwrite(contents.data(), 1, contents.size(), f) == contents.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (::fsync(::fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write " + path);
  }
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace embedperf
