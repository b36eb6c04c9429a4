#include "coordinator/cli/plan_command.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/placement/model_name.h"
#include "coordinator/placement/planner.h"
#include "gtest/gtest.h"
#include "numa/topology.h"
#include "shard_worker/model/synth_checkpoint.h"

namespace glm::cli {
namespace {

const char kTinyModel[] = GLM_MODELS_DIR "/glm5-tiny-code";

TEST(PlanCommandTest, SyntheticHostPrintsTableThenJson) {
  PlanCommandOptions o;
  o.model_dir = kTinyModel;
  o.synthetic = "pack:2 numa:2 core:16";
  auto out = RunPlanCommand(o);
  ASSERT_TRUE(out.ok()) << out.status();
  const size_t table = out->find("Placement of glm5-tiny-code: 4 worker ranks, 1 pipeline stage,");
  const size_t json = out->find("{");
  EXPECT_NE(table, std::string::npos) << *out;
  ASSERT_NE(json, std::string::npos) << *out;
  EXPECT_LT(table, json);
  EXPECT_NE(out->find("host0"), std::string::npos) << *out;

  o.json = true;
  auto only_json = RunPlanCommand(o);
  ASSERT_TRUE(only_json.ok()) << only_json.status();
  ASSERT_EQ(only_json->front(), '{');
  auto config = model::ModelConfig::FromFile(std::string(kTinyModel) + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto plan = placement::PlanFromJson(*only_json, *config, 5);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->ranks_size(), 4);
}

TEST(PlanCommandTest, XmlTopologyOnSeveralHosts) {
  auto topo = numa::Topology::FromSynthetic("pack:2 core:8", 32);
  ASSERT_TRUE(topo.ok()) << topo.status();
  auto xml = (*topo)->ToXml();
  ASSERT_TRUE(xml.ok()) << xml.status();
  const std::string path = absl::StrCat(::testing::TempDir(), "/plan_topo_", getpid(), ".xml");
  {
    std::ofstream out(path);
    out << *xml;
  }
  PlanCommandOptions o;
  o.model_dir = std::string(kTinyModel) + "/config.json";
  o.topology_xml = path;
  o.hosts = 3;
  o.json = true;
  o.bandwidth_gbps = 50;
  auto out = RunPlanCommand(o);
  std::remove(path.c_str());
  ASSERT_TRUE(out.ok()) << out.status();
  auto config = model::ModelConfig::FromFile(o.model_dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto plan = placement::PlanFromJson(*out, *config, 4);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->stages_size(), 3);
  EXPECT_EQ(plan->ranks(2).host(), "host2");
  EXPECT_DOUBLE_EQ(plan->ranks(0).bandwidth_gbps(), 50);
}

TEST(PlanCommandTest, Glm5NeedsMoreThanDefaultSyntheticMemory) {
  auto preset = model::SynthPresetByName("glm5");
  ASSERT_TRUE(preset.ok()) << preset.status();
  const std::string dir = absl::StrCat(::testing::TempDir(), "/plan_glm5_", getpid());
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/config.json");
    out << preset->config.ToJson();
  }
  PlanCommandOptions o;
  o.model_dir = dir;
  o.synthetic = "pack:2 numa:2 core:16";  // 4 x 64 GiB
  auto small = RunPlanCommand(o);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted) << small.status();
  o.numa_memory_gib = 256;
  auto big = RunPlanCommand(o);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_NE(big->find("ms/token"), std::string::npos);
}

TEST(PlanCommandTest, WeightDtypeKvDtypeAndExpertMemoryReachThePlan) {
  PlanCommandOptions o;
  o.model_dir = kTinyModel;
  o.synthetic = "pack:1 numa:2 core:4";
  o.weight_dtype = "int4";
  o.expert_memory_gib = 0.002;
  auto out = RunPlanCommand(o);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("weights int4 (experts)"), std::string::npos) << *out;
  EXPECT_NE(out->find("routed experts beyond 2.0 MiB per rank stay on disk"), std::string::npos) << *out;
  EXPECT_NE(out->find("\"weight_dtype\": \"int4\""), std::string::npos) << *out;
  EXPECT_NE(out->find("\"expert_memory_bytes\": \"2147483\""), std::string::npos) << *out;
  o.kv_cache_dtype = "int8";
  auto int8_kv = RunPlanCommand(o);
  ASSERT_TRUE(int8_kv.ok()) << int8_kv.status();
  EXPECT_NE(int8_kv->find("weights int4 (experts), int8 KV cache"), std::string::npos) << *int8_kv;
  EXPECT_NE(int8_kv->find("\"kv_cache_dtype\": \"int8\""), std::string::npos) << *int8_kv;
  o.index_key_dtype = "bf16";
  auto bf16_index = RunPlanCommand(o);
  ASSERT_TRUE(bf16_index.ok()) << bf16_index.status();
  EXPECT_NE(bf16_index->find("int8 KV cache, bf16 indexer keys"), std::string::npos) << *bf16_index;
  EXPECT_NE(bf16_index->find("\"index_key_dtype\": \"bf16\""), std::string::npos) << *bf16_index;
  o.index_key_dtype = "f32";
  o.kv_cache_dtype = "f16";
  EXPECT_NE(RunPlanCommand(o).status().message().find("KV cache dtype 'f16' is not one of"), std::string::npos);
  o.kv_cache_dtype = "f32";
  o.weight_dtype = "int5";
  auto bad = RunPlanCommand(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'int5'"), std::string::npos) << bad.status();
  o.weight_dtype = "int8";
  o.quantize_scope = "everything";
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.quantize_scope = "all";
  o.expert_memory_gib = -0.5;
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Non-finite or huge GiB / bandwidth flags made garbage plans: "kv_reserve_bytes":
// "-9223372036854775808", "budget -8589934592.0 GiB", "0.00 ms/token, 20000 tokens/s", and nan
// silently taken as 0. Each is refused naming the flag.
TEST(PlanCommandTest, NonFiniteOrHugeSizeFlagsAreRefused) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  struct Case {
    double PlanCommandOptions::*field;
    double value;
    const char* message;
  };
  const Case cases[] = {
      {&PlanCommandOptions::kv_cache_gib, inf, "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got inf"},
      {&PlanCommandOptions::kv_cache_gib, nan, "--kv-cache-gib must be a finite number of GiB from 0 to 1048576, got nan"},
      {&PlanCommandOptions::expert_memory_gib, 1e30,
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), got "
       "1e+30"},
      {&PlanCommandOptions::expert_memory_gib, -0.5,
       "--expert-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = all routed experts resident), got "
       "-0.5"},
      {&PlanCommandOptions::memory_budget_gib, inf,
       "--memory-budget-gib must be a finite number of GiB from 0 to 1048576 (0 = 90% of the NUMA node's share), "
       "got inf"},
      {&PlanCommandOptions::memory_budget_gib, nan,
       "--memory-budget-gib must be a finite number of GiB from 0 to 1048576 (0 = 90% of the NUMA node's share), "
       "got nan"},
      {&PlanCommandOptions::numa_memory_gib, 1e30,
       "--numa-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = 64), got 1e+30"},
      {&PlanCommandOptions::numa_memory_gib, nan,
       "--numa-memory-gib must be a finite number of GiB from 0 to 1048576 (0 = 64), got nan"},
      {&PlanCommandOptions::bandwidth_gbps, inf,
       "--bandwidth-gbps must be a finite number of GB/s from 0 to 1048576 (0 = estimate), got inf"},
      {&PlanCommandOptions::bandwidth_gbps, nan,
       "--bandwidth-gbps must be a finite number of GB/s from 0 to 1048576 (0 = estimate), got nan"},
      {&PlanCommandOptions::bandwidth_gbps, -3,
       "--bandwidth-gbps must be a finite number of GB/s from 0 to 1048576 (0 = estimate), got -3"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.message);
    PlanCommandOptions o;
    o.model_dir = kTinyModel;
    o.synthetic = "pack:1 numa:2 core:4";
    o.json = true;
    o.*k.field = k.value;
    auto out = RunPlanCommand(o);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << (out.ok() ? *out : "");
    EXPECT_EQ(out.status().message(), k.message);
  }
}

// glmctl plan reserved no KV cache by default while the coordinator reserves 1 GiB per rank:
// `--memory-budget-gib 0.5` fitted in glmctl and failed in the coordinator ("needs 1.0 GiB
// (weights 0.0 GiB + KV reserve 1.0 GiB)"). Both default to kDefaultKvCacheGib now.
TEST(PlanCommandTest, KvCacheDefaultIsTheCoordinators) {
  PlanCommandOptions o;
  EXPECT_EQ(o.kv_cache_gib, placement::kDefaultKvCacheGib);
  EXPECT_EQ(placement::kDefaultKvCacheGib, 1.0);
  o.model_dir = kTinyModel;
  o.synthetic = "numa:1 core:2";
  o.memory_budget_gib = 0.5;
  auto out = RunPlanCommand(o);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << (out.ok() ? *out : "");
  EXPECT_NE(out.status().message().find("KV reserve 1.0 GiB"), std::string::npos) << out.status();
  o.kv_cache_gib = 0.25;
  EXPECT_TRUE(RunPlanCommand(o).ok());
}

// `--model models/glm5-tiny-code/` gave the coordinator an empty model name (served '', the
// /v1/models id ""): the name ignores a trailing slash like glmctl plan's always did.
TEST(PlanCommandTest, ModelNameIgnoresTrailingSlashesAndConfigJson) {
  for (const char* path : {"models/glm5-tiny-code", "models/glm5-tiny-code/", "models/glm5-tiny-code//",
                           "models/glm5-tiny-code/.", "./models/glm5-tiny-code/./",
                           "models/glm5-tiny-code/config.json", "/abs/glm5-tiny-code/", "glm5-tiny-code/"}) {
    EXPECT_EQ(placement::ModelNameFromPath(path), "glm5-tiny-code") << path;
  }
  const std::string cwd = std::filesystem::current_path().filename().string();
  EXPECT_EQ(placement::ModelNameFromPath("."), cwd);
  EXPECT_EQ(placement::ModelNameFromPath("./"), cwd);
  PlanCommandOptions o;
  o.model_dir = std::string(kTinyModel) + "/";
  o.synthetic = "numa:1 core:2";
  o.json = true;
  auto out = RunPlanCommand(o);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("\"model\": \"glm5-tiny-code\""), std::string::npos) << *out;
}

TEST(PlanCommandTest, RejectsBadOptions) {
  PlanCommandOptions o;
  o.model_dir = kTinyModel;
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);  // no topology
  o.synthetic = "pack:2 numa:2 core:16";
  o.topology_xml = "/tmp/x.xml";
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);  // both
  o.topology_xml.clear();
  o.hosts = 0;
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.hosts = 1;
  o.expert_layout = "bogus";
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.expert_layout = "expert-parallel";
  o.model_dir = "/nonexistent-model";
  EXPECT_EQ(RunPlanCommand(o).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace glm::cli
