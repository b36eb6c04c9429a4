// Hot-expert replicas in the planner: recorded routing statistics (ExpertLoad, its JSON form),
// which experts are copied where, the memory budget, the plan's checks, and refusals.
#include "coordinator/placement/expert_replica_planner.h"

#include <map>
#include <set>

#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/expert_load.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/weight_format.h"
#include "gtest/gtest.h"

namespace glm::placement {
namespace {

constexpr int64_t kGib = int64_t{1} << 30;

class ExpertReplicaPlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    // Layer l: expert e chosen by 100 * ((e + 3 * l) % E) + 1 tokens: each layer a different hottest.
    for (int64_t l = 0; l < config_.num_weight_layers(); ++l) {
      if (config_.mlp_kind(l) != model::MlpKind::kSparse) continue;
      auto& counts = load_.tokens_per_expert[l];
      for (int64_t e = 0; e < config_.n_routed_experts; ++e)
        counts.push_back(100 * ((e + 3 * l) % config_.n_routed_experts) + 1);
    }
    load_.model = "glm5-tiny-code";
  }
  // One host of `nodes` NUMA nodes, one worker each.
  absl::StatusOr<PlacementPlan> MakePlan(int nodes, int64_t replicas, double budget_gib = 0,
                                         const std::string& layout = "expert-parallel") {
    HostTopology h;
    h.set_hostname("h0");
    for (int i = 0; i < nodes; ++i) {
      NumaNode* n = h.add_numa_nodes();
      n->set_os_index(i);
      n->set_cores(4);
      n->set_pus(4);
      n->set_memory_bytes(16 * kGib);
    }
    PlannerOptions o;
    o.model_name = "glm5-tiny-code";
    o.expert_layout = layout;
    o.memory_budget_gib = budget_gib;
    o.kv_cache_gib = 0;
    o.hot_expert_replicas = replicas;
    o.expert_load = &load_;
    return Plan(config_, OnePerNumaNode({h}), o);
  }
  int64_t ExpertBytes() const {
    auto f = ParseWeightFormat("stored", "experts", config_);
    return CostModel(config_, *f).RoutedExpertBytes();
  }
  model::ModelConfig config_;
  ExpertLoad load_;
};

TEST_F(ExpertReplicaPlannerTest, CopiesEachLayersHottestExpertsToTheOtherRank) {
  auto plain = MakePlan(2, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto plan = MakePlan(2, 3);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, config_, 3).ok()) << ValidatePlan(*plan, config_, 3);
  const int64_t E = config_.n_routed_experts;
  std::map<int64_t, std::set<int64_t>> copied;  // layer -> experts
  for (int i = 0; i < 2; ++i) {
    const RankAssignment& r = plan->ranks(i);
    std::set<int32_t> own(r.experts().begin(), r.experts().end());
    for (const ExpertReplica& rep : r.replicas()) {
      EXPECT_EQ(own.count(rep.expert()), 0u) << "a copy of the rank's own expert";
      EXPECT_TRUE(copied[rep.layer()].insert(rep.expert()).second);
    }
    // Each copy costs one expert's bytes on the rank holding it.
    EXPECT_EQ(r.weight_bytes() - plain->ranks(i).weight_bytes(), r.replicas_size() * ExpertBytes());
  }
  // The 3 hottest experts of every MoE layer (the MTP layer included), and nothing else.
  for (const auto& [layer, counts] : load_.tokens_per_expert) {
    std::set<int64_t> hottest;
    for (int64_t e = 0; e < E; ++e)
      if ((e + 3 * layer) % E >= E - 3) hottest.insert(e);
    EXPECT_EQ(copied[layer], hottest) << "layer " << layer;
  }
  EXPECT_EQ(copied.size(), load_.tokens_per_expert.size());
  EXPECT_EQ(plan->replicas_without_memory(), 0);
  EXPECT_NE(PlanToTable(*plan).find(" hot"), std::string::npos);
  EXPECT_NE(PlanToTable(*plan).find("hot-expert replicas: 18 copies"), std::string::npos);
  // The JSON form keeps them, and the loaded plan passes its checks.
  auto json = PlanToJson(*plan);
  ASSERT_TRUE(json.ok());
  auto back = PlanFromJson(*json, config_, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ranks(0).replicas_size() + back->ranks(1).replicas_size(), 18);
  // One rank: nothing to share.
  auto one = MakePlan(1, 3);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->ranks(0).replicas_size(), 0);
}

TEST_F(ExpertReplicaPlannerTest, CopiesGoToTheLessLoadedRankAndNeverExpertsNobodyChose) {
  // Layer 1: the first half's experts (rank 1's) take every token; rank 2's none.
  for (auto& [layer, counts] : load_.tokens_per_expert)
    for (int64_t e = 0; e < config_.n_routed_experts; ++e) counts[e] = e < config_.n_routed_experts / 2 ? 50 + e : 0;
  auto plan = MakePlan(2, 4);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->ranks(0).replicas_size(), 0) << "rank 1 is the busy one";
  EXPECT_EQ(plan->ranks(1).replicas_size(), 4 * static_cast<int>(load_.tokens_per_expert.size()));
  for (const ExpertReplica& rep : plan->ranks(1).replicas())
    EXPECT_GE(rep.expert(), config_.n_routed_experts / 2 - 4) << "the hottest of rank 1's experts";
  // Asking for more copies than experts anyone chose copies only the chosen ones.
  auto all = MakePlan(2, 1000);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->ranks(1).replicas_size(), config_.n_routed_experts / 2 * static_cast<int>(load_.tokens_per_expert.size()));
}

TEST_F(ExpertReplicaPlannerTest, StaysWithinTheMemoryBudget) {
  auto plain = MakePlan(2, 0);
  ASSERT_TRUE(plain.ok());
  // Room for about 5 copies per rank beyond the plain plan's weights.
  const int64_t budget = std::max(plain->ranks(0).weight_bytes(), plain->ranks(1).weight_bytes()) + 5 * ExpertBytes() +
                         ExpertBytes() / 2;
  auto plan = MakePlan(2, 8, static_cast<double>(budget) / kGib);
  ASSERT_TRUE(plan.ok()) << plan.status();
  int64_t placed = 0;
  for (const RankAssignment& r : plan->ranks()) {
    EXPECT_LE(r.weight_bytes() + r.kv_reserve_bytes(), r.memory_budget_bytes());
    placed += r.replicas_size();
  }
  EXPECT_GT(placed, 0);
  EXPECT_GT(plan->replicas_without_memory(), 0);
  EXPECT_EQ(placed + plan->replicas_without_memory(), 8 * static_cast<int64_t>(load_.tokens_per_expert.size()));
  EXPECT_NE(PlanToTable(*plan).find("no rank of the stage had the memory"), std::string::npos);
}

TEST_F(ExpertReplicaPlannerTest, AutoCopiesEveryChosenExpertThatFitsHottestFirst) {
  int64_t n = -1;
  EXPECT_TRUE(ParseHotExpertReplicas("auto", &n));
  EXPECT_EQ(n, kAllReplicasThatFit);
  EXPECT_TRUE(ParseHotExpertReplicas("3", &n));
  EXPECT_EQ(n, 3);
  for (const char* bad : {"-1", "", "all", "2x", "1.5"}) EXPECT_FALSE(ParseHotExpertReplicas(bad, &n)) << bad;
  // Unlimited memory, 2 ranks: each ends up with every expert (the other's as copies).
  auto all = MakePlan(2, kAllReplicasThatFit);
  ASSERT_TRUE(all.ok()) << all.status();
  const int layers = static_cast<int>(load_.tokens_per_expert.size());
  EXPECT_EQ(all->ranks(0).replicas_size(), layers * static_cast<int>(config_.n_routed_experts) / 2);
  EXPECT_EQ(all->ranks(1).replicas_size(), layers * static_cast<int>(config_.n_routed_experts) / 2);
  // A budget for 7 copies a rank: those placed are the hottest by their share of their layer.
  auto plain = MakePlan(2, 0);
  ASSERT_TRUE(plain.ok());
  const int64_t budget = std::max(plain->ranks(0).weight_bytes(), plain->ranks(1).weight_bytes()) + 7 * ExpertBytes() +
                         ExpertBytes() / 2;
  // Skew the layers differently: layer l's hottest expert takes a share growing with l.
  for (auto& [layer, counts] : load_.tokens_per_expert)
    for (int64_t e = 0; e < config_.n_routed_experts; ++e) counts[e] = e == layer ? 1000 * layer : 10 + e;
  auto some = MakePlan(2, kAllReplicasThatFit, static_cast<double>(budget) / kGib);
  ASSERT_TRUE(some.ok()) << some.status();
  std::set<std::pair<int64_t, int64_t>> placed;
  for (const RankAssignment& r : some->ranks())
    for (const ExpertReplica& rep : r.replicas()) placed.insert({rep.layer(), rep.expert()});
  EXPECT_GT(some->replicas_without_memory(), 0);
  for (const auto& [layer, counts] : load_.tokens_per_expert) {
    const bool own_copy_placed = placed.count({layer, layer}) > 0;
    EXPECT_TRUE(own_copy_placed) << "layer " << layer << "'s dominant expert was left out";
  }
}

TEST_F(ExpertReplicaPlannerTest, Refusals) {
  PlannerOptions o;
  EXPECT_EQ(MakePlan(2, -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakePlan(2, 2, 0, "expert-tensor-parallel").status().code(), absl::StatusCode::kInvalidArgument);
  load_.model = "another-model";
  auto other = MakePlan(2, 2);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(other.status().message().find("another-model"), std::string::npos);
  // Replicas without statistics.
  HostTopology h;
  h.set_hostname("h0");
  h.add_numa_nodes()->set_memory_bytes(16 * kGib);
  o.hot_expert_replicas = 2;
  auto none = Plan(config_, OnePerNumaNode({h}), o);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("--expert-load"), std::string::npos);
}

TEST_F(ExpertReplicaPlannerTest, ThePlanChecksRefuseBadReplicas) {
  auto plan = MakePlan(2, 0);
  ASSERT_TRUE(plan.ok());
  auto refused = [&](int rank_index, int32_t layer, int32_t expert, const std::string& says) {
    PlacementPlan p = *plan;
    ExpertReplica* r = p.mutable_ranks(rank_index)->add_replicas();
    r->set_layer(layer);
    r->set_expert(expert);
    if (says == "twice") *p.mutable_ranks(rank_index)->add_replicas() = *r;
    const absl::Status s = ValidatePlan(p, config_, 3);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_NE(s.message().find(says), std::string::npos) << s;
  };
  const int32_t other = plan->ranks(1).experts(0);
  refused(0, 0, other, "not a MoE layer");                   // layer 0 is dense
  refused(0, 1, static_cast<int32_t>(config_.n_routed_experts), "the model has experts");
  refused(0, 1, plan->ranks(0).experts(0), "already owns");
  refused(0, 1, other, "twice");
  PlacementPlan etp = *plan;
  etp.set_expert_layout("expert-tensor-parallel");
  ExpertReplica* r = etp.mutable_ranks(0)->add_replicas();
  r->set_layer(1);
  r->set_expert(other);
  EXPECT_FALSE(ValidatePlan(etp, config_, 3).ok());
  // A valid copy passes, and RecountPlan counts its bytes.
  PlacementPlan ok = *plan;
  r = ok.mutable_ranks(0)->add_replicas();
  r->set_layer(1);
  r->set_expert(other);
  ASSERT_TRUE(ValidatePlan(ok, config_, 3).ok()) << ValidatePlan(ok, config_, 3);
  ASSERT_TRUE(RecountPlan(config_, &ok).ok());
  EXPECT_EQ(ok.ranks(0).weight_bytes() - plan->ranks(0).weight_bytes(), ExpertBytes());
}

TEST_F(ExpertReplicaPlannerTest, ExpertLoadJsonRoundTripAndRefusals) {
  auto back = ExpertLoadFromJson(ExpertLoadToJson(load_), config_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model, load_.model);
  EXPECT_EQ(back->tokens_per_expert, load_.tokens_per_expert);
  const std::string E = std::to_string(config_.n_routed_experts);
  auto counts = [&](int n, const std::string& v) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? "," : "") + v;
    return s + "]";
  };
  struct Bad {
    std::string json, says;
  };
  const Bad bad[] = {
      {"not json", "not JSON"},
      {"[]", "JSON object"},
      {R"({"layers": 3})", "\"layers\" must be an array"},
      {R"({"layers": [{"tokens_per_expert": []}]})", "integer \"layer\""},
      {R"({"layers": [{"layer": 0, "tokens_per_expert": )" + counts(16, "1") + "}]}", "not a MoE layer"},
      {R"({"layers": [{"layer": 99, "tokens_per_expert": )" + counts(16, "1") + "}]}", "not a MoE layer"},
      {R"({"layers": [{"layer": 1, "tokens_per_expert": )" + counts(15, "1") + "}]}", "must list " + E},
      {R"({"layers": [{"layer": 1, "tokens_per_expert": )" + counts(16, "-1") + "}]}", "integers in [0, 1000000000000000]"},
      {R"({"layers": [{"layer": 1, "tokens_per_expert": )" + counts(16, "1.5") + "}]}", "integers in [0, 1000000000000000]"},
      // Counts near int64's maximum overflowed a layer's sum (every expert then looked hot).
      {R"({"layers": [{"layer": 1, "tokens_per_expert": )" + counts(16, "9223372036854775000") + "}]}",
       "integers in [0, 1000000000000000]"},
      {R"({"layers": [{"layer": 1, "tokens_per_expert": )" + counts(16, "1") + R"(}, {"layer": 1, "tokens_per_expert": )" +
           counts(16, "1") + "}]}",
       "listed twice"},
      {R"({"model": 3, "layers": []})", "\"model\" must be a string"},
      {R"({"tokens": -3, "layers": []})", "\"tokens\" must be"},
  };
  for (const Bad& b : bad) {
    auto l = ExpertLoadFromJson(b.json, config_);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << b.json;
    EXPECT_NE(l.status().message().find(b.says), std::string::npos) << l.status() << " for " << b.json;
  }
  EXPECT_EQ(ReadExpertLoadFile("/nonexistent/load.json", config_).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace glm::placement
