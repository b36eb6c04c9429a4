// JSON round trip, the table, and ValidatePlan on hand-edited plans: each mistake an operator can
// make gets an error that names it.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>

#include "coordinator/placement/planner.h"
#include "coordinator/placement/weight_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::placement {
namespace {

HostTopology Host(const std::string& name, int nodes) {
  HostTopology h;
  h.set_hostname(name);
  h.set_packages(1);
  for (int i = 0; i < nodes; ++i) {
    NumaNode* n = h.add_numa_nodes();
    n->set_os_index(i);
    n->set_cores(8);
    n->set_pus(8);
    n->set_memory_bytes(int64_t{16} << 30);
  }
  return h;
}

class PlanValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = model::ModelConfig::FromFile(GLM_MODELS_DIR "/glm5-tiny-code/config.json");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    PlannerOptions options;
    options.model_name = "glm5-tiny-code";
    auto plan = Plan(config_, OnePerNumaNode({Host("a", 2), Host("b", 2)}), options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    plan_ = *plan;
    ASSERT_TRUE(ValidatePlan(plan_, config_, 5).ok()) << ValidatePlan(plan_, config_, 5);
  }

  // Applies `edit` to a copy of the plan and returns ValidatePlan's message ("" when it passes).
  std::string Broken(const std::function<void(PlacementPlan&)>& edit, int world_size = 5) {
    PlacementPlan p = plan_;
    edit(p);
    absl::Status s = ValidatePlan(p, config_, world_size);
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  }

  model::ModelConfig config_;
  PlacementPlan plan_;
};

TEST_F(PlanValidationTest, JsonRoundTrip) {
  auto json = PlanToJson(plan_);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_NE(json->find("\"head_begin\": 0"), std::string::npos) << *json;  // zeros printed
  EXPECT_NE(json->find("\"expert_layout\": \"expert-parallel\""), std::string::npos);
  auto back = PlanFromJson(*json, config_, 5);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*back, plan_));
}

TEST_F(PlanValidationTest, JsonLoadingRejectsTyposAndBrokenPlans) {
  auto typo = PlanFromJson(R"({"world_size": 5, "stagez": []})", config_, 5);
  EXPECT_EQ(typo.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(typo.status().message().find("stagez"), std::string::npos) << typo.status();
  auto json = PlanToJson(plan_);
  ASSERT_TRUE(json.ok());
  auto wrong_world = PlanFromJson(*json, config_, 9);
  EXPECT_EQ(wrong_world.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_world.status().message().find("world of 5"), std::string::npos) << wrong_world.status();
}

TEST_F(PlanValidationTest, TableListsHostsNodesRanksAndTotals) {
  const std::string table = PlanToTable(plan_);
  EXPECT_NE(table.find("glm5-tiny-code"), std::string::npos) << table;
  EXPECT_NE(table.find("stage 0: layers 0-"), std::string::npos) << table;
  EXPECT_NE(table.find("ms/token"), std::string::npos) << table;
  EXPECT_NE(table.find("total weights"), std::string::npos) << table;
  // Host a's ranks come before host b's.
  EXPECT_LT(table.find("\na "), table.find("\nb ")) << table;
  // Rank 1 holds experts 0-7 of 16.
  EXPECT_NE(table.find("0-7"), std::string::npos) << table;
}

TEST_F(PlanValidationTest, MissingLayer) {
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_stages(1)->set_layer_begin(p.stages(1).layer_begin() + 1); })
                .find("in no stage"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_stages(1)->set_layer_end(p.stages(1).layer_end() - 1); })
                .find("the model has 6 layers"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_stages(0)->set_layer_end(p.stages(0).layer_begin()); })
                .find("stage 0"),
            std::string::npos);
}

TEST_F(PlanValidationTest, OverlappingOrMissingExperts) {
  const std::string overlap = Broken([](PlacementPlan& p) { p.mutable_ranks(0)->add_experts(8); });
  EXPECT_NE(overlap.find("expert 8 is held by both rank 1 and rank 2"), std::string::npos) << overlap;
  const std::string missing = Broken([](PlacementPlan& p) { p.mutable_ranks(3)->mutable_experts()->RemoveLast(); });
  EXPECT_NE(missing.find("expert 15 is held by no rank"), std::string::npos) << missing;
  const std::string range = Broken([](PlacementPlan& p) { p.mutable_ranks(3)->add_experts(16); });
  EXPECT_NE(range.find("lists expert 16"), std::string::npos) << range;
}

TEST_F(PlanValidationTest, BadRanks) {
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_ranks(0)->set_rank(0); }).find("rank 0 is not a worker rank"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_rank(1); }).find("rank 1 is assigned twice"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_ranks(3)->set_rank(7); }).find("rank 7 is not a worker rank"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_stages(1)->set_ranks(0, 1); }).find("more than one stage"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_ranks(2)->set_tp_index(1); }).find("rank 3 says stage 1, tp 1"),
            std::string::npos);
  EXPECT_NE(Broken([](PlacementPlan& p) { p.mutable_stages(1)->mutable_ranks()->RemoveLast(); })
                .find("rank 3 says stage 1, tp 0 of 2 but stage 1 lists it at position 0 of 1"),
            std::string::npos);
}

TEST_F(PlanValidationTest, SlicesMustTile) {
  const std::string gap = Broken([](PlacementPlan& p) { p.mutable_ranks(0)->set_head_end(1); });
  EXPECT_NE(gap.find("stage 0: attention heads [1, 2) are held by no rank"), std::string::npos) << gap;
  const std::string overlap = Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_dense_begin(300); });
  EXPECT_NE(overlap.find("overlap on dense-MLP columns"), std::string::npos) << overlap;
  const std::string vocab = Broken([](PlacementPlan& p) { p.mutable_ranks(3)->set_vocab_end(4000); });
  EXPECT_NE(vocab.find("vocabulary rows [4000, 4096)"), std::string::npos) << vocab;
  const std::string head_less = Broken([](PlacementPlan& p) { p.mutable_ranks(0)->set_vocab_end(10); });
  EXPECT_NE(head_less.find("holds no head"), std::string::npos) << head_less;
  const std::string embed = Broken([](PlacementPlan& p) { p.mutable_stages(1)->set_has_embedding(true); });
  EXPECT_NE(embed.find("embedding"), std::string::npos) << embed;
  const std::string layout = Broken([](PlacementPlan& p) { p.set_expert_layout("sharded"); });
  EXPECT_NE(layout.find("unknown"), std::string::npos) << layout;
  // A rank with no heads (the other holding all) was accepted and its worker divided by zero in
  // attention; one with no vocabulary rows on the last stage failed late, naming no range.
  const std::string headless = Broken([](PlacementPlan& p) {
    p.mutable_ranks(0)->set_head_end(0);
    p.mutable_ranks(1)->set_head_begin(0);
  });
  EXPECT_NE(headless.find("stage 0: rank 1 has no attention heads ([0, 0) is empty)"), std::string::npos) << headless;
  const std::string no_vocab = Broken([](PlacementPlan& p) {
    p.mutable_ranks(3)->set_vocab_begin(p.ranks(2).vocab_begin());
    p.mutable_ranks(2)->set_vocab_end(p.ranks(2).vocab_begin());
  });
  EXPECT_NE(no_vocab.find("has no vocabulary rows"), std::string::npos) << no_vocab;
}

TEST_F(PlanValidationTest, LoadOptionsAreCheckedBeforeAnyWorkerLoads) {
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_weight_dtype(""); }), "");  // older plans: as stored
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_weight_dtype("int4-g64"); }), "");
  const std::string dtype = Broken([](PlacementPlan& p) { p.set_weight_dtype("int9"); });
  EXPECT_NE(dtype.find("weight_dtype"), std::string::npos) << dtype;
  EXPECT_NE(dtype.find("weight dtype 'int9' is not one of stored, bf16, f32, int8"), std::string::npos) << dtype;
  const std::string group = Broken([](PlacementPlan& p) { p.set_weight_dtype("int8-g40"); });
  EXPECT_NE(group.find("multiple of 32"), std::string::npos) << group;
  const std::string scope = Broken([](PlacementPlan& p) { p.set_quantize_scope("attention"); });
  EXPECT_NE(scope.find("quantize scope 'attention' is not one of experts, all"), std::string::npos) << scope;
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_activation_dtype(""); }), "");  // older plans: f32
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_activation_dtype("bf16"); }), "");
  const std::string activations = Broken([](PlacementPlan& p) { p.set_activation_dtype("fp16"); });
  EXPECT_NE(activations.find("activation_dtype 'fp16' is not one of f32, bf16"), std::string::npos) << activations;
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_kv_cache_dtype(""); }), "");  // older plans: f32
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_kv_cache_dtype("int8"); }), "");
  const std::string kv = Broken([](PlacementPlan& p) { p.set_kv_cache_dtype("fp16"); });
  EXPECT_NE(kv.find("kv_cache_dtype 'fp16' is not one of f32, bf16, int8"), std::string::npos) << kv;
  const std::string memory = Broken([](PlacementPlan& p) { p.mutable_ranks(2)->set_expert_memory_bytes(-5); });
  EXPECT_NE(memory.find("rank 3 has expert_memory_bytes -5"), std::string::npos) << memory;

  // The same through an operator's JSON (--placement plan.json).
  PlacementPlan edited = plan_;
  edited.set_weight_dtype("int3");
  auto json = PlanToJson(edited);
  ASSERT_TRUE(json.ok()) << json.status();
  auto refused = PlanFromJson(*json, config_, 5);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("placement plan: weight_dtype / quantize_scope: weight dtype 'int3'"),
            std::string::npos)
      << refused.status();
}

// The plan states the KV rows its kv_bytes_per_token counts: per layer the latent and rope rows as
// the dtype stores them (int8: a byte a value and a 4-byte scale a row) plus the f32 indexer key,
// over the stage's layers (and the MTP layer on the last stage); a name it does not know is refused.
TEST_F(PlanValidationTest, KvBytesPerTokenCountTheKvCacheDtypesRows) {
  const auto slots = OnePerNumaNode({Host("a", 2), Host("b", 2)});
  PlannerOptions options;
  auto f32 = Plan(config_, slots, options);
  options.kv_cache_dtype = "int8";
  auto int8 = Plan(config_, slots, options);
  ASSERT_TRUE(f32.ok() && int8.ok()) << f32.status() << int8.status();
  EXPECT_EQ(f32->kv_cache_dtype(), "f32");
  EXPECT_EQ(int8->kv_cache_dtype(), "int8");
  const int64_t rank = config_.kv_lora_rank, rope = config_.qk_rope_head_dim;
  const int64_t saved_a_layer = (rank + rope) * 4 - (kernels::ScaledRowBytes(rank) + rope * 2);  // rope keys BF16
  for (int i = 0; i < f32->ranks_size(); ++i) {
    const Stage& stage = f32->stages(f32->ranks(i).stage());
    const int64_t layers =
        stage.layer_end() - stage.layer_begin() + (stage.has_head() && config_.has_mtp() ? 1 : 0);
    EXPECT_GT(int8->ranks(i).kv_bytes_per_token(), 0);
    EXPECT_EQ(f32->ranks(i).kv_bytes_per_token() - int8->ranks(i).kv_bytes_per_token(), layers * saved_a_layer) << i;
  }
  auto json = PlanToJson(*int8);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_NE(json->find("\"kv_cache_dtype\": \"int8\""), std::string::npos) << *json;
  EXPECT_NE(PlanToTable(*int8).find("weights stored, int8 KV cache"), std::string::npos) << PlanToTable(*int8);
  EXPECT_EQ(PlanToTable(*f32).find("KV cache"), std::string::npos) << PlanToTable(*f32);
  options.kv_cache_dtype = "fp16";
  auto refused = Plan(config_, slots, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("KV cache dtype 'fp16' is not one of"), std::string::npos)
      << refused.status();
}

// --index-key-dtype: the indexer key rows count as their dtype stores them (a layer with the
// indexer, and the MTP layer, saves f32's bytes minus the dtype's), the plan states it (JSON, table)
// and round-trips; a name it does not know is refused, in options and in a pinned plan.
TEST_F(PlanValidationTest, KvBytesPerTokenCountTheIndexKeyDtypesRows) {
  const auto slots = OnePerNumaNode({Host("a", 2), Host("b", 2)});
  PlannerOptions options;
  options.kv_cache_dtype = "int8";
  auto f32 = Plan(config_, slots, options);
  options.index_key_dtype = "fp8";
  auto fp8 = Plan(config_, slots, options);
  ASSERT_TRUE(f32.ok() && fp8.ok()) << f32.status() << fp8.status();
  EXPECT_EQ(f32->index_key_dtype(), "f32");
  EXPECT_EQ(fp8->index_key_dtype(), "fp8_e4m3");
  const int64_t d = config_.index_head_dim, saved_a_layer = d * 4 - kernels::ScaledRowBytes(d);
  for (int i = 0; i < f32->ranks_size(); ++i) {
    const Stage& stage = f32->stages(f32->ranks(i).stage());
    int64_t layers = stage.has_head() && config_.has_mtp() ? 1 : 0;
    for (int64_t l = stage.layer_begin(); l < stage.layer_end(); ++l)
      layers += config_.indexer_kind(l) == model::IndexerKind::kFull;
    ASSERT_GT(layers, 0);
    EXPECT_EQ(f32->ranks(i).kv_bytes_per_token() - fp8->ranks(i).kv_bytes_per_token(), layers * saved_a_layer) << i;
  }
  auto json = PlanToJson(*fp8);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_NE(json->find("\"index_key_dtype\": \"fp8_e4m3\""), std::string::npos) << *json;
  auto back = PlanFromJson(*json, config_, 5);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*back, *fp8));
  EXPECT_NE(PlanToTable(*fp8).find("int8 KV cache, fp8_e4m3 indexer keys"), std::string::npos) << PlanToTable(*fp8);
  EXPECT_EQ(PlanToTable(*f32).find("indexer keys"), std::string::npos) << PlanToTable(*f32);
  PlacementPlan edited = *fp8;
  edited.set_index_key_dtype("f16");
  auto edited_json = PlanToJson(edited);
  ASSERT_TRUE(edited_json.ok()) << edited_json.status();
  auto pinned = PlanFromJson(*edited_json, config_, 5);
  EXPECT_EQ(pinned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pinned.status().message().find("index_key_dtype 'f16' is not one of"), std::string::npos)
      << pinned.status();
  options.index_key_dtype = "f16";
  auto refused = Plan(config_, slots, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("indexer key dtype 'f16' is not one of"), std::string::npos)
      << refused.status();
}

TEST_F(PlanValidationTest, QuantisedStreamingPlansRoundTripAndTakeTheCoordinatorsFlags) {
  PlannerOptions options;
  options.weight_dtype = "int8";
  options.quantize_scope = "all";
  options.expert_memory_gib = 0.001;
  options.activation_dtype = "bf16";
  auto plan = Plan(config_, OnePerNumaNode({Host("a", 2), Host("b", 2)}), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto json = PlanToJson(*plan);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_NE(json->find("\"weight_dtype\": \"int8\""), std::string::npos) << *json;
  EXPECT_NE(json->find("\"expert_memory_bytes\""), std::string::npos) << *json;
  auto back = PlanFromJson(*json, config_, 5);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*back, *plan));
  EXPECT_NE(json->find("\"activation_dtype\": \"bf16\""), std::string::npos) << *json;
  EXPECT_NE(PlanToTable(*plan).find("weights int8 (all matrices), bf16 activations"), std::string::npos)
      << PlanToTable(*plan);

  // A pinned plan keeps its own values; flags fill what it leaves empty; a flag given explicitly
  // that contradicts it is an error, not silently ignored.
  LoadFlags flags;
  PlacementPlan pinned = *plan;
  ASSERT_TRUE(ApplyLoadFlags(flags, &pinned).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(pinned, *plan));
  flags.weight_dtype = "int4";
  flags.weight_dtype_given = true;
  absl::Status conflict = ApplyLoadFlags(flags, &pinned);
  EXPECT_EQ(conflict.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(conflict.message().find("--weight-dtype int4 contradicts the pinned plan's weight_dtype 'int8'"),
            std::string::npos)
      << conflict;
  flags = LoadFlags{};
  flags.activation_dtype = "f32";
  flags.activation_dtype_given = true;
  EXPECT_NE(ApplyLoadFlags(flags, &pinned).message().find(
                "--activation-dtype f32 contradicts the pinned plan's activation_dtype 'bf16'"),
            std::string::npos);
  flags = LoadFlags{};
  flags.expert_memory_bytes = 123;
  flags.expert_memory_given = true;
  EXPECT_NE(ApplyLoadFlags(flags, &pinned).message().find("expert_memory_bytes"), std::string::npos);

  PlacementPlan old = plan_;  // as an older planner wrote it: no load options
  old.clear_weight_dtype();
  old.clear_quantize_scope();
  old.clear_activation_dtype();
  flags = LoadFlags{};
  flags.weight_dtype = "int4";
  flags.weight_dtype_given = true;
  flags.expert_memory_bytes = 1 << 20;
  flags.expert_memory_given = true;
  ASSERT_TRUE(ApplyLoadFlags(flags, &old).ok());
  EXPECT_EQ(old.weight_dtype(), "int4");
  EXPECT_EQ(old.quantize_scope(), "experts");
  EXPECT_EQ(old.activation_dtype(), "f32");
  for (const RankAssignment& r : old.ranks()) EXPECT_EQ(r.expert_memory_bytes(), 1 << 20);
}

// Numbers a worker trusts as they are: `cores` is the thread count it starts (with --threads 0),
// so 2000000000 spawned threads until std::thread threw and the worker aborted.
TEST_F(PlanValidationTest, RankNumbersAreBounded) {
  EXPECT_EQ(plan_.ranks(1).cores(), 8);
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_cores(1); }), "");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_cores(2000000000); }),
            "rank 2 has cores 2000000000; a rank runs 1..8 compute threads (host 'a' NUMA node 1 has 8)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_cores(9); }),
            "rank 2 has cores 9; a rank runs 1..8 compute threads (host 'a' NUMA node 1 has 8)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(2)->set_cores(0); }),
            "rank 3 has cores 0; a rank runs 1..8 compute threads (host 'b' NUMA node 0 has 8)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(2)->set_cores(-4); }),
            "rank 3 has cores -4; a rank runs 1..8 compute threads (host 'b' NUMA node 0 has 8)");
  // Without the hosts' topology only the cap applies.
  EXPECT_EQ(Broken([](PlacementPlan& p) {
              p.clear_hosts();
              p.mutable_ranks(0)->set_cores(64);
            }),
            "");
  EXPECT_EQ(Broken([](PlacementPlan& p) {
              p.clear_hosts();
              p.mutable_ranks(0)->set_cores(2000000000);
            }),
            "rank 1 has cores 2000000000; a rank runs 1..4096 compute threads");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(3)->set_numa_node(-1); }),
            "rank 4 has numa_node -1 (an os index, >= 0)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(0)->set_kv_reserve_bytes(INT64_MIN); }),
            "rank 1 has kv_reserve_bytes -9223372036854775808 (negative)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(0)->set_memory_budget_bytes(-8589934592); }),
            "rank 1 has memory_budget_bytes -8589934592 (negative)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(3)->set_weight_bytes(-1); }),
            "rank 4 has weight_bytes -1 (negative)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_bandwidth_gbps(std::nan("")); }),
            "rank 2 has bandwidth_gbps nan (a finite number >= 0)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_ranks(1)->set_predicted_ms_per_token(-1); }),
            "rank 2 has predicted_ms_per_token -1 (a finite number >= 0)");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.set_predicted_tokens_per_s(HUGE_VAL); }),
            "the plan's predicted_tokens_per_s is inf (a finite number >= 0)");

  // The auditor's plan: an operator's JSON with "cores": 2000000000 is refused at load.
  auto json = PlanToJson(plan_);
  ASSERT_TRUE(json.ok()) << json.status();
  const std::string cores = "\"cores\": 8,";
  ASSERT_NE(json->find(cores), std::string::npos) << *json;
  std::string edited = *json;
  edited.replace(edited.find(cores), cores.size(), "\"cores\": 2000000000,");
  auto refused = PlanFromJson(edited, config_, 5);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "placement plan: rank 1 has cores 2000000000; a rank runs 1..8 compute threads (host 'a' NUMA node 0 "
            "has 8)");
}

// Counts a plan holds as int32 (expert ids, slices): beyond int32 they would wrap, and the
// expert loops (int32 counters) overflowed.
TEST_F(PlanValidationTest, ModelCountsBeyondInt32AreRefused) {
  model::ModelConfig huge = config_;
  huge.n_routed_experts = int64_t{1} << 31;
  const absl::Status s = ValidatePlan(plan_, huge, 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "the model's n_routed_experts 2147483648 does not fit a placement plan (0..2147483647)");
  auto plan = Plan(huge, OnePerNumaNode({Host("a", 2)}), PlannerOptions{});
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(), s.message());
  huge = config_;
  huge.n_shared_experts = int64_t{1} << 30;
  EXPECT_NE(ValidatePlan(plan_, huge, 5).message().find("shared-expert columns"), std::string::npos);
}

// --placement PATH: a path that cannot be read says so (it parsed as an empty plan before:
// "placement plan JSON: Unexpected end of string").
TEST(ReadPlanFileTest, NamesThePathAndWhy) {
  auto missing = ReadPlanFile("/nonexistent/plan.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "/nonexistent/plan.json: cannot open: No such file or directory");
  const std::string dir = ::testing::TempDir();
  auto directory = ReadPlanFile(dir);
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.status().message(), dir + ": cannot read: Is a directory");
  const std::string path = dir + "/read_plan_file_" + std::to_string(getpid()) + ".json";
  { std::ofstream(path) << "\n"; }
  auto empty = ReadPlanFile(path);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(), path + ": the file is empty (expected a plan from `glmctl plan --json`)");
  { std::ofstream(path) << "{\"world_size\": 5}"; }
  auto read = ReadPlanFile(path);
  std::remove(path.c_str());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "{\"world_size\": 5}");
}

// Pinned-plan mistakes named as what they are: glmctl's table saved instead of its JSON ("placement
// plan JSON: Unexpected token."), a rank listed twice in one stage ("listed in more than one
// stage"), and a wrong `mpirun -np` ("world of 5 ranks; this one has 4").
TEST_F(PlanValidationTest, PinnedPlanMistakesAreNamed) {
  const std::string table = PlanToTable(plan_) + "\n" + *PlanToJson(plan_);
  auto from_table = PlanFromJson(table, config_, 5);
  EXPECT_EQ(from_table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(from_table.status().message(),
            "placement plan JSON: the file looks like glmctl's table output (the plan saved without --json); save "
            "it with `glmctl plan --json ... > plan.json`");
  // Rank 2 listed twice in stage 0 (rank 1 dropped from it).
  const std::string twice = Broken([](PlacementPlan& p) {
    p.mutable_stages(0)->set_ranks(0, 2);
  });
  EXPECT_EQ(twice, "rank 2 is listed twice in stage 0");
  EXPECT_EQ(Broken([](PlacementPlan& p) { p.mutable_stages(1)->set_ranks(0, 1); }),
            "rank 1 is listed in more than one stage (0 and 1)");
  auto wrong_np = PlanFromJson(*PlanToJson(plan_), config_, 4);
  EXPECT_EQ(wrong_np.status().message(),
            "placement plan: the plan is for a world of 5 ranks (4 shard workers + the coordinator); this one has 4 "
            "(3 shard workers): start `-np 4 shard_worker` or plan for 3 workers");
}

// A pinned plan was only checked for structure: a plan for another model, hosts / NUMA nodes /
// cores the workers do not have, and weight bytes the file simply states (any total, printed
// as is) all ran.
TEST_F(PlanValidationTest, PinnedPlanAgainstTheModel) {
  EXPECT_TRUE(CheckPlanModel(plan_, "glm5-tiny-code").ok());
  PlacementPlan unnamed = plan_;
  unnamed.set_model("");
  EXPECT_TRUE(CheckPlanModel(unnamed, "glm5-tiny-code").ok());
  PlacementPlan other = plan_;
  other.set_model("GLM-5-FP8");
  EXPECT_EQ(CheckPlanModel(other, "glm5-tiny-code").message(),
            "the plan is for model 'GLM-5-FP8' but this coordinator serves 'glm5-tiny-code' (--model): make the plan "
            "for it with `glmctl plan --model DIR --json`, or set the plan's model to \"\" to use it anyway");
}

TEST_F(PlanValidationTest, PinnedPlanBytesAreRecounted) {
  PlacementPlan edited = plan_;
  for (RankAssignment& r : *edited.mutable_ranks()) {
    r.set_weight_bytes(int64_t{1} << 60);  // absurd totals the table printed as they were
    r.set_decode_bytes_per_token(1);
    r.set_predicted_ms_per_token(1e6);
  }
  edited.set_predicted_ms_per_token(123);
  ASSERT_TRUE(RecountPlan(config_, &edited).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(edited, plan_))
      << "recounted:\n" << edited.DebugString() << "planned:\n" << plan_.DebugString();
  // A budget below the recounted weights (0 = unlimited).
  PlacementPlan tight = plan_;
  tight.mutable_ranks(2)->set_memory_budget_bytes(1 << 20);
  tight.mutable_ranks(2)->set_weight_bytes(1);  // the file claiming it fits changes nothing
  tight.mutable_ranks(3)->set_memory_budget_bytes(0);
  absl::Status s = RecountPlan(config_, &tight);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("rank 3 (host b NUMA node 0, stage 1, layers ["), std::string::npos) << s;
  EXPECT_NE(s.message().find("budget 1.0 MiB"), std::string::npos) << s;
  EXPECT_EQ(s.message().find("rank 4"), std::string::npos) << s;
}

TEST_F(PlanValidationTest, PinnedPlanAgainstTheWorkers) {
  const std::vector<WorkerSlot> workers = OnePerNumaNode({Host("a", 2), Host("b", 2)});
  EXPECT_TRUE(CheckPlanAgainstWorkers(plan_, workers).ok()) << CheckPlanAgainstWorkers(plan_, workers);
  auto check = [&](const std::function<void(PlacementPlan&)>& edit, std::vector<WorkerSlot> w) {
    PlacementPlan p = plan_;
    edit(p);
    return std::string(CheckPlanAgainstWorkers(p, w).message());
  };
  // The plan's host names are labels (glmctl names them host0, host1, ...): a plan relabelled
  // consistently fits; one whose grouping differs from the workers' does not.
  PlacementPlan relabelled = plan_;
  for (RankAssignment& r : *relabelled.mutable_ranks()) r.set_host(r.host() == "a" ? "host0" : "host1");
  EXPECT_TRUE(CheckPlanAgainstWorkers(relabelled, workers).ok()) << CheckPlanAgainstWorkers(relabelled, workers);
  EXPECT_EQ(check([](PlacementPlan& p) { p.mutable_ranks(1)->set_host("host0"); }, workers),
            "ranks 1 and 2 run on the same host 'a' but the plan puts them on hosts 'a' and 'host0': the plan's "
            "hosts must match how mpirun placed the ranks");
  EXPECT_EQ(check([](PlacementPlan& p) { p.mutable_ranks(2)->set_host("a"); }, workers),
            "rank 3 has host 'a' like rank 1, but their workers run on 'a' and 'b': the plan's hosts must match how "
            "mpirun placed the ranks");
  EXPECT_EQ(check([](PlacementPlan& p) { p.mutable_ranks(1)->set_numa_node(5); }, workers),
            "rank 2 has numa_node 5 but host 'a' has NUMA nodes 0-1");
  EXPECT_EQ(check([](PlacementPlan& p) { p.mutable_ranks(0)->set_cores(64); }, workers),
            "rank 1 has cores 64 but host 'a' NUMA node 0 has 8 hardware threads");
  const std::string memory = check(
      [](PlacementPlan& p) { p.mutable_ranks(3)->set_memory_budget_bytes(int64_t{40} << 30); }, workers);
  EXPECT_EQ(memory,
            "rank 4: the memory_budget_bytes of the ranks on host 'b' NUMA node 1 add up to 40.0 GiB or more, more "
            "than the 16.0 GiB the worker's topology reports for the node");
  // A worker without a topology (hwloc unavailable) is checked for its host only.
  std::vector<WorkerSlot> bare = workers;
  bare[0].host.clear_numa_nodes();
  EXPECT_TRUE(CheckPlanAgainstWorkers(plan_, bare).ok());
}

TEST_F(PlanValidationTest, ExpertTensorParallelPlansValidate) {
  PlannerOptions options;
  options.expert_layout = "expert-tensor-parallel";
  auto plan = Plan(config_, OnePerNumaNode({Host("a", 2), Host("b", 2)}), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ValidatePlan(*plan, config_, 5).ok()) << ValidatePlan(*plan, config_, 5);
  EXPECT_EQ(plan->ranks(0).experts_size(), 16);
  EXPECT_EQ(plan->ranks(0).expert_slice_end(), 64);
  PlacementPlan broken = *plan;
  broken.mutable_ranks(1)->set_expert_slice_begin(60);
  absl::Status s = ValidatePlan(broken, config_, 5);
  EXPECT_NE(s.message().find("overlap on expert columns"), std::string::npos) << s;
}

}  // namespace
}  // namespace glm::placement
