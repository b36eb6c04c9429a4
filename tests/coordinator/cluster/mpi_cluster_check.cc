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
#include "shard_worker/comm/mpi_communicator.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, model, "glm5-tiny-code", "fixture model name");
ABSL_FLAG(int32_t, workers, 1, "shard workers started by mpiexec");
ABSL_FLAG(int32_t, stages, 1, "pipeline stages");

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
  options.kv_blocks = 64;
  options.kv_block_size = 16;
  options.step_timeout = absl::Seconds(120);
  auto client = glm::cluster::ClusterClient::Start(world.get(), options, [&](const auto&) {
    return glm::testing::MakePlan(*config, workers, stages);
  });
  if (!client.ok()) {
    std::fprintf(stderr, "cluster start failed: %s\n", std::string(client.status().message()).c_str());
    glm::comm::MpiSession::Abort(1);
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
