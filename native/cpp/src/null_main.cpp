// embedperf-null-cpp: loads nothing; a call returns a preallocated zero output
// [B, model.output_dim]. Measures what the C++ harness itself costs per call.
// With request.fault it misbehaves at shape index fault.at_shape (default 0),
// before reading that shape's workload.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  json settings() override { return {{"output", "preallocated zeros [B, output_dim]"}}; }
  void begin_shape(size_t, const ShapeSpec&, const Workload& w) override {
    zeros_.assign(static_cast<size_t>(w.batch * output_dim_), 0.0f);
    rows_ = w.batch;
  }
  Output call(const Workload&) override { return {zeros_.data(), rows_, output_dim_}; }

 private:
  int64_t output_dim_ = 0;
  int64_t rows_ = 0;
  std::vector<float> zeros_;
};

}  // namespace
}  // namespace embedperf

int main(int argc, char** argv) {
  embedperf::NullBackend backend;
  return embedperf::run_main(argc, argv, backend, "null-cpp", embedperf::fault_hook);
}
