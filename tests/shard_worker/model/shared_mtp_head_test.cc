// The MTP layer's shared_head.head is a byte-for-byte copy of lm_head in the fixtures (as in
// GLM-5 checkpoints): the loader keeps one copy. A head that differs keeps its own memory.
#include <gtest/gtest.h>

#include <filesystem>

#include "reference_fixture.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {
namespace {

TEST(SharedMtpHeadTest, AnExactCopyOfLmHeadIsLoadedOnce) {
  auto fixture = testing::ReferenceFixture::Load("glm5-tiny-code");
  ASSERT_NE(fixture, nullptr);
  auto ckpt = Checkpoint::Open(fixture->model_dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto w = ModelWeights::Load(**ckpt);
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config();
  ASSERT_TRUE(c.has_mtp());
  const WeightView& head = (*w)->layer(c.num_hidden_layers).mtp.head;
  EXPECT_EQ(head.data, (*w)->lm_head().data);
  // The whole model holds exactly one head less than its parts loaded apart: the main model
  // (with lm_head) plus the MTP layer alone (no lm_head to share with: its own copy).
  LoadOptions main_opt;
  main_opt.layer_end = c.num_hidden_layers;
  auto main_only = ModelWeights::Load(**ckpt, main_opt);
  ASSERT_TRUE(main_only.ok()) << main_only.status();
  LoadOptions mtp_opt;
  mtp_opt.layer_begin = c.num_hidden_layers;
  mtp_opt.layer_end = c.num_weight_layers();
  mtp_opt.load_embedding = false;
  mtp_opt.load_head = false;
  auto mtp_only = ModelWeights::Load(**ckpt, mtp_opt);
  ASSERT_TRUE(mtp_only.ok()) << mtp_only.status();
  EXPECT_NE((*mtp_only)->layer(c.num_hidden_layers).mtp.head.data, nullptr);
  EXPECT_EQ((*w)->bytes_loaded(),
            (*main_only)->bytes_loaded() + (*mtp_only)->bytes_loaded() - (*w)->lm_head().bytes());

  // Converted differently (scope all quantises the MTP head but not lm_head): two copies.
  LoadOptions all;
  ASSERT_TRUE(ParseWeightDType("int8", &all).ok());
  all.quantize_scope = QuantizeScope::kAllMatrices;
  auto q = ModelWeights::Load(**ckpt, all);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_NE((*q)->layer(c.num_hidden_layers).mtp.head.data, (*q)->lm_head().data);
}

}  // namespace
}  // namespace glm::model
