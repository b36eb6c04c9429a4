// MlpCalibration on the bundled model: it gathers the inputs of every MLP matrix the calibration
// tokens reach (gate/up sharing theirs), and a calibrated int4 load quantises exactly those
// matrices differently from round-to-nearest, the rest byte for byte as without it.
#include "shard_worker/model/mlp_calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "reference_fixture.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/model_weights.h"

namespace glm {
namespace {

std::vector<int32_t> SomeIds(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return ids;
}

bool SameBytes(const kernels::WeightView& a, const kernels::WeightView& b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols || a.groups_per_row() != b.groups_per_row()) return false;
  return std::memcmp(a.data, b.data, a.rows * a.row_bytes()) == 0 &&
         std::memcmp(a.group_scales, b.group_scales, a.rows * a.groups_per_row() * sizeof(uint16_t)) == 0;
}

TEST(MlpCalibrationTest, GathersTheInputsOfEveryMlpMatrixReached) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  const model::ModelConfig& c = ckpt->config();
  kernels::ThreadPool pool(2);
  const std::vector<int32_t> ids = SomeIds(300, c.vocab_size);
  auto calibration = model::MlpCalibration::Collect(*ckpt, ids, 128, &pool);
  ASSERT_TRUE(calibration.ok()) << calibration.status();
  EXPECT_EQ((*calibration)->tokens(), 300);
  // The dense MLP and the shared experts see every token; gate and up share one input.
  const kernels::InputGram* dense_in = (*calibration)->Find("model.layers.0.mlp.gate_proj.weight");
  ASSERT_NE(dense_in, nullptr);
  EXPECT_EQ(dense_in->samples, 300);
  EXPECT_EQ(dense_in->cols, c.hidden_size);
  EXPECT_EQ((*calibration)->Find("model.layers.0.mlp.up_proj.weight"), dense_in);
  const kernels::InputGram* dense_mid = (*calibration)->Find("model.layers.0.mlp.down_proj.weight");
  ASSERT_NE(dense_mid, nullptr);
  EXPECT_EQ(dense_mid->cols, c.intermediate_size);
  const kernels::InputGram* shared = (*calibration)->Find("model.layers.1.mlp.shared_experts.down_proj.weight");
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(shared->samples, 300);
  // Routed experts: each token of a layer goes to num_experts_per_tok of them.
  int64_t routed = 0;
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    if (const auto* g = (*calibration)->Find("model.layers.2.mlp.experts." + std::to_string(e) + ".up_proj.weight"))
      routed += g->samples;
  EXPECT_EQ(routed, 300 * c.num_experts_per_tok);
  EXPECT_EQ((*calibration)->Find("model.layers.1.self_attn.o_proj.weight"), nullptr);  // no MLP matrix
}

// The bundled model loaded as int4 twice — rounded to nearest, and calibrated on 200 tokens —
// with `expert_slice_begin` (expert-tensor-parallel: the rank's part of every expert).
struct CalibratedLoads {
  std::shared_ptr<const model::MlpCalibration> calibration;
  std::unique_ptr<model::ModelWeights> rtn, gptq;
};
CalibratedLoads LoadBothWays(const model::Checkpoint& ckpt, int64_t expert_slice_begin) {
  CalibratedLoads out;
  kernels::ThreadPool pool(2);
  auto calibration = model::MlpCalibration::Collect(ckpt, SomeIds(200, ckpt.config().vocab_size), 200, &pool);
  EXPECT_TRUE(calibration.ok()) << calibration.status();
  if (!calibration.ok()) return out;
  model::LoadOptions options;
  EXPECT_TRUE(model::ParseWeightDType("int4", &options).ok());
  options.expert_slice_begin = expert_slice_begin;
  auto rtn = model::ModelWeights::Load(ckpt, options);
  options.calibration = *calibration;
  auto gptq = model::ModelWeights::Load(ckpt, options);
  EXPECT_TRUE(rtn.ok() && gptq.ok()) << gptq.status();
  if (!rtn.ok() || !gptq.ok()) return out;
  out.calibration = *calibration;
  out.rtn = *std::move(rtn);
  out.gptq = *std::move(gptq);
  return out;
}

TEST(MlpCalibrationTest, CalibratedInt4LoadChangesOnlyTheCalibratedMatrices) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  const model::ModelConfig& c = ckpt->config();
  CalibratedLoads loads = LoadBothWays(*ckpt, 0);
  ASSERT_NE(loads.gptq, nullptr);
  const auto& calibration = loads.calibration;
  const auto& rtn = loads.rtn;
  const auto& gptq = loads.gptq;
  const int64_t mtp = c.num_hidden_layers;  // the MTP layer: no calibration token runs through it
  for (int64_t l = 1; l <= mtp; ++l) {
    const model::MoeWeights& a = rtn->layer(l).moe;
    const model::MoeWeights& b = gptq->layer(l).moe;
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      const bool calibrated =
          calibration->Find("model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e) + ".gate_proj.weight") != nullptr;
      if (l == mtp) EXPECT_FALSE(calibrated);
      EXPECT_EQ(b.experts[e].gate_proj.dtype, kernels::DType::kI4);
      EXPECT_EQ(SameBytes(a.experts[e].gate_proj, b.experts[e].gate_proj), !calibrated) << "layer " << l << " expert " << e;
      EXPECT_EQ(SameBytes(a.experts[e].down_proj, b.experts[e].down_proj), !calibrated) << "layer " << l << " expert " << e;
    }
  }
  // Outside the experts scope nothing is quantised, calibrated or not.
  EXPECT_EQ(gptq->layer(0).dense.gate_proj.dtype, kernels::DType::kBF16);
}

// Expert-tensor-parallel slices: a rank's down_proj holds a block of the columns, quantised
// against that block of the statistics.
TEST(MlpCalibrationTest, CalibratedSlicesUseTheirBlockOfTheStatistics) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  const model::ModelConfig& c = ckpt->config();
  CalibratedLoads loads = LoadBothWays(*ckpt, c.moe_intermediate_size / 2);  // every expert's second half
  ASSERT_NE(loads.gptq, nullptr);
  const auto& calibration = loads.calibration;
  const auto& rtn = loads.rtn;
  const auto& gptq = loads.gptq;
  const kernels::WeightView& down = gptq->layer(1).moe.shared.down_proj;
  EXPECT_EQ(down.cols, c.moe_intermediate_size * c.n_shared_experts);  // shared experts are not sliced
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    if (calibration->Find("model.layers.1.mlp.experts." + std::to_string(e) + ".down_proj.weight") == nullptr) continue;
    const kernels::WeightView& a = rtn->layer(1).moe.experts[e].down_proj;
    const kernels::WeightView& b = gptq->layer(1).moe.experts[e].down_proj;
    EXPECT_EQ(b.cols, c.moe_intermediate_size / 2);
    EXPECT_FALSE(SameBytes(a, b)) << "expert " << e;
  }
  // The slice is what quantising those columns against their block of the statistics gives
  // (and not what the first columns' block gives).
  auto stored = model::ModelWeights::Load(*ckpt, model::LoadOptions());
  ASSERT_TRUE(stored.ok());
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    const std::string down_name = "model.layers.1.mlp.experts." + std::to_string(e) + ".down_proj.weight";
    if (calibration->Find(down_name) == nullptr) continue;
    const kernels::WeightView& full = (*stored)->layer(1).moe.experts[e].down_proj;
    const int64_t half = c.moe_intermediate_size / 2;
    std::vector<float> block(full.rows * half), row(full.cols);
    for (int64_t r = 0; r < full.rows; ++r) {
      full.RowToF32(r, row.data());
      std::copy(row.begin() + half, row.end(), block.begin() + r * half);
    }
    kernels::WeightView view;
    view.dtype = kernels::DType::kF32;
    view.rows = full.rows;
    view.cols = half;
    view.data = block.data();
    const kernels::WeightView& loaded = gptq->layer(1).moe.experts[e].down_proj;
    for (int64_t col_begin : {half, int64_t{0}}) {
      std::vector<uint8_t> out(view.rows * loaded.row_bytes());
      std::vector<uint16_t> scales(view.rows * loaded.groups_per_row());
      ASSERT_TRUE(calibration->Quantize(down_name, view, col_begin, kernels::DType::kI4, loaded.group_size, out.data(), scales.data()).ok());
      const bool same = std::memcmp(out.data(), loaded.data, out.size()) == 0 &&
                        std::memcmp(scales.data(), loaded.group_scales, scales.size() * sizeof(uint16_t)) == 0;
      EXPECT_EQ(same, col_begin == half) << "expert " << e << " statistics from column " << col_begin;
    }
    break;
  }
  // Statistics of fewer columns than the slice asks for are refused, naming the tensor.
  const std::string name = "model.layers.1.mlp.experts.0.down_proj.weight";
  if (calibration->Find(name) != nullptr) {
    kernels::WeightView wide;
    std::vector<float> zeros(2 * (c.moe_intermediate_size + 32));
    wide.dtype = kernels::DType::kF32;
    wide.rows = 2;
    wide.cols = c.moe_intermediate_size + 32;
    wide.data = zeros.data();
    std::vector<uint8_t> out(2 * kernels::DTypeRowBytes(kernels::DType::kI4, wide.cols));
    std::vector<uint16_t> scales(2 * kernels::QuantGroupsPerRow(wide.cols, 32));
    const absl::Status st = calibration->Quantize(name, wide, 0, kernels::DType::kI4, 32, out.data(), scales.data());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(name), std::string::npos) << st;
  }
}

TEST(MlpCalibrationTest, RefusesBadTokens) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  kernels::ThreadPool pool(1);
  EXPECT_EQ(model::MlpCalibration::Collect(*ckpt, {}, 16, &pool).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model::MlpCalibration::Collect(*ckpt, {1, -1}, 16, &pool).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model::MlpCalibration::Collect(*ckpt, {1, static_cast<int32_t>(ckpt->config().vocab_size)}, 16, &pool)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model::MlpCalibration::Collect(*ckpt, {1, 2}, 0, &pool).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace glm
