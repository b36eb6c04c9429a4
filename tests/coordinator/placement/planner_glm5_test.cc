// The real GLM-5 shape (78 layers, 256 experts top-8, FP8) on realistic hosts: memory per rank,
// predicted time per token, stage split, and refusal when it does not fit.
#include <algorithm>
#include <numeric>

#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/planner.h"
#include "gtest/gtest.h"
#include "numa/topology.h"
#include "shard_worker/model/synth_checkpoint.h"
#include "tests/coordinator/placement/expected_bytes.h"

namespace glm::placement {
namespace {

constexpr double kGib = 1024.0 * 1024.0 * 1024.0;

model::ModelConfig Glm5() {
  auto preset = model::SynthPresetByName("glm5");
  EXPECT_TRUE(preset.ok()) << preset.status();
  return preset->config;
}

HostTopology SyntheticHost(const std::string& name, const std::string& desc, double numa_gib) {
  auto topo = numa::Topology::FromSynthetic(desc, numa_gib);
  EXPECT_TRUE(topo.ok()) << topo.status();
  return (*topo)->ToProto(name);
}

double StageMs(const PlacementPlan& plan, int stage) {
  double ms = 0;
  for (const RankAssignment& r : plan.ranks())
    if (r.stage() == stage) ms = std::max(ms, r.predicted_ms_per_token());
  return ms;
}

TEST(PlannerGlm5Test, TwoSocketsTwoNodesEachHoldAQuarterEach) {
  const model::ModelConfig c = Glm5();
  // 4 NUMA nodes of 16 cores and 256 GiB: 921 GiB usable for ~700 GiB of FP8 weights.
  const HostTopology host = SyntheticHost("big0", "pack:2 numa:2 core:16", 256);
  PlannerOptions options;
  options.model_name = "GLM-5";
  auto plan = Plan(c, OnePerNumaNode({host}), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, c, 5).ok()) << ValidatePlan(*plan, c, 5);
  ASSERT_EQ(plan->stages_size(), 1);  // one host -> one stage
  EXPECT_EQ(plan->stages(0).layer_begin(), 0);
  EXPECT_EQ(plan->stages(0).layer_end(), 78);
  ASSERT_EQ(plan->ranks_size(), 4);

  // Every slice divides evenly here (16 heads, 64 experts, 3072/512 FP8-aligned columns, 38720
  // vocabulary rows each), so a rank holds exactly the replicated parts plus a quarter of the rest.
  const testing::ModelBytes bytes = testing::CountModelBytes(c);
  EXPECT_GT(bytes.total, static_cast<int64_t>(650 * kGib));  // ~744B parameters in FP8
  EXPECT_LT(bytes.total, static_cast<int64_t>(750 * kGib));
  const int64_t per_rank = bytes.replicated + (bytes.total - bytes.replicated) / 4;
  const int64_t expert = testing::ExpertBytes(c);
  for (const RankAssignment& r : plan->ranks()) {
    SCOPED_TRACE(r.rank());
    EXPECT_EQ(r.weight_bytes(), per_rank);
    EXPECT_EQ(r.experts_size(), 64);
    EXPECT_EQ(r.head_end() - r.head_begin(), 16);
    EXPECT_EQ(r.memory_budget_bytes(), static_cast<int64_t>(256 * kGib * 0.9));
    EXPECT_EQ(r.cores(), 16);
    // 16 cores x 8 GB/s = 128, capped at the node estimate.
    EXPECT_DOUBLE_EQ(r.bandwidth_gbps(), kEstimatedMaxNodeGbps);
    EXPECT_NEAR(r.predicted_ms_per_token(), r.decode_bytes_per_token() / (kEstimatedMaxNodeGbps * 1e6), 1e-9);
    // Reads per token: at least its quarter of the active experts (75 MoE layers x 8 x 1/4),
    // at most that plus everything it holds outside the routed experts.
    const int64_t active_experts = 75 * 2 * expert;
    EXPECT_GT(r.decode_bytes_per_token(), active_experts);
    EXPECT_LT(r.decode_bytes_per_token(), active_experts + (r.weight_bytes() - 76 * 64 * expert));
    // Latent cache (512 + 64) plus indexer key (128) per layer, f32, MTP layer included.
    EXPECT_EQ(r.kv_bytes_per_token(), 79 * (512 + 64 + 128) * 4);
  }
  // One stage: the slowest rank plus its hand-off and 2 all-reduces per layer + 1 for the head.
  const double comm = kStageHandoffMs + kAllReduceMsInHost * (2 * 78 + 1);
  EXPECT_NEAR(plan->communication_ms_per_token(), comm, 1e-9);
  EXPECT_NEAR(plan->predicted_ms_per_token(), StageMs(*plan, 0) + comm, 1e-9);
  EXPECT_NEAR(plan->predicted_tokens_per_s(), 1000.0 / plan->predicted_ms_per_token(), 1e-9);
  EXPECT_GE(plan->slowest_rank(), 1);
  EXPECT_LE(plan->slowest_rank(), 4);
  std::printf("GLM-5 on 2 sockets x 2 NUMA: %.2f GiB/rank, decode %.2f GiB/token/rank, %.2f ms/token, %.2f tok/s\n",
              plan->ranks(0).weight_bytes() / kGib, plan->ranks(0).decode_bytes_per_token() / kGib,
              plan->predicted_ms_per_token(), plan->predicted_tokens_per_s());
}

TEST(PlannerGlm5Test, ExpertTensorParallelHoldsAndReadsTheSameBytes) {
  const model::ModelConfig c = Glm5();
  const HostTopology host = SyntheticHost("big0", "pack:2 numa:2 core:16", 256);
  PlannerOptions ep, etp;
  etp.expert_layout = "expert-tensor-parallel";
  auto a = Plan(c, OnePerNumaNode({host}), ep);
  auto b = Plan(c, OnePerNumaNode({host}), etp);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(ValidatePlan(*b, c, 5).ok()) << ValidatePlan(*b, c, 5);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(b->ranks(i).experts_size(), 256);
    EXPECT_EQ(b->ranks(i).expert_slice_begin(), 512 * i);
    EXPECT_EQ(b->ranks(i).expert_slice_end(), 512 * (i + 1));
    EXPECT_EQ(b->ranks(i).weight_bytes(), a->ranks(i).weight_bytes());
    EXPECT_EQ(b->ranks(i).decode_bytes_per_token(), a->ranks(i).decode_bytes_per_token());
  }
}

TEST(PlannerGlm5Test, FourHostsFourStagesOfTwo) {
  const model::ModelConfig c = Glm5();
  std::vector<HostTopology> hosts;
  for (int h = 0; h < 4; ++h)
    hosts.push_back(SyntheticHost("node" + std::to_string(h), "pack:2 numa:1 core:24", 128));
  PlannerOptions options;
  auto plan = Plan(c, OnePerNumaNode(hosts), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, c, 9).ok()) << ValidatePlan(*plan, c, 9);
  ASSERT_EQ(plan->stages_size(), 4);  // one per host
  int64_t layer = 0;
  for (int s = 0; s < 4; ++s) {
    const Stage& st = plan->stages(s);
    EXPECT_EQ(st.layer_begin(), layer);
    EXPECT_GE(st.layer_end() - st.layer_begin(), 16) << "stage " << s;
    EXPECT_LE(st.layer_end() - st.layer_begin(), 23) << "stage " << s;
    layer = st.layer_end();
    ASSERT_EQ(st.ranks_size(), 2);
    EXPECT_EQ(st.ranks(0), 2 * s + 1);
    EXPECT_EQ(st.ranks(1), 2 * s + 2);
    for (int32_t k : st.ranks()) EXPECT_EQ(plan->ranks(k - 1).host(), "node" + std::to_string(s));
  }
  EXPECT_EQ(layer, 78);
  // The split balances the stages' time: none more than 10% above the mean.
  double sum = 0, worst = 0;
  for (int s = 0; s < 4; ++s) {
    sum += StageMs(*plan, s);
    worst = std::max(worst, StageMs(*plan, s));
  }
  EXPECT_LT(worst, 1.10 * sum / 4);
  // Memory: about an eighth of the model each, all within the 115.2 GiB budget.
  const double eighth = testing::CountModelBytes(c).total / 8.0;
  for (const RankAssignment& r : plan->ranks()) {
    EXPECT_GT(r.weight_bytes(), 0.85 * eighth) << r.rank();
    EXPECT_LT(r.weight_bytes(), 1.15 * eighth) << r.rank();
    EXPECT_LE(r.weight_bytes(), r.memory_budget_bytes());
    EXPECT_EQ(r.experts_size(), 128);
  }
  // Stage hand-offs plus the in-host all-reduces of each two-rank stage.
  const double comm = 4 * kStageHandoffMs + kAllReduceMsInHost * (2 * 78 + 1);
  EXPECT_NEAR(plan->communication_ms_per_token(), comm, 1e-9);
  EXPECT_NEAR(plan->predicted_ms_per_token(), sum + comm, 1e-9);
  std::printf("GLM-5 on 4 hosts x 2 NUMA: ");
  for (const RankAssignment& r : plan->ranks()) std::printf("r%d %.1f GiB %.2f ms; ", r.rank(), r.weight_bytes() / kGib,
                                                            r.predicted_ms_per_token());
  std::printf("\n  stages:");
  for (const Stage& st : plan->stages()) std::printf(" [%d,%d)", st.layer_begin(), st.layer_end());
  std::printf("  total %.2f ms/token, %.2f tok/s\n", plan->predicted_ms_per_token(), plan->predicted_tokens_per_s());
}

TEST(PlannerGlm5Test, RefusesWhatDoesNotFitWithTheNumbers) {
  const model::ModelConfig c = Glm5();
  // 4 x 64 GiB cannot hold ~700 GiB.
  const HostTopology host = SyntheticHost("small0", "pack:2 numa:2 core:16", 64);
  auto plan = Plan(c, OnePerNumaNode({host}), PlannerOptions{});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(plan.status().message());
  EXPECT_NE(msg.find("rank 1 "), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs "), std::string::npos) << msg;
  EXPECT_NE(msg.find("budget 57.6 GiB"), std::string::npos) << msg;

  // An explicit budget replaces the node's, and the KV reserve counts on top of the weights.
  const HostTopology big = SyntheticHost("big0", "pack:2 numa:2 core:16", 256);
  PlannerOptions options;
  options.memory_budget_gib = 200;
  options.kv_cache_gib = 40;
  auto tight = Plan(c, OnePerNumaNode({big}), options);
  ASSERT_FALSE(tight.ok());
  EXPECT_NE(tight.status().message().find("KV reserve 40.0 GiB"), std::string::npos) << tight.status();
  EXPECT_NE(tight.status().message().find("budget 200.0 GiB"), std::string::npos) << tight.status();
  options.kv_cache_gib = 4;
  auto fits = Plan(c, OnePerNumaNode({big}), options);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->ranks(0).kv_reserve_bytes(), static_cast<int64_t>(4 * kGib));
}

TEST(PlannerGlm5Test, Int4AndAnExpertBudgetFitWhatStoredFp8DoesNot) {
  const model::ModelConfig c = Glm5();
  const HostTopology big = SyntheticHost("big0", "pack:2 numa:2 core:16", 256);
  auto stored = Plan(c, OnePerNumaNode({big}), PlannerOptions{});
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->weight_dtype(), "stored");
  PlannerOptions int4;
  int4.weight_dtype = "int4";
  auto q4 = Plan(c, OnePerNumaNode({big}), int4);
  ASSERT_TRUE(q4.ok()) << q4.status();
  // The experts (~97% of the bytes) go from FP8 (1 byte + a scale per 128x128 block) to
  // 0.5 + 2/32 bytes a weight; attention and the rest stay FP8.
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_LT(q4->ranks(i).weight_bytes(), 0.63 * stored->ranks(i).weight_bytes());  // ~0.59
    EXPECT_GT(q4->ranks(i).weight_bytes(), 0.55 * stored->ranks(i).weight_bytes());
    // Per token the active experts are a smaller share (attention, kv_b_proj's W_uv rows, the
    // W_uk copy and the lm_head rows are read whole), so decode gains less.
    EXPECT_LT(q4->ranks(i).decode_bytes_per_token(), 0.9 * stored->ranks(i).decode_bytes_per_token());
  }
  // int8 in groups of 64 costs 2/64 bytes of scales a weight: more than block FP8's.
  PlannerOptions int8;
  int8.weight_dtype = "int8";
  auto q8 = Plan(c, OnePerNumaNode({big}), int8);
  ASSERT_TRUE(q8.ok()) << q8.status();
  EXPECT_GT(q8->ranks(0).weight_bytes(), stored->ranks(0).weight_bytes());
  EXPECT_LT(q8->ranks(0).weight_bytes(), 1.07 * stored->ranks(0).weight_bytes());

  // 4 x 64 GiB nodes (57.6 GiB budgets) cannot hold ~175 GiB a rank, not even in int4...
  const HostTopology small = SyntheticHost("small0", "pack:2 numa:2 core:16", 64);
  EXPECT_EQ(Plan(c, OnePerNumaNode({small}), int4).status().code(), absl::StatusCode::kResourceExhausted);
  // ... but with 16 GiB of routed experts per rank in memory and the rest streamed from disk,
  // a model more than twice the budget fits.
  PlannerOptions streaming;
  streaming.expert_memory_gib = 16;
  auto plan = Plan(c, OnePerNumaNode({small}), streaming);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const RankAssignment& r : plan->ranks()) {
    SCOPED_TRACE(r.rank());
    EXPECT_EQ(r.expert_memory_bytes(), static_cast<int64_t>(16 * kGib));
    EXPECT_LE(r.weight_bytes(), r.memory_budget_bytes());
    EXPECT_GT(r.weight_bytes() + r.streamed_expert_bytes(), 2 * r.memory_budget_bytes());
    EXPECT_EQ(r.weight_bytes() + r.streamed_expert_bytes(), stored->ranks(r.rank() - 1).weight_bytes());
  }
  EXPECT_NE(PlanToTable(*plan).find("routed experts beyond 16.0 GiB per rank stay on disk"), std::string::npos)
      << PlanToTable(*plan);
}

TEST(PlannerGlm5Test, MeasuredBandwidthAndSharedNodes) {
  const model::ModelConfig c = Glm5();
  HostTopology host = SyntheticHost("big0", "pack:2 numa:2 core:16", 512);
  for (auto& n : *host.mutable_numa_nodes()) n.set_bandwidth_gbps(200);
  // Two ranks on each of nodes 0 and 1 of the same host: they split the node's bandwidth,
  // cores and memory.
  std::vector<WorkerSlot> slots(4);
  for (int i = 0; i < 4; ++i) {
    slots[i].host = host;
    slots[i].numa_node = i / 2;
  }
  auto plan = Plan(c, slots, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const RankAssignment& r : plan->ranks()) {
    EXPECT_DOUBLE_EQ(r.bandwidth_gbps(), 100.0);
    EXPECT_EQ(r.cores(), 8);
    EXPECT_EQ(r.memory_budget_bytes(), static_cast<int64_t>(512 * kGib * 0.9 / 2));
    EXPECT_NEAR(r.predicted_ms_per_token(), r.decode_bytes_per_token() / 100e6, 1e-9);
  }
}

}  // namespace
}  // namespace glm::placement
