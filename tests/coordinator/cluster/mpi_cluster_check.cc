// Rank 0 of an MPI cluster test: `mpiexec -np 1 mpi_cluster_check --model M --workers N
// --stages S : -np N shard_worker`. Plans with the real planner, runs a prompt (every logit row)
// and greedy decode through the real shard_worker processes, and compares with the
// single-process engine: within 1e-4·max|ref| per row (bit-identical for pure pipelines) and the
// same tokens. Exit code 0 = pass.
#include <cmath>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "cluster_test_util.h"
#include "coordinator/scheduler/cluster_step_runner.h"
#include "coordinator/scheduler/engine.h"
#include <fstream>
#include <sstream>
#include <thread>
#include "coordinator/placement/expert_replica_planner.h"
#include "nlohmann/json.hpp"
#include "shard_worker/comm/mpi_communicator.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, expert_layout, "expert-parallel", "expert-parallel | expert-tensor-parallel");
ABSL_FLAG(std::string, model, "glm5-tiny-code", "fixture model name");
ABSL_FLAG(int32_t, workers, 1, "shard workers started by mpiexec");
ABSL_FLAG(int32_t, stages, 1, "pipeline stages");
ABSL_FLAG(bool, speculative, false,
          "instead: serve every fixture prompt through the engine greedily with mtp:2 (if the model has MTP), "
          "ngram:3 and without speculation; all outputs must be identical");

ABSL_FLAG(int64_t, hot_expert_replicas, 0,
          "copies of each MoE layer's N hottest experts (a skewed recorded load) on other ranks of the stage");

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  auto session = glm::comm::MpiSession::Init(&argc, &argv);
  if (!session.ok()) return 3;
  absl::ParseCommandLine(argc, argv);
  auto world = (*session)->World();
  const std::string name = absl::GetFlag(FLAGS_model);
  const int workers = absl::GetFlag(FLAGS_workers), stages = absl::GetFlag(FLAGS_stages);
  if (world->size() != workers + 1) {
    std::fprintf(stderr, "expected %d workers, mpiexec started %d\n", workers, world->size() - 1);
    glm::comm::MpiSession::Abort(3);
  }
  const std::string dir = glm::testing::FixtureModelDir(name);
  auto config = glm::model::ModelConfig::FromFile(dir + "/config.json");
  if (!config.ok()) glm::comm::MpiSession::Abort(3);
  glm::cluster::ClusterOptions options;
  options.model_dir = dir;
  options.kv_blocks = 256;
  options.kv_block_size = 16;
  options.step_timeout = absl::Seconds(120);
  auto client = glm::cluster::ClusterClient::Start(world.get(), options, [&](const auto&) {
    auto plan = glm::testing::MakePlan(*config, workers, stages, absl::GetFlag(FLAGS_expert_layout));
    if (plan.ok() && absl::GetFlag(FLAGS_hot_expert_replicas) > 0) {
      auto added = glm::placement::AddHotExpertReplicas(*config, glm::testing::SkewedExpertLoad(*config),
                                                        absl::GetFlag(FLAGS_hot_expert_replicas), &*plan);
      if (!added.ok()) return absl::StatusOr<glm::placement::PlacementPlan>(added.status());
      if (added->added == 0) return absl::StatusOr<glm::placement::PlacementPlan>(absl::InternalError("no replicas placed"));
    }
    return plan;
  });
  if (!client.ok()) {
    std::fprintf(stderr, "cluster start failed: %s\n", std::string(client.status().message()).c_str());
    glm::comm::MpiSession::Abort(1);
  }
  if (absl::GetFlag(FLAGS_speculative)) {
    // Every prompt of the fixture's reference, served by the engine over the MPI cluster.
    std::ifstream in(std::string(GLM_TEST_FIXTURES_DIR) + "/ref-" + name + "/reference.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const nlohmann::json ref = nlohmann::json::parse(ss.str());
    std::vector<std::vector<int32_t>> prompts;
    for (const auto& p : ref["prompts"]) prompts.push_back(p["ids"].get<std::vector<int32_t>>());
    glm::scheduler::ClusterStepRunner runner(client->get());
    glm::scheduler::EngineOptions eo;
    eo.max_context = config->max_position_embeddings;
    eo.vocab_size = static_cast<int32_t>(config->vocab_size);
    eo.eos_token_ids = config->eos_token_ids;
    eo.kv_blocks = options.kv_blocks;
    eo.kv_block_size = options.kv_block_size;
    eo.has_mtp = config->has_mtp();
    auto engine = glm::scheduler::Engine::Create(&runner, eo);
    if (!engine.ok()) glm::comm::MpiSession::Abort(1);
    std::vector<std::string> methods = {"none", "ngram:3"};
    if (config->has_mtp()) methods.push_back("mtp:2");
    int mismatches = 0, runs = 0;
    std::thread clients([&] {
      for (const auto& prompt : prompts) {
        std::vector<int32_t> reference_tokens;
        for (const auto& m : methods) {
          glm::scheduler::GenerationRequest r;
          r.prompt = prompt;
          r.sampling.max_tokens = 24;
          r.sampling.ignore_eos = true;
          r.speculative = m;
          std::vector<int32_t> tokens;
          auto stream = (*engine)->Submit(r);
          if (stream.ok()) {
            glm::scheduler::GenerationEvent e;
            while ((*stream)->Next(&e, absl::Seconds(120))) {
              tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
              if (e.finished) break;
            }
          }
          ++runs;
          if (m == "none") reference_tokens = tokens;
          else if (tokens != reference_tokens) ++mismatches;
        }
      }
      (*engine)->Shutdown(false);
    });
    auto loop = (*engine)->RunLoop();
    clients.join();
    (*client)->Shutdown().IgnoreError();
    const auto load = (*engine)->GetLoad();
    std::printf("%s workers=%d stages=%d speculative: %d runs over %zu prompts, %d mismatches, %ld/%ld drafts accepted\n",
                name.c_str(), workers, stages, runs, prompts.size(), mismatches,
                static_cast<long>(load.spec_accepted_tokens), static_cast<long>(load.spec_draft_tokens));
    return (loop.ok() && mismatches == 0) ? 0 : 1;
  }
  const auto prompt = glm::testing::FixturePrompt(name);
  const int decode_steps = 6;
  auto run = glm::testing::RunThroughCluster(client->get(), prompt, decode_steps, static_cast<int>(config->vocab_size));
  (*client)->Shutdown().IgnoreError();
  auto baseline = glm::testing::RunSingleProcess(dir, prompt, decode_steps);
  if (!run.ok() || !baseline.ok()) {
    std::fprintf(stderr, "run failed: %s / %s\n", std::string(run.status().message()).c_str(),
                 std::string(baseline.status().message()).c_str());
    return 1;
  }
  const int64_t vocab = config->vocab_size;
  const bool pure_pipeline = workers == stages;
  double worst = 0;
  for (size_t row = 0; row < prompt.size(); ++row) {
    double max_ref = 0, max_diff = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double want = baseline->prompt_logits[row * vocab + i], got = run->prompt_logits[row * vocab + i];
      max_ref = std::max(max_ref, std::fabs(want));
      max_diff = std::max(max_diff, std::fabs(got - want));
    }
    const double ratio = pure_pipeline ? (max_diff == 0 ? 0 : INFINITY) : max_diff / (1e-4 * max_ref);
    worst = std::max(worst, ratio);
  }
  const bool tokens_equal = run->greedy == baseline->greedy;
  std::printf("%s workers=%d stages=%d: %zu logit rows, worst error ratio %.3g (%s), greedy %s\n", name.c_str(), workers,
              stages, prompt.size(), worst, pure_pipeline ? "must be bit-identical" : "bar 1e-4 x max|ref|",
              tokens_equal ? "identical" : "DIFFERENT");
  return (worst <= 1.0 && tokens_equal) ? 0 : 1;
}
