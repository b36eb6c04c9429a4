// The fixture models in every layout the engine runs: 1 worker; 2 and 3 workers in one stage;
// 2 stages of 2; 4 stages of 1. Checks the slices the engine relies on.
#include <set>

#include "coordinator/placement/planner.h"
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
    // Per token: everything but the embedding table (one row), the MTP layer, and the routed
    // experts the router does not pick.
    int64_t embedding = 0, mtp = 0;
    for (const auto& [name, t] : model::ExpectedTensors(*c)) {
      if (t.optional) continue;
      if (name == "model.embed_tokens.weight") embedding = testing::LoadedBytes(*c, name, t);
      if (model::TensorLayer(name) == c->num_hidden_layers) mtp += testing::LoadedBytes(*c, name, t);
    }
    int64_t moe_layers = 0;
    for (auto k : c->mlp_layer_types) moe_layers += k == model::MlpKind::kSparse;
    const int64_t unread_experts =
        moe_layers * (c->n_routed_experts - c->num_experts_per_tok) * testing::ExpertBytes(*c);
    EXPECT_EQ(r.decode_bytes_per_token(), bytes.total - embedding + 2 * c->hidden_size - mtp - unread_experts);
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
  options.stages = 0;
  options.expert_layout = "expert-sharded";
  EXPECT_EQ(Plan(*c, OnePerNumaNode({Host("h", 2)}), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.expert_layout = "expert-parallel";
  std::vector<WorkerSlot> bad = OnePerNumaNode({Host("h", 1)});
  bad[0].numa_node = 7;
  auto no_node = Plan(*c, bad, options);
  EXPECT_NE(no_node.status().message().find("os index 7"), std::string::npos) << no_node.status();
}

}  // namespace
}  // namespace glm::placement
