// The framework-independent runner driver: argument parsing, the result file,
// the per-shape loop. A Backend supplies load() and call().
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "protocol.hpp"
#include "safetensors.hpp"

namespace embedperf {

// A call's output in host memory: [rows, cols] float32, row-major. The pointer
// stays valid until the next call. An output mode's call (request model.outputs)
// also returns BGE-M3's token weights [rows, seq] and/or its multi-vectors
// [rows, tokens = seq - 1, colbert_dim] (docs/outputs.md).
struct Output {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  const float* token_weights = nullptr;
  int64_t seq = 0;
  const float* colbert = nullptr;
  int64_t tokens = 0;
  int64_t colbert_dim = 0;
};

// A load-time refusal: the backend cannot run what was asked natively (e.g.
// the precision). Thrown from load(), it is written as error kind "unsupported"
// with this one-line message (exit 1); the orchestrator records the cell as
// skipped with the message as its reason.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Framework facts known before loading (name, version, library path...).
  virtual nlohmann::json framework() = 0;
  // Load the artifact and get ready to run; throws on failure. Timed as load_s.
  virtual void load(const Request& req) = 0;
  // After load(): {requested, used, provider} and the settings actually applied.
  virtual nlohmann::json device(const Request& req) = 0;
  virtual nlohmann::json settings() = 0;
  // Start of shape `index`, after its workload is read and checked; max_rows is
  // the most rows any call of this shape gets (the batch, or a corpus' largest).
  virtual void begin_shape(size_t /*index*/, const ShapeSpec& /*shape*/, int64_t /*max_rows*/) {}
  // One call: inputs from the workload (text, image, or one batch of a corpus),
  // run, float output [w.batch, D] in host memory, truncation/normalisation
  // included. Throws on failure.
  virtual Output call(const Workload& w) = 0;
};

// Fault hooks run before the workload is read (null runners).
using ShapeStartHook = void (*)(const Request& req, size_t index);

// Runs the protocol; returns the process exit code.
int run_main(int argc, char** argv, Backend& backend, const char* default_runner_name,
             ShapeStartHook on_shape_start = nullptr);

}  // namespace embedperf
