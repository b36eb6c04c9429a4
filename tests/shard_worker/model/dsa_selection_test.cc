// The DSA indexer's top-k selection against its plain definition: order every position by
// (score descending, position ascending), keep the first k, list them in ascending position.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "reference_fixture.h"
#include "shard_worker/attention/dsa_indexer.h"
#include "shard_worker/kernels/rope.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"

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

// The sparse fixture's indexer (layer 0 is a full one): weights, a model for KV caches, its RoPE.
class SparseIndexerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ckpt = model::Checkpoint::Open(glm::testing::ModelDir("glm5-random-sparse"));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    auto loaded = model::ModelWeights::Load(**ckpt);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    weights_ = std::move(*loaded);
    const model::ModelConfig& c = weights_->config();
    ASSERT_GT(c.index_topk, 0);
    auto m = model::Glm5Model::Create(weights_, &pool_);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    std::vector<float> inv_freq(c.qk_rope_head_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / c.qk_rope_head_dim);
    rope_ = std::make_unique<kernels::RopeTable>(inv_freq, 1.0f);
  }
  kernels::ThreadPool pool_{2};
  std::shared_ptr<const model::ModelWeights> weights_;
  std::unique_ptr<model::Glm5Model> model_;
  std::unique_ptr<kernels::RopeTable> rope_;
};

// Rows whose output nobody reads (out_rows 0: the MTP layer's caught-up and prompt rows) only
// write their index keys: the other rows get exactly the selection a call without out_rows
// gives them, theirs stays empty, and every key is the same.
TEST_F(SparseIndexerTest, RowsWithoutOutputOnlyWriteTheirKeys) {
  const model::ModelConfig& c = weights_->config();
  const DsaIndexer indexer(c, rope_.get(), &pool_);
  const int64_t layer = 0, T = c.index_topk + 14;  // rows past index_topk select keys
  ASSERT_EQ(c.indexer_kind(layer), model::IndexerKind::kFull);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(T * c.hidden_size), q(T * c.q_lora_rank);
  for (float& v : x) v = nd(rng);
  for (float& v : q) v = nd(rng);
  std::vector<uint8_t> out_rows(T, 0);
  for (int64_t t : {T - 1, T - 3, T - 9, int64_t{2}}) out_rows[t] = 1;
  auto run = [&](const uint8_t* rows, std::unique_ptr<kv_cache::KvCache>* cache) {
    *cache = model_->NewCache();
    EXPECT_TRUE((*cache)->Reserve(T).ok());
    const std::vector<SequenceSpan> spans = {{0, T, 0, cache->get()}};
    KeySelection selection;
    indexer.Run(weights_->layer(layer).attn.indexer, layer, x.data(), q.data(), T, spans, &selection, rows);
    return selection;
  };
  std::unique_ptr<kv_cache::KvCache> all_cache, some_cache;
  const KeySelection all = run(nullptr, &all_cache);
  const KeySelection some = run(out_rows.data(), &some_cache);
  ASSERT_EQ(all.size(), static_cast<size_t>(T));
  ASSERT_EQ(some.size(), static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    if (out_rows[t]) {
      EXPECT_EQ(some[t], all[t]) << t;
      EXPECT_EQ(all[t].empty(), t + 1 <= c.index_topk) << t;  // dense below index_topk, else a selection
    } else {
      EXPECT_TRUE(some[t].empty()) << t;
    }
    const float* a = all_cache->index_key(layer, t);
    const float* b = some_cache->index_key(layer, t);
    ASSERT_NE(a, nullptr);
    EXPECT_TRUE(std::equal(a, a + c.index_head_dim, b)) << t;
  }
}

// The scores are held for a batch of query rows at a time (DsaIndexer::set_score_budget): a
// prefill chunk at a long context held chunk x context floats per layer (1.6 GB for 2048 rows at
// 200K). Any budget gives the unbounded selection: one row per batch, a few rows, all at once.
TEST_F(SparseIndexerTest, ScoringInBoundedBatchesSelectsTheSame) {
  const model::ModelConfig& c = weights_->config();
  const int64_t layer = 0, T = 3 * c.index_topk + 5;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> x(T * c.hidden_size), q(T * c.q_lora_rank);
  for (float& v : x) v = nd(rng);
  for (float& v : q) v = nd(rng);
  auto run = [&](int64_t budget) {
    DsaIndexer indexer(c, rope_.get(), &pool_);
    indexer.set_score_budget(budget);
    auto cache = model_->NewCache();
    EXPECT_TRUE(cache->Reserve(T).ok());
    const std::vector<SequenceSpan> spans = {{0, T, 0, cache.get()}};
    KeySelection selection;
    indexer.Run(weights_->layer(layer).attn.indexer, layer, x.data(), q.data(), T, spans, &selection);
    return selection;
  };
  const KeySelection whole = run(DsaIndexer::kDefaultScoreBudget);
  int64_t selected_rows = 0;
  for (const auto& s : whole) selected_rows += !s.empty();
  ASSERT_EQ(selected_rows, T - c.index_topk);
  for (int64_t budget : {int64_t{1}, 3 * c.index_topk, int64_t{1} << 30}) EXPECT_EQ(run(budget), whole) << budget;
}

}  // namespace
}  // namespace glm::attention
