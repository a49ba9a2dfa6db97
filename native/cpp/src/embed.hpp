// Matryoshka truncation + L2 re-normalisation of sentence embeddings.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace embedperf {

// in: [rows, dim] row-major; out: [rows, keep], each row scaled to unit L2 norm
// (norm clamped at 1e-12, as torch.nn.functional.normalize does).
inline void truncate_normalize(const float* in, int64_t rows, int64_t dim, int64_t keep, std::vector<float>& out) {
  if (keep > dim) keep = dim;
  out.resize(static_cast<size_t>(rows * keep));
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = in + r * dim;
    float* dst = out.data() + r * keep;
    double ss = 0.0;
    for (int64_t k = 0; k < keep; ++k) ss += static_cast<double>(src[k]) * src[k];
    double norm = std::sqrt(ss);
    if (norm < 1e-12) norm = 1e-12;
    const double inv = 1.0 / norm;
    for (int64_t k = 0; k < keep; ++k) dst[k] = static_cast<float>(src[k] * inv);
  }
}

}  // namespace embedperf
