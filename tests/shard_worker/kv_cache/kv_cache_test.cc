// KvCache's row-pointer listings against its per-position accessors: over a shuffled block
// table (a coordinator-managed view) and a self-managed cache, for ranges and for position
// lists in any order (DSA selections are ascending; the listing must not depend on it).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "shard_worker/kv_cache/kv_cache.h"

namespace glm::kv_cache {
namespace {

KvCacheShape Shape() {
  KvCacheShape s;
  s.kv_lora_rank = 24;
  s.rope_dim = 8;
  s.index_head_dim = 16;
  s.first_layer = 2;
  s.layer_has_index_keys = {true, false, true};
  s.max_positions = 1000;
  return s;
}

void ExpectListingsMatch(const KvCache& cache, int64_t layer, int64_t n, std::mt19937& rng) {
  std::vector<const float*> lat(n), kpe(n), idx(n);
  cache.RowPointers(layer, n, lat.data(), kpe.data());
  for (int64_t p = 0; p < n; ++p) {
    ASSERT_EQ(lat[p], cache.latent(layer, p)) << p;
    ASSERT_EQ(kpe[p], cache.rope_key(layer, p)) << p;
  }
  for (int64_t begin : {int64_t{0}, int64_t{3}, n / 2}) {
    cache.IndexKeyRows(layer, begin, n, idx.data());
    for (int64_t p = begin; p < n; ++p) ASSERT_EQ(idx[p - begin], cache.index_key(layer, p)) << begin << " " << p;
  }
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), 0);
  std::shuffle(positions.begin(), positions.end(), rng);
  positions.resize(n / 2 + 1);
  for (bool ascending : {false, true}) {
    if (ascending) std::sort(positions.begin(), positions.end());
    const int64_t m = static_cast<int64_t>(positions.size());
    cache.RowPointers(layer, positions.data(), m, lat.data(), kpe.data());
    for (int64_t i = 0; i < m; ++i) {
      ASSERT_EQ(lat[i], cache.latent(layer, positions[i])) << i;
      ASSERT_EQ(kpe[i], cache.rope_key(layer, positions[i])) << i;
    }
  }
}

TEST(KvCacheTest, RowListingsMatchTheAccessors) {
  std::mt19937 rng(5);
  const int64_t block = 16, n = 150;
  KvBlockPool pool(Shape(), block, 20, false);
  std::vector<int32_t> table(20);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  table.resize((n + block - 1) / block);
  KvCache view(&pool, table, n);
  ExpectListingsMatch(view, 2, n, rng);
  ExpectListingsMatch(view, 4, n, rng);

  KvCache own(Shape(), 7);  // a block size that divides nothing
  ASSERT_TRUE(own.Reserve(n).ok());
  ExpectListingsMatch(own, 3, n, rng);
}

}  // namespace
}  // namespace glm::kv_cache
