// What a call returns beyond the sentence embedding: BGE-M3's per-token sparse
// weights, the lexical weights the harness aggregates from them inside the
// call, and its multi-vectors (docs/outputs.md). The same rules as
// src/embedperf/runners/outputs.py and native/rust/protocol/src/outputs.rs.
#pragma once

#include <cstdint>
#include <vector>

namespace embedperf {

// Lexical weights in CSR form: row r's (id, weight) entries are at
// offsets[r] .. offsets[r + 1], ids ascending within a row.
struct Lexical {
  std::vector<int64_t> ids;
  std::vector<float> weights;
  std::vector<int64_t> offsets;
};

// BGE-M3's lexical weights of a batch: per row, for every token id, the largest
// weight it has at a real position (mask != 0), keeping only weights > 0 and
// dropping the `unused` ids (cls, eos, pad, unk), as FlagEmbedding's encode
// aggregates them. weights, ids, mask: row-major [rows, seq]. `out` is reused
// between calls (its buffers keep their capacity).
void lexical_weights(const float* weights, const int64_t* ids, const int64_t* mask, int64_t rows, int64_t seq,
                     const std::vector<int64_t>& unused, Lexical& out);

}  // namespace embedperf
