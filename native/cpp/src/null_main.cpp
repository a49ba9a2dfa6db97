// embedperf-null-cpp: loads nothing; a call returns a preallocated zero output
// [rows, model.output_dim] (text, image or corpus workloads alike). Measures
// what the C++ harness itself costs per call.
// With request.fault it misbehaves at shape index fault.at_shape (default 0),
// before reading that shape's workload.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "runner.hpp"

namespace embedperf {
namespace {

using nlohmann::json;

void fault_hook(const Request& req, size_t index) {
  if (!req.fault || static_cast<int64_t>(index) != req.fault->at_shape) return;
  const std::string& kind = req.fault->kind;
  std::fprintf(stderr, "embedperf-null-cpp: fault '%s' at shape %zu\n", kind.c_str(), index);
  std::fflush(stderr);
  if (kind == "crash") {
    std::abort();
  } else if (kind == "hang") {
    for (;;) ::pause();
  } else if (kind == "exit") {
    ::_exit(3);
  } else if (kind == "oom") {
    const size_t chunk = size_t(64) << 20;
    std::vector<void*> keep;
    for (;;) {
      void* p = std::malloc(chunk);
      if (!p) {
        std::fprintf(stderr, "embedperf-null-cpp: oom fault: malloc failed after %zu MiB\n", keep.size() * 64);
        std::abort();
      }
      std::memset(p, 0xA5, chunk);  // touch every page
      keep.push_back(p);
    }
  }
}

class NullBackend : public Backend {
 public:
  json framework() override { return {{"name", "none"}, {"version", nullptr}, {"binding", "c++ (null runner)"}}; }
  void load(const Request& req) override { output_dim_ = req.model.output_dim; }
  json device(const Request& req) override { return {{"requested", req.device}, {"used", "cpu"}, {"provider", nullptr}}; }
  json settings() override { return {{"output", "preallocated zeros [rows, output_dim]"}}; }
  // Text, image and corpus workloads alike: zeros for the most rows a call of
  // this shape gets, allocated before the shape's calls.
  void begin_shape(size_t, const ShapeSpec&, int64_t max_rows) override {
    zeros_.assign(static_cast<size_t>(max_rows * output_dim_), 0.0f);
    max_rows_ = max_rows;
  }
  Output call(const Workload& w) override {
    if (w.batch > max_rows_) throw std::runtime_error("null runner: batch larger than announced in begin_shape");
    return {zeros_.data(), w.batch, output_dim_};
  }

 private:
  int64_t output_dim_ = 0;
  int64_t max_rows_ = 0;
  std::vector<float> zeros_;
};

}  // namespace
}  // namespace embedperf

int main(int argc, char** argv) {
  embedperf::NullBackend backend;
  return embedperf::run_main(argc, argv, backend, "null-cpp", embedperf::fault_hook);
}
