// The fixture models in every layout the engine runs: 1 worker; 2 and 3 workers in one stage;
// 2 stages of 2; 4 stages of 1. Checks the slices the engine relies on.
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/weight_format.h"
#include "gtest/gtest.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "tests/coordinator/placement/expected_bytes.h"

namespace glm::placement {
namespace {

constexpr int64_t kGib = int64_t{1} << 30;

HostTopology Host(const std::string& name, int nodes) {
  HostTopology h;
  h.set_hostname(name);
  h.set_packages(1);
  for (int i = 0; i < nodes; ++i) {
    NumaNode* n = h.add_numa_nodes();
    n->set_os_index(i);
    n->set_cores(8);
    n->set_pus(16);
    n->set_memory_bytes(16 * kGib);
  }
  return h;
}

struct Layout {
  const char* name;
  int hosts;
  int nodes_per_host;
  int stages;  // 0 = one per host
  int expect_stages;
};

const Layout kLayouts[] = {
    {"1 worker", 1, 1, 0, 1},
    {"2 workers 1 stage", 1, 2, 0, 1},
    {"3 workers 1 stage", 1, 3, 0, 1},
    {"2 stages x 2", 2, 2, 0, 2},
    {"4 stages x 1", 1, 4, 4, 4},
};

const char* const kModels[] = {
    GLM_TEST_FIXTURES_DIR "/glm5-random-sparse/config.json",
    GLM_TEST_FIXTURES_DIR "/glm5-random-fp8/config.json",
    GLM_MODELS_DIR "/glm5-tiny-code/config.json",
};

absl::StatusOr<PlacementPlan> PlanLayout(const model::ModelConfig& c, const Layout& l) {
  std::vector<HostTopology> hosts;
  for (int h = 0; h < l.hosts; ++h) hosts.push_back(Host("h" + std::to_string(h), l.nodes_per_host));
  PlannerOptions options;
  options.stages = l.stages;
  return Plan(c, OnePerNumaNode(hosts), options);
}

TEST(PlannerLayoutTest, FixtureModelsInEveryLayout) {
  for (const char* path : kModels) {
    auto c = model::ModelConfig::FromFile(path);
    ASSERT_TRUE(c.ok()) << c.status();
    for (const Layout& l : kLayouts) {
      SCOPED_TRACE(std::string(path) + ": " + l.name);
      auto plan = PlanLayout(*c, l);
      ASSERT_TRUE(plan.ok()) << plan.status();
      const int workers = l.hosts * l.nodes_per_host;
      EXPECT_EQ(plan->world_size(), workers + 1);
      ASSERT_TRUE(ValidatePlan(*plan, *c, workers + 1).ok()) << ValidatePlan(*plan, *c, workers + 1);
      ASSERT_EQ(plan->stages_size(), l.expect_stages);
      const Stage& last = plan->stages(plan->stages_size() - 1);
      EXPECT_TRUE(plan->stages(0).has_embedding());
      EXPECT_TRUE(last.has_head());
      EXPECT_EQ(last.layer_end(), c->num_hidden_layers);
      int next_rank = 1;
      for (const Stage& st : plan->stages()) {
        EXPECT_GE(st.layer_end() - st.layer_begin(), 1);
        const int p = st.ranks_size();
        EXPECT_EQ(p, workers / l.expect_stages + (st.index() < workers % l.expect_stages ? 1 : 0));
        std::set<int32_t> experts;
        int64_t heads = 0, vocab = 0;
        for (int i = 0; i < p; ++i) {
          EXPECT_EQ(st.ranks(i), next_rank++);
          const RankAssignment& r = plan->ranks(st.ranks(i) - 1);
          EXPECT_EQ(r.rank(), st.ranks(i));
          EXPECT_EQ(r.tp_index(), i);
          EXPECT_EQ(r.tp_size(), p);
          // Head counts differ by at most one, earlier ranks first.
          const int64_t h = r.head_end() - r.head_begin();
          EXPECT_EQ(h, c->num_attention_heads / p + (i < c->num_attention_heads % p ? 1 : 0));
          heads += h;
          // Experts [E*i/P, E*(i+1)/P).
          ASSERT_EQ(r.experts_size(), c->n_routed_experts * (i + 1) / p - c->n_routed_experts * i / p);
          EXPECT_EQ(r.experts(0), c->n_routed_experts * i / p);
          experts.insert(r.experts().begin(), r.experts().end());
          if (st.has_head()) {
            vocab += r.vocab_end() - r.vocab_begin();
          } else {
            EXPECT_EQ(r.vocab_end(), 0);
          }
          if (p == 1) {
            EXPECT_EQ(r.dense_end(), c->intermediate_size);
            EXPECT_EQ(r.shared_end(), c->moe_intermediate_size * c->n_shared_experts);
          }
          EXPECT_GT(r.weight_bytes(), 0);
          EXPECT_GT(r.predicted_ms_per_token(), 0);
        }
        EXPECT_EQ(heads, c->num_attention_heads);
        EXPECT_EQ(static_cast<int64_t>(experts.size()), c->n_routed_experts);
        if (st.has_head()) {
          EXPECT_EQ(vocab, c->vocab_size);
        }
      }
    }
  }
}

TEST(PlannerLayoutTest, OneWorkerHoldsAndReadsExactlyTheModel) {
  for (const char* path : kModels) {
    SCOPED_TRACE(path);
    auto c = model::ModelConfig::FromFile(path);
    ASSERT_TRUE(c.ok()) << c.status();
    auto plan = PlanLayout(*c, kLayouts[0]);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const RankAssignment& r = plan->ranks(0);
    const testing::ModelBytes bytes = testing::CountModelBytes(*c);
    EXPECT_EQ(r.weight_bytes(), bytes.total);
    // Per token: everything but the embedding table (one row), the MTP layer, the routed experts
    // the router does not pick, and kv_b_proj's stored W_uk rows.
    int64_t embedding = 0, mtp = 0, kv_b_unread = 0;
    for (const auto& [name, t] : model::ExpectedTensors(*c)) {
      if (t.optional) continue;
      if (name == "model.embed_tokens.weight") embedding = testing::LoadedBytes(*c, name, t);
      if (model::TensorLayer(name) == c->num_hidden_layers) mtp += testing::LoadedBytes(*c, name, t);
      else if (testing::Contains(name, "kv_b_proj")) kv_b_unread += testing::KvBUnreadBytes(*c, t);
    }
    int64_t moe_layers = 0;
    for (auto k : c->mlp_layer_types) moe_layers += k == model::MlpKind::kSparse;
    const int64_t unread_experts =
        moe_layers * (c->n_routed_experts - c->num_experts_per_tok) * testing::ExpertBytes(*c);
    EXPECT_EQ(r.decode_bytes_per_token(),
              bytes.total - embedding + 2 * c->hidden_size - mtp - unread_experts - kv_b_unread);
    EXPECT_EQ(r.head_begin(), 0);
    EXPECT_EQ(r.head_end(), c->num_attention_heads);
    EXPECT_EQ(r.vocab_end(), c->vocab_size);
  }
}

TEST(PlannerLayoutTest, Fp8SlicesKeepBlocksWholeWhenTheyCan) {
  auto c = model::ModelConfig::FromFile(GLM_TEST_FIXTURES_DIR "/glm5-random-fp8/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  auto two = PlanLayout(*c, kLayouts[1]);
  ASSERT_TRUE(two.ok()) << two.status();
  // intermediate 520: the block edge nearest 260 is 256; shared 144: 128.
  EXPECT_EQ(two->ranks(0).dense_end(), 256);
  EXPECT_EQ(two->ranks(1).dense_begin(), 256);
  EXPECT_EQ(two->ranks(0).shared_end(), 128);
  auto three = PlanLayout(*c, kLayouts[2]);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->ranks(1).dense_begin(), 128);
  EXPECT_EQ(three->ranks(1).dense_end(), 384);
  // 2 blocks cannot feed 3 ranks: plain balanced 48 each.
  EXPECT_EQ(three->ranks(1).shared_begin(), 48);
  EXPECT_EQ(three->ranks(1).shared_end(), 96);
  // 5 heads over 3 ranks: 2, 2, 1; 8 experts: [0,2) [2,5) [5,8).
  EXPECT_EQ(three->ranks(2).head_begin(), 4);
  EXPECT_EQ(three->ranks(1).experts(0), 2);
  EXPECT_EQ(three->ranks(1).experts_size(), 3);
  // A BF16 model splits plainly.
  auto sparse = model::ModelConfig::FromFile(GLM_TEST_FIXTURES_DIR "/glm5-random-sparse/config.json");
  ASSERT_TRUE(sparse.ok()) << sparse.status();
  auto bf16 = PlanLayout(*sparse, kLayouts[2]);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->ranks(0).dense_end(), 107);  // 320 = 107 + 107 + 106
}

TEST(PlannerLayoutTest, RejectsImpossibleRequests) {
  auto c = model::ModelConfig::FromFile(GLM_TEST_FIXTURES_DIR "/glm5-random-fp8/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  PlannerOptions options;
  EXPECT_EQ(Plan(*c, {}, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.stages = 5;  // 4 layers
  EXPECT_EQ(Plan(*c, OnePerNumaNode({Host("h", 8)}), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.stages = 3;  // 2 workers
  EXPECT_EQ(Plan(*c, OnePerNumaNode({Host("h", 2)}), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.stages = 1;  // 6 ranks for 5 heads
  auto too_wide = Plan(*c, OnePerNumaNode({Host("h", 6)}), options);
  EXPECT_EQ(too_wide.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_wide.status().message().find("attention heads"), std::string::npos) << too_wide.status();
  options.stages = -1;  // was taken for 0 (one stage per host)
  auto negative = Plan(*c, OnePerNumaNode({Host("h", 2)}), options);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("--stages"), std::string::npos) << negative.status();
  options.stages = 0;
  options.expert_layout = "expert-sharded";
  EXPECT_EQ(Plan(*c, OnePerNumaNode({Host("h", 2)}), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.expert_layout = "expert-parallel";
  std::vector<WorkerSlot> bad = OnePerNumaNode({Host("h", 1)});
  bad[0].numa_node = 7;
  auto no_node = Plan(*c, bad, options);
  EXPECT_NE(no_node.status().message().find("os index 7"), std::string::npos) << no_node.status();
}

// Bytes of a [rows, cols] matrix re-quantised to int8 / int4 with one f16 scale per `group`
// columns of a row (<= 0: per row): int8 1 + 2/G bytes a weight, int4 0.5 + 2/G (32-column
// blocks of 16 bytes).
int64_t RequantisedBytes(int64_t rows, int64_t cols, int bits, int64_t group) {
  const int64_t packed = bits == 8 ? cols : (cols + 31) / 32 * 16;
  const int64_t groups = group <= 0 ? 1 : (cols + group - 1) / group;
  return rows * (packed + 2 * groups);
}

TEST(PlannerLayoutTest, RequantisedWeightsCountPackedBytesAndGroupScales) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");  // BF16
  ASSERT_TRUE(c.ok()) << c.status();
  auto one_worker = [&](const std::string& dtype, const std::string& scope) {
    PlannerOptions options;
    options.weight_dtype = dtype;
    options.quantize_scope = scope;
    return Plan(*c, OnePerNumaNode({Host("h", 1)}), options);
  };
  auto stored = one_worker("stored", "experts");
  ASSERT_TRUE(stored.ok()) << stored.status();
  const int64_t stored_bytes = testing::CountModelBytes(*c).total;
  ASSERT_EQ(stored->ranks(0).weight_bytes(), stored_bytes);
  EXPECT_EQ(stored->weight_dtype(), "stored");
  EXPECT_EQ(stored->quantize_scope(), "experts");

  struct Case {
    const char* dtype;
    const char* scope;
    int bits;
    int64_t group;
  };
  int64_t int8_bytes = 0, int4_bytes = 0;
  for (const Case& k : {Case{"int8", "experts", 8, 64}, Case{"int4", "experts", 4, 32}, Case{"int8-row", "experts", 8, 0},
                        Case{"int8-g128", "experts", 8, 128}, Case{"int8", "all", 8, 64}, Case{"int4-g64", "all", 4, 64},
                        Case{"int4", "mtp", 4, 32}, Case{"int8", "mtp", 8, 64}}) {
    SCOPED_TRACE(std::string(k.dtype) + " " + k.scope);
    auto plan = one_worker(k.dtype, k.scope);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->weight_dtype(), k.dtype);
    EXPECT_EQ(plan->quantize_scope(), k.scope);
    // Independently: every matrix the loader re-quantises, by name. Scope "experts": the routed
    // and shared experts; "all": every matrix but kv_b_proj (kept as stored), the router and the
    // main embedding and lm_head; "mtp": what "all" takes of the MTP layer (its embedding and head
    // included), nothing else.
    const bool all = std::string(k.scope) == "all", mtp = std::string(k.scope) == "mtp";
    const std::string mtp_prefix = "model.layers." + std::to_string(c->num_hidden_layers) + ".";
    int64_t expected = stored_bytes;
    for (const auto& [name, t] : model::ExpectedTensors(*c)) {
      if (t.optional || t.role == model::TensorRole::kVector) continue;
      const bool expert = testing::Contains(name, ".experts.") || testing::Contains(name, ".shared_experts.");
      const bool other = !testing::Contains(name, "kv_b_proj") && !testing::Contains(name, "mlp.gate.weight") &&
                         name != "model.embed_tokens.weight" && name != "lm_head.weight";
      const bool in_mtp_layer = name.rfind(mtp_prefix, 0) == 0;
      if (mtp ? !(in_mtp_layer && (expert || other)) : !expert && !(all && other)) continue;
      expected += RequantisedBytes(t.shape[0], t.shape[1], k.bits, k.group) - testing::LoadedBytes(*c, name, t);
    }
    const RankAssignment& r = plan->ranks(0);
    EXPECT_EQ(r.weight_bytes(), expected);
    EXPECT_LT(r.weight_bytes(), stored_bytes);
    if (mtp) {
      // The main model's decode reads are untouched; only drafts get cheaper.
      EXPECT_EQ(r.decode_bytes_per_token(), stored->ranks(0).decode_bytes_per_token());
      const CostModel stored_cost(*c, *ParseWeightFormat("stored", "experts", *c));
      const CostModel mtp_cost(*c, *ParseWeightFormat(k.dtype, "mtp", *c));
      // BF16 -> int8 (1 + 2/64 bytes a weight) or int4 (0.5 + 2/32); norms and W_uk^T stay.
      EXPECT_LT(mtp_cost.MtpDraft(r).decode_bytes, (k.bits == 4 ? 0.35 : 0.6) * stored_cost.MtpDraft(r).decode_bytes);
      EXPECT_EQ(mtp_cost.RoutedExpertBytes(), stored_cost.RoutedExpertBytes());
      continue;
    }
    EXPECT_LT(r.decode_bytes_per_token(), stored->ranks(0).decode_bytes_per_token());
    EXPECT_LT(r.predicted_ms_per_token(), stored->ranks(0).predicted_ms_per_token());
    if (!all && k.group == 64) int8_bytes = r.weight_bytes();
    if (!all && k.bits == 4) int4_bytes = r.weight_bytes();
  }
  EXPECT_LT(int4_bytes, int8_bytes);

  // bf16 on a BF16 checkpoint changes nothing; f32 doubles every matrix (norms are f32 already).
  auto bf16 = one_worker("bf16", "experts");
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->ranks(0).weight_bytes(), stored_bytes);
  auto f32 = one_worker("f32", "experts");
  ASSERT_TRUE(f32.ok()) << f32.status();
  EXPECT_GT(f32->ranks(0).weight_bytes(), stored_bytes);

  for (const auto& [dtype, scope, why] :
       {std::tuple{"int9", "experts", "weight dtype 'int9' is not one of"},
        std::tuple{"int8", "routers", "quantize scope 'routers'"},
        std::tuple{"int8-g48", "experts", "multiple of 32"},
        std::tuple{"bf16", "mtp", "converts every matrix"}}) {
    auto bad = one_worker(dtype, scope);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << dtype << " " << scope;
    EXPECT_NE(bad.status().message().find(why), std::string::npos) << bad.status();
  }
  PlannerOptions both;
  both.weight_bytes_per_param = 1;
  both.weight_dtype = "int8";
  EXPECT_EQ(Plan(*c, OnePerNumaNode({Host("h", 1)}), both).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PlannerLayoutTest, ExpertMemoryBudgetLeavesRoutedExpertsOnDisk) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<WorkerSlot> two = OnePerNumaNode({Host("h", 2)});
  auto resident = Plan(*c, two, PlannerOptions{});
  ASSERT_TRUE(resident.ok()) << resident.status();
  // Each rank's routed experts: its 8 of 16 in every MoE layer, the MTP layer's included.
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < c->num_weight_layers(); ++l) moe_layers += c->mlp_kind(l) == model::MlpKind::kSparse;
  const int64_t routed = moe_layers * 8 * testing::ExpertBytes(*c);
  const int64_t full = resident->ranks(0).weight_bytes();
  ASSERT_GT(full, routed);

  // A memory budget below what a rank holds is refused...
  PlannerOptions tight;
  tight.memory_budget_gib = static_cast<double>(full - routed / 4) / kGib;
  auto refused = Plan(*c, two, tight);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("--expert-memory-gib"), std::string::npos) << refused.status();
  // ... and fits once routed experts beyond half of them stay on disk: only the cache counts.
  tight.expert_memory_gib = static_cast<double>(routed / 2) / kGib;
  auto streamed = Plan(*c, two, tight);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  const int64_t cap = static_cast<int64_t>(tight.expert_memory_gib * kGib);
  for (const RankAssignment& r : streamed->ranks()) {
    SCOPED_TRACE(r.rank());
    EXPECT_EQ(r.expert_memory_bytes(), cap);
    EXPECT_EQ(r.streamed_expert_bytes(), routed - cap);
    EXPECT_EQ(r.weight_bytes(), full - routed + cap);
    EXPECT_LE(r.weight_bytes(), r.memory_budget_bytes());
    // The active experts are read per token all the same (from the cache or the disk).
    EXPECT_EQ(r.decode_bytes_per_token(), resident->ranks(r.rank() - 1).decode_bytes_per_token());
  }
  const std::string table = PlanToTable(*streamed);
  EXPECT_NE(table.find("routed experts beyond"), std::string::npos) << table;
  EXPECT_NE(table.find("stay on disk"), std::string::npos) << table;

  // A budget the experts fit in changes nothing but the field.
  PlannerOptions roomy;
  roomy.expert_memory_gib = 1;
  auto all_resident = Plan(*c, two, roomy);
  ASSERT_TRUE(all_resident.ok()) << all_resident.status();
  EXPECT_EQ(all_resident->ranks(0).weight_bytes(), full);
  EXPECT_EQ(all_resident->ranks(0).streamed_expert_bytes(), 0);
  EXPECT_EQ(all_resident->ranks(0).expert_memory_bytes(), kGib);
  EXPECT_NE(PlanToTable(*all_resident).find("all resident"), std::string::npos);

  PlannerOptions negative;
  negative.expert_memory_gib = -1;
  EXPECT_EQ(Plan(*c, two, negative).status().code(), absl::StatusCode::kInvalidArgument);
}

// GiB options out of range: cast to bytes, inf / nan / 1e30 were undefined and came out as
// INT64_MIN budgets and KV reserves. Each is refused with the flag that sets it.
TEST(PlannerLayoutTest, NonFiniteOrHugeGibOptionsAreRefused) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<WorkerSlot> two = OnePerNumaNode({Host("h", 2)});
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  struct Case {
    double PlannerOptions::*field;
    double value;
    const char* message;
  };
  const Case cases[] = {
      {&PlannerOptions::kv_cache_gib, inf, "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got inf"},
      {&PlannerOptions::kv_cache_gib, nan, "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got nan"},
      {&PlannerOptions::kv_cache_gib, -1, "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got -1"},
      {&PlannerOptions::expert_memory_gib, 1e30,
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), got "
       "1e+30"},
      {&PlannerOptions::expert_memory_gib, inf,
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), got "
       "inf"},
      {&PlannerOptions::memory_budget_gib, 1e30,
       "--memory-budget-gib must be a finite number of GiB from 0 to 1048576 (0 = 90% of the NUMA node's share), "
       "got 1e+30"},
      {&PlannerOptions::memory_budget_gib, nan,
       "--memory-budget-gib must be a finite number of GiB from 0 to 1048576 (0 = 90% of the NUMA node's share), "
       "got nan"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.message);
    PlannerOptions o;
    o.*k.field = k.value;
    auto plan = Plan(*c, two, o);
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(plan.status().message(), k.message);
  }
  // The largest accepted values give exact byte counts (on nodes that have that memory).
  std::vector<WorkerSlot> huge = two;
  for (WorkerSlot& w : huge)
    for (NumaNode& n : *w.host.mutable_numa_nodes()) n.set_memory_bytes(int64_t{1} << 51);
  PlannerOptions big;
  big.memory_budget_gib = 1 << 20;
  big.kv_cache_gib = 1 << 19;
  big.expert_memory_gib = 1 << 20;
  auto plan = Plan(*c, huge, big);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->ranks(0).memory_budget_bytes(), int64_t{1} << 50);
  EXPECT_EQ(plan->ranks(0).kv_reserve_bytes(), int64_t{1} << 49);
  EXPECT_EQ(plan->ranks(0).expert_memory_bytes(), int64_t{1} << 50);
}

// A worker's topology that reports an infinite bandwidth would predict 0 ms/token.
TEST(PlannerLayoutTest, NonFiniteNodeBandwidthIsRefused) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  HostTopology h = Host("h", 2);
  h.mutable_numa_nodes(1)->set_bandwidth_gbps(std::numeric_limits<double>::infinity());
  auto plan = Plan(*c, OnePerNumaNode({h}), PlannerOptions{});
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(), "worker rank 2: host 'h' NUMA node 1 reports bandwidth inf GB/s");
}

// `mpirun --map-by node` over a hostfile (deploy/launch.sh) deals ranks round robin: 1 and 3 on
// host a, 2 and 4 on host b. The stages are filled host by host, so each stage's
// tensor-parallel all-reduces stay inside one host (they were ranks 1-2 and 3-4: both stages
// across the network).
// Stage sizes that differ (6 ranks, 4 stages: two of 2, two of 1) are dealt so no stage spans
// two hosts when one need not: 2,1 | 2,1 over hosts of 3 ranks, not 2,2,1,1 (whose second stage
// took host a's last rank and host b's first, its all-reduces across the network).
TEST(PlannerLayoutTest, UnevenStagesStayWithinAHost) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  PlannerOptions options;
  options.stages = 4;
  auto plan = Plan(*c, OnePerNumaNode({Host("a", 3), Host("b", 3)}), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, *c, 7).ok()) << ValidatePlan(*plan, *c, 7);
  std::vector<int> sizes;
  for (const Stage& st : plan->stages()) {
    sizes.push_back(st.ranks_size());
    std::set<std::string> hosts;
    for (int32_t rank : st.ranks()) hosts.insert(plan->ranks(rank - 1).host());
    EXPECT_EQ(hosts.size(), 1u) << "stage " << st.index();
  }
  EXPECT_EQ(sizes, (std::vector<int>{2, 1, 2, 1}));
}

TEST(PlannerLayoutTest, InterleavedHostsFillStagesHostByHost) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const HostTopology a = Host("a", 2), b = Host("b", 2);
  std::vector<WorkerSlot> workers;
  for (int i = 0; i < 4; ++i) workers.push_back({i % 2 == 0 ? a : b, i / 2});  // ranks 1..4: a, b, a, b
  PlannerOptions options;
  options.stages = 2;
  auto plan = Plan(*c, workers, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, *c, 5).ok()) << ValidatePlan(*plan, *c, 5);
  ASSERT_EQ(plan->stages_size(), 2);
  EXPECT_EQ(std::vector<int32_t>(plan->stages(0).ranks().begin(), plan->stages(0).ranks().end()),
            (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(std::vector<int32_t>(plan->stages(1).ranks().begin(), plan->stages(1).ranks().end()),
            (std::vector<int32_t>{2, 4}));
  ASSERT_EQ(plan->ranks_size(), 4);
  for (int k = 1; k <= 4; ++k) {
    const RankAssignment& r = plan->ranks(k - 1);
    EXPECT_EQ(r.rank(), k);  // the list stays in rank order
    EXPECT_EQ(r.host(), k % 2 == 1 ? "a" : "b");
    EXPECT_EQ(r.numa_node(), (k - 1) / 2);
    EXPECT_EQ(r.stage(), k % 2 == 1 ? 0 : 1);
    EXPECT_EQ(r.tp_index(), (k - 1) / 2);
  }
  // In-host all-reduces only: 2 per layer and one for the head, plus the two stage handoffs.
  const int64_t layers = c->num_hidden_layers;
  EXPECT_NEAR(plan->communication_ms_per_token(),
              2 * kStageHandoffMs + kAllReduceMsInHost * static_cast<double>(2 * layers + 1), 1e-9);
  // One stage over both hosts: it cannot avoid spanning them; each host's ranks sit together.
  options.stages = 1;
  auto one_stage = Plan(*c, workers, options);
  ASSERT_TRUE(one_stage.ok()) << one_stage.status();
  ASSERT_TRUE(ValidatePlan(*one_stage, *c, 5).ok()) << ValidatePlan(*one_stage, *c, 5);
  EXPECT_EQ(std::vector<int32_t>(one_stage->stages(0).ranks().begin(), one_stage->stages(0).ranks().end()),
            (std::vector<int32_t>{1, 3, 2, 4}));
}

// Sizes below a GiB printed as "needs 0.0 GiB (weights 0.0 GiB + ...) budget 0.0 GiB"; and a
// node whose topology reports no memory got a silent budget of 0 with no hint why.
TEST(PlannerLayoutTest, SmallSizesInMibAndNodesWithoutMemoryNamed) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  PlannerOptions tiny;
  tiny.memory_budget_gib = 0.001;  // ~1 MiB
  tiny.kv_cache_gib = 0.0005;
  auto over = Plan(*c, OnePerNumaNode({Host("h", 1)}), tiny);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(over.status().message());
  EXPECT_NE(msg.find(" MiB (weights "), std::string::npos) << msg;
  EXPECT_NE(msg.find("KV reserve 0.5 MiB), budget 1.0 MiB"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("0.0 GiB"), std::string::npos) << msg;

  HostTopology h = Host("h", 2);
  h.mutable_numa_nodes(1)->set_memory_bytes(0);
  auto none = Plan(*c, OnePerNumaNode({h}), PlannerOptions{});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(),
            "worker rank 2: the topology of host 'h' reports no memory for NUMA node 1 (hwloc found none: is its "
            "Linux backend off, e.g. HWLOC_COMPONENTS=-linux?), so there is no default budget; pass "
            "--memory-budget-gib (memory per rank)");
  PlannerOptions given;
  given.memory_budget_gib = 1;
  EXPECT_TRUE(Plan(*c, OnePerNumaNode({h}), given).ok());
}

// --memory-budget-gib was not bounded by the memory the topology reports: 100 GiB per rank on
// 64 GiB nodes "fitted" GLM-5-sized ranks of 90.7 GiB.
TEST(PlannerLayoutTest, BudgetBeyondTheNodesMemoryIsRefused) {
  auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  PlannerOptions o;
  o.memory_budget_gib = 100;  // the nodes have 16 GiB
  auto plan = Plan(*c, OnePerNumaNode({Host("h", 2)}), o);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(),
            "--memory-budget-gib 100 for worker rank 1: 1 rank of host 'h' NUMA node 0 would be given 100.0 GiB, "
            "more than the 16.0 GiB the topology reports for the node; lower it (0 = 90% of the node's share)");
  // Two ranks sharing a node share its memory: 2 x 10 GiB > 16 GiB.
  const HostTopology h = Host("h", 1);
  o.memory_budget_gib = 10;
  auto shared = Plan(*c, {{h, 0}, {h, 0}}, o);
  EXPECT_EQ(shared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(shared.status().message().find("2 ranks of host 'h' NUMA node 0 would be given 20.0 GiB"),
            std::string::npos)
      << shared.status();
  o.memory_budget_gib = 8;
  EXPECT_TRUE(Plan(*c, {{h, 0}, {h, 0}}, o).ok());
  // A topology without memory figures cannot bound it (the explicit budget is what there is).
  HostTopology unknown = Host("u", 1);
  unknown.mutable_numa_nodes(0)->set_memory_bytes(0);
  o.memory_budget_gib = 100;
  EXPECT_TRUE(Plan(*c, OnePerNumaNode({unknown}), o).ok());
}

// Load-time int4 / int8 quantises each rank's slice in groups from its first column: the planner
// starts the slices of what it quantises (down_proj's columns: experts, the shared expert, the
// dense MLP and o_proj's heads with scope all) on the whole matrix's groups, so N ranks hold the
// weights one rank does (2 ranks split a width of 80 at 40: other int4 weights, other tokens).
TEST(PlannerLayoutTest, LoadTimeQuantisedSlicesStartOnTheMatrixGroups) {
  auto tiny = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  model::ModelConfig c = *tiny;
  c.moe_intermediate_size = 80;  // glm5-random-sparse's width: halves at 40
  c.intermediate_size = 200;
  for (const auto& [dtype, group] : std::vector<std::pair<std::string, int64_t>>{
           {"int4", 32}, {"int8", 64}, {"int8-g32", 32}}) {
    for (const char* layout : {"expert-parallel", "expert-tensor-parallel"}) {
      for (int ranks : {2, 3}) {
        if (group == 64 && ranks == 3) continue;  // below: no such split
        PlannerOptions o;
        o.weight_dtype = dtype;
        o.quantize_scope = "all";
        o.expert_layout = layout;
        auto plan = Plan(c, OnePerNumaNode({Host("h", ranks)}), o);
        ASSERT_TRUE(plan.ok()) << plan.status();
        SCOPED_TRACE(absl::StrCat(dtype, " ", layout, " ", ranks, " ranks"));
        for (const RankAssignment& r : plan->ranks()) {
          EXPECT_EQ(r.shared_begin() % group, 0);
          EXPECT_EQ(r.expert_slice_begin() % group, 0);
          EXPECT_EQ(r.dense_begin() % group, 0);
          EXPECT_EQ(r.head_begin() * c.v_head_dim % group, 0);
        }
      }
    }
  }
  // One whole group of 64 and a part cannot go to 3 ranks on the groups: refused, not served
  // with other weights.
  PlannerOptions int8;
  int8.weight_dtype = "int8";
  auto refused = Plan(c, OnePerNumaNode({Host("h", 3)}), int8);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("quantises in groups of 64 columns, and the shared expert's width (80) "
                                            "cannot be split over 3 ranks"),
            std::string::npos)
      << refused.status();
  PlannerOptions row;
  row.weight_dtype = "int8-row";
  auto per_row = Plan(c, OnePerNumaNode({Host("h", 2)}), row);
  ASSERT_FALSE(per_row.ok());
  EXPECT_NE(per_row.status().message().find("one scale a row cannot be split over 2 ranks"), std::string::npos)
      << per_row.status();
  EXPECT_TRUE(Plan(c, OnePerNumaNode({Host("h", 1)}), row).ok());
  // A pinned plan (hand-edited) whose slice starts inside a group is refused when recounted.
  PlannerOptions int4;
  int4.weight_dtype = "int4";
  auto pinned = Plan(c, OnePerNumaNode({Host("h", 2)}), int4);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(RecountPlan(c, &*pinned).ok());
  pinned->mutable_ranks(0)->set_shared_end(40);
  pinned->mutable_ranks(1)->set_shared_begin(40);
  auto recount = RecountPlan(c, &*pinned);
  EXPECT_NE(recount.message().find("rank 2: shared_begin 40 is not on the groups of 32 columns"), std::string::npos)
      << recount;
  // Stored weights keep the even split.
  PlannerOptions stored;
  stored.expert_layout = "expert-tensor-parallel";
  auto plan = Plan(c, OnePerNumaNode({Host("h", 2)}), stored);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->ranks(1).expert_slice_begin(), 40);
}

// A checkpoint with pre-quantised experts (glmctl quantize) holds what a load-time int4
// conversion of the original holds; its tensor-parallel slices of the experts start on scale
// groups, and a load format the stored codes cannot give is refused before any worker loads.
TEST(PlannerLayoutTest, PreQuantisedExpertsCountTheirCodesAndSliceOnGroups) {
  auto original = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
  ASSERT_TRUE(original.ok()) << original.status();
  model::ModelConfig c = *original;
  c.expert_quant_format = "int4";
  c.expert_quant_group_size = 32;
  PlannerOptions converted;
  converted.weight_dtype = "int4";
  auto from_original = Plan(*original, OnePerNumaNode({Host("h", 1)}), converted);
  auto from_codes = Plan(c, OnePerNumaNode({Host("h", 1)}), PlannerOptions{});
  ASSERT_TRUE(from_original.ok() && from_codes.ok()) << from_codes.status();
  EXPECT_EQ(from_codes->ranks(0).weight_bytes(), from_original->ranks(0).weight_bytes());
  EXPECT_EQ(from_codes->ranks(0).decode_bytes_per_token(), from_original->ranks(0).decode_bytes_per_token());
  EXPECT_EQ(from_codes->stored_expert_format(), "int4-g32");
  EXPECT_EQ(WeightFormatText(*from_codes), "stored, experts pre-quantised int4-g32");
  EXPECT_EQ(from_original->stored_expert_format(), "");
  for (const char* layout : {"expert-parallel", "expert-tensor-parallel"}) {
    PlannerOptions o;
    o.expert_layout = layout;
    auto three = Plan(c, OnePerNumaNode({Host("h", 3)}), o);
    ASSERT_TRUE(three.ok()) << three.status();
    for (const RankAssignment& r : three->ranks()) {
      EXPECT_EQ(r.shared_begin() % 32, 0) << layout;
      EXPECT_EQ(r.expert_slice_begin() % 32, 0) << layout;
    }
  }
  for (const char* bad : {"int8", "int4-g64", "bf16", "f32"}) {
    auto f = ParseWeightFormat(bad, "experts", c);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(f.status().message().find("pre-quantised as int4"), std::string::npos) << f.status();
  }
  EXPECT_TRUE(ParseWeightFormat("int4", "experts", c).ok());
  EXPECT_TRUE(ParseWeightFormat("int4", "all", c).ok());
  EXPECT_EQ(ParseWeightFormat("int8", "mtp", c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace glm::placement
