// The DSA indexer's top-k selection against its plain definition: order every position by
// (score descending, position ascending), keep the first k, list them in ascending position.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "shard_worker/attention/dsa_indexer.h"

namespace glm::attention {
namespace {

std::vector<int32_t> Reference(const std::vector<float>& scores, int64_t k) {
  std::vector<int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

TEST(DsaSelectionTest, MatchesTheOrderingDefinitionWithAndWithoutTies) {
  std::mt19937 rng(7);
  std::vector<int32_t> keep;
  std::vector<float> scratch;
  for (int64_t n : {2, 3, 17, 100, 2049, 5000}) {
    for (int64_t k : {int64_t{1}, n / 2, n - 1}) {
      if (k < 1 || k >= n) continue;
      for (int levels : {0, 3, 50}) {  // 0: continuous scores; else few distinct values (many ties)
        std::vector<float> scores(n);
        for (float& s : scores) {
          s = levels == 0 ? std::normal_distribution<float>()(rng) : static_cast<float>(rng() % levels);
          if (rng() % 5 == 0) s = 0.0f;  // ReLU sums are often exactly 0
        }
        SelectTopPositions(scores.data(), n, k, &keep, &scratch);
        ASSERT_EQ(keep, Reference(scores, k)) << "n " << n << " k " << k << " levels " << levels;
      }
    }
  }
}

}  // namespace
}  // namespace glm::attention
