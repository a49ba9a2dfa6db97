#include "outputs.hpp"

#include <algorithm>
#include <utility>

namespace embedperf {

void lexical_weights(const float* weights, const int64_t* ids, const int64_t* mask, int64_t rows, int64_t seq,
                     const std::vector<int64_t>& unused, Lexical& out) {
  out.ids.clear();
  out.weights.clear();
  out.offsets.assign(1, 0);
  std::vector<std::pair<int64_t, float>> row;
  row.reserve(static_cast<size_t>(seq));
  for (int64_t r = 0; r < rows; ++r) {
    row.clear();
    for (int64_t j = r * seq; j < (r + 1) * seq; ++j) {
      const int64_t id = ids[j];
      const float w = weights[j];
      if (mask[j] != 0 && w > 0.0f && std::find(unused.begin(), unused.end(), id) == unused.end())
        row.emplace_back(id, w);
    }
    // by id, then the largest weight first: the first entry of each id is its max
    std::sort(row.begin(), row.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    });
    for (size_t k = 0; k < row.size(); ++k) {
      if (k > 0 && row[k].first == row[k - 1].first) continue;
      out.ids.push_back(row[k].first);
      out.weights.push_back(row[k].second);
    }
    out.offsets.push_back(static_cast<int64_t>(out.ids.size()));
  }
}

}  // namespace embedperf
