// `glmctl expert-load`: the routing statistics of a text through the bundled model, in the form
// the planner reads, and `glmctl plan --expert-load --hot-expert-replicas` placing copies from them.
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>

#include "coordinator/cli/model_commands.h"
#include "coordinator/cli/plan_command.h"
#include "coordinator/placement/expert_load.h"
#include "gtest/gtest.h"

namespace glm::cli {
namespace {

const char kModel[] = GLM_MODELS_DIR "/glm5-tiny-code";

TEST(ExpertLoadCommandTest, CountsEveryTokensChoicesInEveryMoeLayer) {
  auto config = model::ModelConfig::FromFile(std::string(kModel) + "/config.json");
  ASSERT_TRUE(config.ok());
  const std::string text = "/tmp/glm_expert_load_text_" + std::to_string(getpid()) + ".py";
  const std::string out = "/tmp/glm_expert_load_" + std::to_string(getpid()) + ".json";
  std::ofstream(text) << "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint(fib(20))\n";
  ModelCommandOptions o;
  o.model_dir = kModel;
  o.text_file = text;
  o.threads = 2;
  o.window = 7;  // several sequences
  auto json = RunExpertLoadCommand(o);
  ASSERT_TRUE(json.ok()) << json.status();
  auto load = placement::ExpertLoadFromJson(*json, *config);
  ASSERT_TRUE(load.ok()) << load.status() << "\n" << *json;
  EXPECT_EQ(load->model, "glm5-tiny-code");
  EXPECT_GT(load->tokens, 7);
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < config->num_hidden_layers; ++l) moe_layers += config->mlp_kind(l) == model::MlpKind::kSparse;
  EXPECT_EQ(static_cast<int64_t>(load->tokens_per_expert.size()), moe_layers);
  for (const auto& [layer, counts] : load->tokens_per_expert) {
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), load->tokens * config->num_experts_per_tok)
        << "layer " << layer;
  }
  // Into a file, then into the planner.
  o.out = out;
  auto summary = RunExpertLoadCommand(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_NE(summary->find("written to " + out), std::string::npos) << *summary;
  PlanCommandOptions p;
  p.model_dir = kModel;
  p.synthetic = "numa:2 core:1";
  p.expert_load = out;
  p.hot_expert_replicas = 2;
  auto plan = RunPlanCommand(p);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NE(plan->find(" hot "), std::string::npos) << *plan;
  EXPECT_NE(plan->find("\"replicas\""), std::string::npos);
  p.expert_load = "/nonexistent/load.json";
  EXPECT_EQ(RunPlanCommand(p).status().code(), absl::StatusCode::kNotFound);
  p.expert_load.clear();
  EXPECT_EQ(RunPlanCommand(p).status().code(), absl::StatusCode::kInvalidArgument);  // replicas need a load
  std::remove(text.c_str());
  std::remove(out.c_str());
}

TEST(ExpertLoadCommandTest, RefusesBadInput) {
  ModelCommandOptions o;
  o.model_dir = kModel;
  EXPECT_EQ(RunExpertLoadCommand(o).status().code(), absl::StatusCode::kInvalidArgument);  // no input
  o.tokens_csv = "1,2,3";
  o.text_file = "/etc/hostname";
  EXPECT_EQ(RunExpertLoadCommand(o).status().code(), absl::StatusCode::kInvalidArgument);  // two inputs
  o.text_file.clear();
  o.window = 0;
  EXPECT_EQ(RunExpertLoadCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.window = 16;
  o.tokens_csv = "1,2,999999";
  EXPECT_EQ(RunExpertLoadCommand(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.tokens_csv.clear();
  o.text_file = "/nonexistent/text.py";
  EXPECT_EQ(RunExpertLoadCommand(o).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace glm::cli
