// Hot-expert replicas: the per-step choice of which holder computes a shared expert, and the MoE
// layer on two "ranks" sharing experts summing to the whole layer (each expert computed once).
#include "shard_worker/moe/expert_replicas.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/moe/moe_layer.h"

namespace glm::moe {
namespace {

namespace fs = std::filesystem;

TEST(ExpertReplicasTest, RefusesBadHolders) {
  EXPECT_FALSE(ExpertReplicas::Create({{0}, {}}, 2, 0).ok());          // expert 1 held by nobody
  EXPECT_FALSE(ExpertReplicas::Create({{0}, {2}}, 2, 0).ok());         // position outside the stage
  EXPECT_FALSE(ExpertReplicas::Create({{1, 0}}, 2, 0).ok());           // not ascending
  EXPECT_FALSE(ExpertReplicas::Create({{0, 0}}, 2, 0).ok());           // twice
  EXPECT_FALSE(ExpertReplicas::Create({{0}, {1}}, 2, 2).ok());         // self outside
  EXPECT_FALSE(ExpertReplicas::Create({{0}}, 0, 0).ok());
  auto ok = ExpertReplicas::Create({{0}, {0, 1}}, 2, 1);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->self(), 1);
}

TEST(ExpertReplicasTest, HotExpertGoesToTheLessLoadedHolder) {
  // Experts 0-3 on position 0, 4-7 on position 1; experts 0 and 1 also on position 1.
  std::vector<std::vector<int32_t>> holders = {{0, 1}, {0, 1}, {0}, {0}, {1}, {1}, {1}, {1}};
  auto r = ExpertReplicas::Create(holders, 2, 0);
  ASSERT_TRUE(r.ok());
  // Loads in token-equivalents (a read is kReadCostTokens = 16): position 0's own active experts
  // 2 and 3 make 22 + 22 = 44, position 1's expert 4 makes 17. The replicated experts, most tokens
  // first: expert 0 (3 tokens) to position 1 (17 < 44: now 36), then expert 1 (2 tokens) to
  // position 1 again (36 < 44: now 54). The busiest rank does 54 instead of 44 + 19 + 18 = 81.
  std::vector<int64_t> tokens = {3, 2, 6, 6, 1, 0, 0, 0};
  EXPECT_EQ(r->Assign(tokens), (std::vector<int32_t>{1, 1, 0, 0, 1, -1, -1, -1}));
  // Ties go to the lower position: both at 0 load, expert 0 to position 0.
  EXPECT_EQ(r->Assign({1, 0, 0, 0, 0, 0, 0, 0}), (std::vector<int32_t>{0, -1, -1, -1, -1, -1, -1, -1}));
}

TEST(ExpertReplicasTest, EveryActiveExpertHasOneComputerAmongItsHolders) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int ranks = 1 + static_cast<int>(rng() % 4), experts = 1 + static_cast<int>(rng() % 40);
    std::vector<std::vector<int32_t>> holders(experts);
    for (int e = 0; e < experts; ++e) {
      for (int p = 0; p < ranks; ++p)
        if (p == e % ranks || rng() % 4 == 0) holders[e].push_back(p);
    }
    auto r = ExpertReplicas::Create(holders, ranks, static_cast<int32_t>(rng() % ranks));
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<int64_t> tokens(experts);
    for (auto& t : tokens) t = rng() % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 50);
    const std::vector<int32_t> computer = r->Assign(tokens);
    ASSERT_EQ(computer, r->Assign(tokens)) << "deterministic";
    std::vector<int64_t> load(ranks, 0);
    for (int e = 0; e < experts; ++e) {
      if (tokens[e] == 0) {
        EXPECT_EQ(computer[e], -1);
      } else {
        EXPECT_NE(std::find(holders[e].begin(), holders[e].end(), computer[e]), holders[e].end())
            << "expert " << e << " computed by position " << computer[e] << ", which does not hold it";
        if (computer[e] >= 0) load[computer[e]] += ExpertReplicas::kReadCostTokens + tokens[e];
      }
    }
    // No single shared expert could move off the busiest rank to a holder that stays below it.
    const int busiest = static_cast<int>(std::max_element(load.begin(), load.end()) - load.begin());
    for (int e = 0; e < experts; ++e) {
      if (computer[e] != busiest || holders[e].size() < 2) continue;
      for (int32_t h : holders[e])
        if (h != busiest)
          EXPECT_GE(load[h] + ExpertReplicas::kReadCostTokens + tokens[e], load[busiest])
              << "trial " << trial << ": expert " << e << " could move from position " << busiest << " to " << h;
    }
  }
}

std::string ModelDir(const std::string& name) {
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

// Two ranks of an expert-parallel stage, experts 0..E/2-1 and E/2..E-1, each also holding
// copies of some of the other's: their outputs sum to the whole layer's (the shared expert left
// out: it is sliced, not replicated), every active expert is computed by exactly one of them,
// and each rank computes some copies.
TEST(ExpertReplicasTest, TwoRanksSharingExpertsSumToTheWholeLayer) {
  auto ckpt = model::Checkpoint::Open(ModelDir("glm5-tiny-code"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto weights = model::ModelWeights::Load(**ckpt, model::LoadOptions());
  ASSERT_TRUE(weights.ok()) << weights.status();
  const model::ModelConfig& c = (*weights)->config();
  const int64_t E = c.n_routed_experts, H = c.hidden_size, layer = 1;
  ASSERT_EQ(c.mlp_kind(layer), model::MlpKind::kSparse);
  model::MoeWeights whole = (*weights)->layer(layer).moe;
  whole.has_shared = false;
  // Copies: rank 0 also holds the other half's even experts, rank 1 the first half's odd ones.
  std::vector<std::vector<int32_t>> holders(E);
  std::vector<model::MoeWeights> rank(2, whole);
  for (int64_t e = 0; e < E; ++e) {
    const int32_t owner = e < E / 2 ? 0 : 1;
    const bool copied = owner == 1 ? e % 2 == 0 : e % 2 == 1;
    holders[e] = copied ? std::vector<int32_t>{0, 1} : std::vector<int32_t>{owner};
    rank[0].expert_loaded[e] = owner == 0 || copied;
    rank[1].expert_loaded[e] = owner == 1 || copied;
  }
  for (int32_t p = 0; p < 2; ++p) {
    auto r = ExpertReplicas::Create(holders, 2, p);
    ASSERT_TRUE(r.ok()) << r.status();
    rank[p].replicas = std::make_shared<const ExpertReplicas>(*std::move(r));
  }
  kernels::ThreadPool pool(2);
  MoeLayer moe(c, &pool);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  bool rank0_computed_a_copy = false, rank1_computed_a_copy = false;
  for (int64_t T : {1, 2, 5, 16}) {
    std::vector<float> x(T * H);
    for (float& v : x) v = normal(rng);
    std::vector<float> want(T * H), got0(T * H), got1(T * H);
    MoeStats all, s0, s1;
    moe.Forward(whole, x.data(), T, want.data(), &all);
    moe.Forward(rank[0], x.data(), T, got0.data(), &s0);
    moe.Forward(rank[1], x.data(), T, got1.data(), &s1);
    double max_ref = 0, max_diff = 0;
    for (int64_t i = 0; i < T * H; ++i) {
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(got0[i]) + got1[i] - want[i]));
    }
    EXPECT_LE(max_diff, 1e-5 * max_ref) << T << " tokens";
    EXPECT_EQ(s0.expert_bytes_read + s1.expert_bytes_read, all.expert_bytes_read) << "each expert once";
    // Which copies each rank computed: bytes beyond what its own active experts would be.
    auto owned_bytes = [&](int32_t p, const MoeStats& s) {
      model::MoeWeights own = rank[p];
      own.replicas = nullptr;
      for (int64_t e = 0; e < E; ++e) own.expert_loaded[e] = (e < E / 2) == (p == 0);
      std::vector<float> scratch(T * H);
      MoeStats o;
      moe.Forward(own, x.data(), T, scratch.data(), &o);
      return s.expert_bytes_read != o.expert_bytes_read;
    };
    rank0_computed_a_copy |= owned_bytes(0, s0);
    rank1_computed_a_copy |= owned_bytes(1, s1);
  }
  EXPECT_TRUE(rank0_computed_a_copy);
  EXPECT_TRUE(rank1_computed_a_copy);
}

}  // namespace
}  // namespace glm::moe
