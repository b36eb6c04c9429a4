// LoadOptions::simulate_rows (quant_quality_bench's simulated formats): the matrices in the
// quantise scope load as F32 through the hook, the others stay as stored, and a hook together
// with a matrix dtype is refused. LoadOptions::quantize_only narrows the scope.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "reference_fixture.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"

namespace glm {
namespace {

TEST(SimulateRowsTest, ExpertsPassThroughTheHookAsF32AndTheRestStaysStored) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  std::atomic<int64_t> rows{0};
  model::LoadOptions load;
  load.simulate_rows = [&](float* row, int64_t cols) {
    ++rows;
    for (int64_t c = 0; c < cols; ++c) row[c] = 0.5f;  // a format that maps everything to 0.5
  };
  auto weights = model::ModelWeights::Load(*ckpt, load);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const model::ModelConfig& c = ckpt->config();
  const model::LayerWeights& moe_layer = (*weights)->layer(1);  // layer 0 is dense
  const kernels::WeightView& gate = moe_layer.moe.experts[0].gate_proj;
  EXPECT_EQ(gate.dtype, kernels::DType::kF32);
  EXPECT_EQ(gate.At(0, 0), 0.5f);
  EXPECT_EQ(moe_layer.moe.shared.down_proj.dtype, kernels::DType::kF32);
  EXPECT_EQ(moe_layer.attn.q_a_proj.dtype, kernels::DType::kBF16);  // outside the experts scope
  EXPECT_NE(moe_layer.attn.q_a_proj.At(0, 0), 0.5f);
  // Every routed and shared expert row of the main MoE layers went through the hook (the MTP
  // layer's experts too).
  int64_t moe_layers = c.has_mtp() ? 1 : 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.mlp_kind(l) == model::MlpKind::kSparse ? 1 : 0;
  const int64_t rows_per_expert = 2 * c.moe_intermediate_size + c.hidden_size;
  EXPECT_EQ(rows.load(), moe_layers * (c.n_routed_experts + c.n_shared_experts) * rows_per_expert);
}

// LoadOptions::quantize_only (quant_quality_bench --only) narrows the scope by tensor name.
TEST(SimulateRowsTest, QuantizeOnlyNarrowsTheScopeByName) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  model::LoadOptions load;
  ASSERT_TRUE(model::ParseWeightDType("int4", &load).ok());
  load.quantize_only = [](const std::string& name) { return name.find("shared_experts") != std::string::npos; };
  auto weights = model::ModelWeights::Load(*ckpt, load);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const model::LayerWeights& layer = (*weights)->layer(1);
  EXPECT_EQ(layer.moe.shared.gate_proj.dtype, kernels::DType::kI4);
  EXPECT_EQ(layer.moe.shared.down_proj.dtype, kernels::DType::kI4);
  EXPECT_EQ(layer.moe.experts[0].gate_proj.dtype, kernels::DType::kBF16);  // in the experts scope, not accepted
  EXPECT_EQ(layer.attn.q_a_proj.dtype, kernels::DType::kBF16);             // outside the scope anyway
}

TEST(SimulateRowsTest, RefusedWithAMatrixDtype) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  model::LoadOptions load;
  ASSERT_TRUE(model::ParseWeightDType("int4", &load).ok());
  load.simulate_rows = [](float*, int64_t) {};
  auto weights = model::ModelWeights::Load(*ckpt, load);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace glm
