// The MTP layer's shared_head.head is a byte-for-byte copy of lm_head in the fixtures (as in
// GLM-5 checkpoints): the loader keeps one copy. A head that differs keeps its own memory.
// Quantize scope "mtp" re-quantises the MTP layer alone (its head too) and nothing else.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <utility>

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

TEST(MtpQuantizeScopeTest, ReQuantisesTheMtpLayerOnly) {
  auto fixture = testing::ReferenceFixture::Load("glm5-tiny-code");
  ASSERT_NE(fixture, nullptr);
  auto ckpt = Checkpoint::Open(fixture->model_dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto stored = ModelWeights::Load(**ckpt);
  ASSERT_TRUE(stored.ok()) << stored.status();
  LoadOptions mtp;
  ASSERT_TRUE(ParseWeightDType("int4", &mtp).ok());
  ASSERT_TRUE(ParseQuantizeScope("mtp", &mtp.quantize_scope));
  auto w = ModelWeights::Load(**ckpt, mtp);
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config();
  // The main model: every matrix as stored, byte for byte.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& a = (*w)->layer(l);
    const LayerWeights& b = (*stored)->layer(l);
    for (auto [x, y] : {std::pair{&a.attn.q_a_proj, &b.attn.q_a_proj}, {&a.attn.o_proj, &b.attn.o_proj}}) {
      EXPECT_EQ(x->dtype, kernels::DType::kBF16) << "layer " << l;
      EXPECT_EQ(std::memcmp(x->data, y->data, x->rows * x->row_bytes()), 0) << "layer " << l;
    }
    if (c.mlp_kind(l) == MlpKind::kSparse) {
      EXPECT_EQ(a.moe.experts[0].gate_proj.dtype, kernels::DType::kBF16) << "layer " << l;
      EXPECT_EQ(a.moe.shared.down_proj.dtype, kernels::DType::kBF16) << "layer " << l;
    }
  }
  EXPECT_EQ((*w)->lm_head().dtype, kernels::DType::kBF16);
  EXPECT_EQ((*w)->embed_tokens().dtype, kernels::DType::kBF16);
  // The MTP layer: its projections, attention, experts, embedding and head in int4; the head no
  // longer shares lm_head's memory. kv_b_proj stays as stored under every scope.
  const LayerWeights& m = (*w)->layer(c.num_hidden_layers);
  for (const WeightView* v : {&m.mtp.eh_proj, &m.mtp.head, &m.mtp.embed_tokens, &m.attn.q_a_proj, &m.attn.q_b_proj,
                              &m.attn.o_proj, &m.moe.experts[3].up_proj, &m.moe.shared.gate_proj})
    EXPECT_EQ(v->dtype, kernels::DType::kI4);
  EXPECT_EQ(m.attn.kv_b_proj.dtype, kernels::DType::kBF16);
  EXPECT_NE(m.mtp.head.data, (*w)->lm_head().data);
  EXPECT_LT((*w)->bytes_loaded(), (*stored)->bytes_loaded() + (*w)->lm_head().bytes());

  // Refused: a conversion that reaches every matrix, and a model without an MTP layer.
  LoadOptions bf16 = mtp;
  ASSERT_TRUE(ParseWeightDType("bf16", &bf16).ok());
  auto refused = ModelWeights::Load(**ckpt, bf16);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("mtp"), std::string::npos) << refused.status();
  auto no_mtp_fixture = testing::ReferenceFixture::Load("glm5-random-fp8");
  ASSERT_NE(no_mtp_fixture, nullptr);
  auto no_mtp = Checkpoint::Open(no_mtp_fixture->model_dir());
  ASSERT_TRUE(no_mtp.ok()) << no_mtp.status();
  auto no_layer = ModelWeights::Load(**no_mtp, mtp);
  ASSERT_FALSE(no_layer.ok());
  EXPECT_NE(no_layer.status().message().find("no MTP layer"), std::string::npos) << no_layer.status();
}

}  // namespace
}  // namespace glm::model
