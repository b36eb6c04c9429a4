// The cost model behind adaptive draft lengths: what verifying several positions costs
// (VerifyCostModel) and the draft length AdaptiveDraftLength picks with it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "shard_worker/model/synth_checkpoint.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::runtime {
namespace {

model::ModelConfig BundledConfig() {
  std::ifstream in(std::filesystem::path(GLM_MODELS_DIR) / "glm5-tiny-code" / "config.json");
  std::stringstream text;
  text << in.rdbuf();
  auto config = model::ModelConfig::FromJson(text.str());
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : model::ModelConfig();
}

TEST(VerifyCostModelTest, CountsTheExpertsExtraPositionsRouteTo) {
  // Bundled model: 16 experts, 4 per token; routed experts are ~40% of what a position reads.
  const VerifyCostModel bundled = VerifyCostModel::FromConfig(BundledConfig());
  EXPECT_EQ(bundled.experts, 16);
  EXPECT_EQ(bundled.experts_per_token, 4);
  EXPECT_NEAR(bundled.routed_share, 0.40, 0.05);
  EXPECT_DOUBLE_EQ(bundled.Cost(1), 1.0);
  // 2 positions select 7 distinct experts in expectation (16·(1 − 0.75²)), 3 select 9.25.
  EXPECT_NEAR(bundled.Cost(2), 1.0 + bundled.routed_share * 3.0 / 4.0, 1e-9);
  EXPECT_NEAR(bundled.Cost(3), 1.0 + bundled.routed_share * 5.25 / 4.0, 1e-9);
  // Each further position adds less: it finds more of its experts already read.
  for (int n = 2; n < 8; ++n)
    EXPECT_LT(bundled.Cost(n + 1) - bundled.Cost(n), bundled.Cost(n) - bundled.Cost(n - 1)) << n;
  // Never more than every expert.
  EXPECT_LE(bundled.Cost(1000), 1.0 + bundled.routed_share * 3.0 + 1e-9);

  // GLM-5: 8 of 256 experts, most of a position's weights; a second position costs ~1.5x.
  auto glm5 = model::SynthPresetByName("glm5");
  ASSERT_TRUE(glm5.ok()) << glm5.status();
  const VerifyCostModel big = VerifyCostModel::FromConfig(glm5->config);
  EXPECT_EQ(big.experts, 256);
  EXPECT_GT(big.routed_share, 0.5);
  EXPECT_NEAR(big.Cost(2), 1.5, 0.1);

  // Without routed experts (a dense model) or a model: linear.
  model::ModelConfig dense = BundledConfig();
  dense.n_routed_experts = 0;
  const VerifyCostModel linear = VerifyCostModel::FromConfig(dense);
  EXPECT_DOUBLE_EQ(linear.Cost(3), 1.0 + 2 * linear.linear_step);
  EXPECT_DOUBLE_EQ(VerifyCostModel().Cost(2), 1.0 + VerifyCostModel().linear_step);
}

TEST(VerifyCostModelTest, TheSecondDraftPaysWhereALinearCostSaysItDoesNot) {
  // MTP on the bundled model (bench/spec_bench): the first draft kept ~89% of the time, the
  // second ~70% when reached. A verify of 2 positions costs ~1.3 steps and of 3 ~1.5, a draft
  // ~0.2.
  const VerifyCostModel verify = VerifyCostModel::FromConfig(BundledConfig());
  AdaptiveDraftLength curve(3, verify, AdaptiveDraftLength::kMtpDraftCost);
  AdaptiveDraftLength linear(3, AdaptiveDraftLength::kVerifyPositionCost + AdaptiveDraftLength::kMtpDraftCost);
  // A deterministic feed: the first draft is rejected on every 9th step, the second on every
  // 4th step that reaches it (a_1 ~ 0.89, a_2 ~ 0.75), the third always.
  auto feed = [](AdaptiveDraftLength& a, int steps) {
    int two = 0, reached_second = 0;
    for (int i = 1; i <= steps; ++i) {
      const int k = a.next();
      int kept = 0;
      if (k > 0 && i % 9 != 0) {
        kept = 1;
        if (k >= 2 && ++reached_second % 4 != 0) kept = 2;
      }
      two += k == 2;
      a.Update(k, kept);
    }
    return two;
  };
  // The curve: a_2 = 0.75 is above the 0.60 where a second draft starts to pay.
  EXPECT_GT(feed(curve, 400), 300);
  // Linear costs charge the second draft as much as the first: it would need a_2 above 0.80.
  EXPECT_LT(feed(linear, 400), 100) << "only the probes of the second position";
  // Batched: the same rates no longer pay for drafting at 8 sequences.
  curve.SetBatchSize(8);
  feed(curve, 50);
  EXPECT_LE(curve.next(), 1);
}

}  // namespace
}  // namespace glm::runtime
