// LoadOptionsFor: a worker's part of the plan, and the load options the plan carries for every
// worker (weight_dtype, quantize_scope, expert_memory_bytes) applied to model::LoadOptions, or
// refused with InvalidArgument before anything is read.
#include "shard_worker/runtime/worker_service.h"

#include <gtest/gtest.h>

#include "shard_worker/model/checkpoint.h"
#include "shard_worker/moe/expert_store.h"

namespace glm::runtime {
namespace {

const char kTinyModel[] = GLM_MODELS_DIR "/glm5-tiny-code";

// One stage, one worker holding the whole model (what the planner makes for one rank).
placement::PlacementPlan OneRankPlan(const model::ModelConfig& c) {
  placement::PlacementPlan plan;
  plan.set_world_size(2);
  plan.set_expert_layout("expert-parallel");
  placement::Stage* st = plan.add_stages();
  st->set_layer_end(static_cast<int32_t>(c.num_hidden_layers));
  st->set_has_embedding(true);
  st->set_has_head(true);
  st->add_ranks(1);
  placement::RankAssignment* r = plan.add_ranks();
  r->set_rank(1);
  r->set_tp_size(1);
  r->set_head_end(static_cast<int32_t>(c.num_attention_heads));
  r->set_dense_end(static_cast<int32_t>(c.intermediate_size));
  r->set_shared_end(static_cast<int32_t>(c.moe_intermediate_size * c.n_shared_experts));
  r->set_vocab_end(static_cast<int32_t>(c.vocab_size));
  for (int32_t e = 0; e < c.n_routed_experts; ++e) r->add_experts(e);
  return plan;
}

class LoadOptionsForTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = model::ModelConfig::FromFile(std::string(kTinyModel) + "/config.json");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    plan_ = OneRankPlan(config_);
  }
  model::ModelConfig config_;
  placement::PlacementPlan plan_;
};

TEST_F(LoadOptionsForTest, APlanWithoutLoadOptionsLoadsAsStoredAndResident) {
  auto o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->matrix_dtype.has_value());
  EXPECT_EQ(o->quantize_scope, model::QuantizeScope::kExperts);
  EXPECT_EQ(o->expert_memory_bytes, 0);
  EXPECT_EQ(o->layer_end, config_.num_weight_layers());  // the MTP layer rides with the head
  plan_.set_weight_dtype("stored");
  plan_.set_quantize_scope("experts");
  o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->matrix_dtype.has_value());
}

TEST_F(LoadOptionsForTest, AppliesWeightDtypeScopeAndExpertMemory) {
  plan_.set_weight_dtype("int4-g64");
  plan_.set_quantize_scope("all");
  plan_.mutable_ranks(0)->set_expert_memory_bytes(12345);
  auto o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_TRUE(o->matrix_dtype.has_value());
  EXPECT_EQ(*o->matrix_dtype, kernels::DType::kI4);
  EXPECT_EQ(o->matrix_group_size, 64);
  EXPECT_EQ(o->quantize_scope, model::QuantizeScope::kAllMatrices);
  EXPECT_EQ(o->expert_memory_bytes, 12345);

  plan_.set_weight_dtype("int8");
  plan_.set_quantize_scope("experts");
  o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(*o->matrix_dtype, kernels::DType::kI8);
  EXPECT_EQ(o->matrix_group_size, 64);
  EXPECT_EQ(o->quantize_scope, model::QuantizeScope::kExperts);
  plan_.set_weight_dtype("int4");
  plan_.set_quantize_scope("mtp");
  o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->quantize_scope, model::QuantizeScope::kMtpLayer);
  plan_.set_quantize_scope("experts");
  plan_.set_weight_dtype("int8-row");
  o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->matrix_group_size, -1);
  plan_.set_weight_dtype("bf16");
  o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(*o->matrix_dtype, kernels::DType::kBF16);
}

TEST_F(LoadOptionsForTest, RejectsBadLoadOptions) {
  auto refused = [&](const std::function<void(placement::PlacementPlan&)>& edit) {
    placement::PlacementPlan p = plan_;
    edit(p);
    auto o = LoadOptionsFor(p, 1, config_);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(o.status().message());
  };
  const std::string dtype = refused([](auto& p) { p.set_weight_dtype("fp8"); });
  EXPECT_NE(dtype.find("weight dtype 'fp8' is not one of"), std::string::npos) << dtype;
  const std::string scope = refused([](auto& p) { p.set_quantize_scope("heads"); });
  EXPECT_NE(scope.find("quantize_scope 'heads'"), std::string::npos) << scope;
  const std::string memory = refused([](auto& p) { p.mutable_ranks(0)->set_expert_memory_bytes(-1); });
  EXPECT_NE(memory.find("expert_memory_bytes -1"), std::string::npos) << memory;
  const std::string missing = refused([](auto& p) { p.mutable_ranks(0)->set_rank(2); });
  EXPECT_NE(missing.find("rank 1 has no assignment"), std::string::npos) << missing;
}

// What the options do once loaded: int8 experts next to BF16 attention, and routed experts
// streamed through a cache when they outgrow the budget.
TEST_F(LoadOptionsForTest, TheLoadedModelIsQuantisedAndStreamsItsExperts) {
  auto ckpt = model::Checkpoint::Open(kTinyModel);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  plan_.set_weight_dtype("int8");
  plan_.set_quantize_scope("experts");
  plan_.mutable_ranks(0)->set_expert_memory_bytes(int64_t{2} << 20);  // 2 MiB of ~18 MiB of experts
  auto o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  auto weights = model::ModelWeights::Load(**ckpt, *o);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const model::LayerWeights& moe = (*weights)->layer(1);
  ASSERT_EQ(moe.mlp_kind, model::MlpKind::kSparse);
  EXPECT_EQ(moe.moe.shared.gate_proj.dtype, kernels::DType::kI8);
  EXPECT_EQ(moe.attn.q_a_proj.dtype, kernels::DType::kBF16);
  EXPECT_EQ((*weights)->lm_head().dtype, kernels::DType::kBF16);
  ASSERT_NE((*weights)->expert_store(), nullptr);
  EXPECT_TRUE((*weights)->expert_store()->streaming());
}

}  // namespace
}  // namespace glm::runtime

namespace glm::runtime {
namespace {

// Expert-tensor-parallel plans give each worker a slice of every expert; a worker that loaded
// whole experts would add every expert N times in the all-reduce.
TEST_F(LoadOptionsForTest, ExpertTensorParallelLoadsTheSliceOfEveryExpert) {
  plan_.set_expert_layout("expert-tensor-parallel");
  plan_.mutable_ranks(0)->set_expert_slice_begin(32);
  plan_.mutable_ranks(0)->set_expert_slice_end(96);
  auto o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->expert_slice_begin, 32);
  EXPECT_EQ(o->expert_slice_end, 96);
  auto ckpt = model::Checkpoint::Open(kTinyModel);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto w = model::ModelWeights::Load(**ckpt, *o);
  ASSERT_TRUE(w.ok()) << w.status();
  const model::MlpWeights& e = (*w)->layer(1).moe.experts[3];
  EXPECT_EQ(e.gate_proj.rows, 64);
  EXPECT_EQ(e.up_proj.rows, 64);
  EXPECT_EQ(e.down_proj.cols, 64);
  EXPECT_EQ(e.down_proj.rows, config_.hidden_size);

  plan_.mutable_ranks(0)->set_expert_slice_end(static_cast<int32_t>(config_.moe_intermediate_size) + 1);
  o = LoadOptionsFor(plan_, 1, config_);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << o.status();
  plan_.mutable_ranks(0)->set_expert_slice_end(32);  // empty
  o = LoadOptionsFor(plan_, 1, config_);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << o.status();
  plan_.set_expert_layout("expert-sharded");
  o = LoadOptionsFor(plan_, 1, config_);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << o.status();
}

}  // namespace
}  // namespace glm::runtime

namespace glm::runtime {
namespace {

// Two ranks of one expert-parallel stage (experts 0-7 and 8-15); rank 1 also holds a copy of
// expert 8 in layer 1.
class ExpertReplicaLoadTest : public LoadOptionsForTest {
 protected:
  void SetUp() override {
    LoadOptionsForTest::SetUp();
    plan_.set_world_size(3);
    plan_.mutable_stages(0)->add_ranks(2);
    placement::RankAssignment* one = plan_.mutable_ranks(0);
    one->set_tp_size(2);
    one->clear_experts();
    placement::RankAssignment* two = plan_.add_ranks();
    *two = *one;
    two->set_rank(2);
    two->set_tp_index(1);
    for (int32_t e = 0; e < config_.n_routed_experts; ++e) (e < 8 ? one : two)->add_experts(e);
    AddReplica(0, 1, 8);
  }
  void AddReplica(int index, int32_t layer, int32_t expert) {
    placement::ExpertReplica* r = plan_.mutable_ranks(index)->add_replicas();
    r->set_layer(layer);
    r->set_expert(expert);
  }
};

TEST_F(ExpertReplicaLoadTest, TheCopyIsLoadedAndBothRanksKnowItsHolders) {
  for (int rank : {1, 2}) {
    auto o = LoadOptionsFor(plan_, rank, config_);
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_TRUE(o->owns_expert(1, 8));  // rank 2 owns it, rank 1 holds a copy
    EXPECT_EQ(o->owns_expert(2, 8), rank == 2);  // the copy is of layer 1 only
    EXPECT_EQ(o->owns_expert(1, 0), rank == 1);
    ASSERT_TRUE(o->expert_replicas);
    EXPECT_EQ(o->expert_replicas(2), nullptr);
    auto r = o->expert_replicas(1);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->self(), rank - 1);
    EXPECT_EQ(r->holders(8), (std::vector<int32_t>{0, 1}));
    EXPECT_EQ(r->holders(9), (std::vector<int32_t>{1}));
    EXPECT_EQ(r->holders(0), (std::vector<int32_t>{0}));
  }
  // The loaded layer carries them: rank 1 holds expert 8 of layer 1 and computes it when picked.
  auto o = LoadOptionsFor(plan_, 1, config_);
  ASSERT_TRUE(o.ok());
  auto ckpt = model::Checkpoint::Open(kTinyModel);
  ASSERT_TRUE(ckpt.ok());
  auto w = model::ModelWeights::Load(**ckpt, *o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->layer(1).moe.expert_loaded[8]);
  EXPECT_FALSE((*w)->layer(2).moe.expert_loaded[8]);
  EXPECT_NE((*w)->layer(1).moe.replicas, nullptr);
  EXPECT_EQ((*w)->layer(2).moe.replicas, nullptr);
}

TEST_F(ExpertReplicaLoadTest, RefusesBadReplicas) {
  auto refused = [&](const std::function<void(placement::PlacementPlan*)>& edit, const std::string& why) {
    placement::PlacementPlan p = plan_;
    edit(&p);
    auto o = LoadOptionsFor(p, 1, config_);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << why;
    return o.ok() ? std::string() : std::string(o.status().message());
  };
  auto add = [](int index, int32_t layer, int32_t expert) {
    return [=](placement::PlacementPlan* p) {
      placement::ExpertReplica* r = p->mutable_ranks(index)->add_replicas();
      r->set_layer(layer);
      r->set_expert(expert);
    };
  };
  EXPECT_NE(refused(add(0, 0, 9), "dense layer").find("not in a MoE layer"), std::string::npos);
  EXPECT_NE(refused(add(0, 1, 16), "no such expert").find("names no expert"), std::string::npos);
  EXPECT_NE(refused(add(0, 1, 3), "own expert").find("duplicates an expert the rank owns"), std::string::npos);
  EXPECT_NE(refused(add(0, 1, 8), "twice").find("listed twice"), std::string::npos);
  EXPECT_NE(refused(add(1, 1, 9), "rank 2's own, on rank 2").find("holds an expert both"), std::string::npos);
  refused([](placement::PlacementPlan* p) { p->set_expert_layout("expert-tensor-parallel"); }, "etp");
}

}  // namespace
}  // namespace glm::runtime
