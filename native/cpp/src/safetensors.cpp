#include "safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "protocol.hpp"

namespace embedperf {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t dtype_size(const std::string& dt) {
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "I8" || dt == "U8" || dt == "BOOL" || dt == "F8_E4M3" || dt == "F8_E5M2") return 1;
  throw std::runtime_error("safetensors: unknown dtype " + dt);
}

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<uint8_t> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (buf.size() < 8) throw std::runtime_error(path + ": not a safetensors file (too short)");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | buf[i];
  if (hlen > buf.size() - 8) throw std::runtime_error(path + ": header length " + std::to_string(hlen) + " exceeds file size");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(buf.begin() + 8, buf.begin() + 8 + static_cast<std::ptrdiff_t>(hlen));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": bad safetensors header: " + e.what());
  }
  if (!header.is_object()) throw std::runtime_error(path + ": safetensors header is not an object");
  const size_t base = 8 + hlen;
  const size_t body = buf.size() - base;
  std::map<std::string, Tensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& h = it.value();
    try {
      Tensor t;
      t.dtype = h.at("dtype").get<std::string>();
      t.shape = h.at("shape").get<std::vector<int64_t>>();
      auto off = h.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[0] > off[1] || off[1] > body)
        throw std::runtime_error("data_offsets out of range");
      for (int64_t d : t.shape)
        if (d < 0) throw std::runtime_error("negative dimension");
      if (static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype) != off[1] - off[0])
        throw std::runtime_error("byte size does not match dtype and shape");
      t.data.assign(buf.begin() + static_cast<std::ptrdiff_t>(base + off[0]),
                    buf.begin() + static_cast<std::ptrdiff_t>(base + off[1]));
      out.emplace(it.key(), std::move(t));
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": tensor '" + it.key() + "': " + e.what());
    }
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (static_cast<uint64_t>(n) * dtype_size(t.dtype) != t.nbytes)
      throw std::runtime_error("write_safetensors: " + t.name + ": byte size does not match dtype and shape");
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // keep the data 8-byte aligned
  std::string file;
  file.reserve(8 + h.size() + offset);
  uint64_t hlen = h.size();
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((hlen >> (8 * i)) & 0xff));
  file += h;
  for (const auto& t : tensors) file.append(static_cast<const char*>(t.data), t.nbytes);
  write_file_atomic(path, file);
}

namespace {
std::string dims(const std::vector<int64_t>& shape) { return nlohmann::json(shape).dump(); }

const Tensor& find(const std::map<std::string, Tensor>& ts, const std::string& name, const std::string& path) {
  auto it = ts.find(name);
  if (it == ts.end()) throw std::runtime_error("workload " + path + ": no tensor '" + name + "'");
  return it->second;
}

std::vector<int64_t> i64(const std::map<std::string, Tensor>& ts, const std::string& name,
                         const std::vector<int64_t>& shape, const std::string& path) {
  const Tensor& t = find(ts, name, path);
  if (t.dtype != "I64") throw std::runtime_error("workload " + path + ": '" + name + "' is " + t.dtype + ", expected I64");
  if (t.shape != shape)
    throw std::runtime_error("workload " + path + ": '" + name + "' has shape " + dims(t.shape) + ", expected " +
                             dims(shape));
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  if (!v.empty()) std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}
}  // namespace

Workload load_workload(const std::string& path) {
  auto ts = read_safetensors(path);
  const Tensor& ids = find(ts, "input_ids", path);
  if (ids.shape.size() != 2) throw std::runtime_error("workload " + path + ": input_ids must be 2-D [B,S]");
  Workload w;
  w.path = path;
  w.batch = ids.shape[0];
  w.seq = ids.shape[1];
  w.input_ids = i64(ts, "input_ids", {w.batch, w.seq}, path);
  w.attention_mask = i64(ts, "attention_mask", {w.batch, w.seq}, path);
  w.lengths = i64(ts, "lengths", {w.batch}, path);
  w.has_input_ids = w.has_attention_mask = true;
  return w;
}

Workload load_image_workload(const std::string& path) {
  auto ts = read_safetensors(path);
  const Tensor& t = find(ts, "pixel_values", path);
  if (t.dtype != "F32") throw std::runtime_error("workload " + path + ": 'pixel_values' is " + t.dtype + ", expected F32");
  if (t.shape.size() != 4 || t.shape[1] != 3)
    throw std::runtime_error("workload " + path + ": 'pixel_values' has shape " + dims(t.shape) + ", expected [B,3,H,W]");
  Workload w;
  w.path = path;
  w.batch = t.shape[0];
  w.seq = t.shape[2];
  w.pixel_shape = t.shape;
  w.pixel_values.resize(static_cast<size_t>(t.numel()));
  if (!w.pixel_values.empty()) std::memcpy(w.pixel_values.data(), t.data.data(), t.data.size());
  w.has_pixel_values = true;
  return w;
}

Corpus load_corpus(const std::string& path) {
  auto ts = read_safetensors(path);
  const Tensor& b = find(ts, "batches", path);
  if (b.shape.size() != 2 || b.shape[1] != 2 || b.shape[0] < 1)
    throw std::runtime_error("corpus " + path + ": 'batches' has shape " + dims(b.shape) + ", expected [K,2] with K >= 1");
  const int64_t k_count = b.shape[0];
  std::vector<int64_t> bs = i64(ts, "batches", {k_count, 2}, path);
  Corpus c;
  c.path = path;
  c.batches.reserve(static_cast<size_t>(k_count));
  for (int64_t k = 0; k < k_count; ++k) {
    const int64_t rows = bs[static_cast<size_t>(2 * k)], seq = bs[static_cast<size_t>(2 * k + 1)];
    if (rows < 1 || seq < 1)
      throw std::runtime_error("corpus " + path + ": batches[" + std::to_string(k) + "] = [" + std::to_string(rows) + "," +
                               std::to_string(seq) + "], rows and seq must be >= 1");
    Workload w;
    w.path = path;
    w.batch = rows;
    w.seq = seq;
    w.input_ids = i64(ts, "input_ids." + std::to_string(k), {rows, seq}, path);
    w.attention_mask = i64(ts, "attention_mask." + std::to_string(k), {rows, seq}, path);
    w.has_input_ids = w.has_attention_mask = true;
    c.items += rows;
    c.max_rows = std::max(c.max_rows, rows);
    c.max_seq = std::max(c.max_seq, seq);
    c.batches.push_back(std::move(w));
  }
  c.order = i64(ts, "order", {c.items}, path);
  return c;
}

}  // namespace embedperf
