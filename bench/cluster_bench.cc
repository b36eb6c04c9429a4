// cluster_bench: rank 0 of `mpirun -np 1 cluster_bench --model DIR : -np R shard_worker`.
// Decodes a batch through the real cluster and reports tokens/s, step time and the part of it
// spent communicating, as a fraction (the bar is <= 5%). Communication is the transfer cost:
// for every collective of a step the minimum time over the stage's ranks (the last rank to
// arrive waits least), plus stage hand-offs; the time ranks spend waiting for slower peers is
// reported separately as load imbalance. bench/run_cluster_bench.sh runs it for 1, 2 and 4 ranks.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/cluster/cluster_client.h"
#include "coordinator/placement/expert_replica_planner.h"
#include "coordinator/placement/model_name.h"
#include "coordinator/placement/planner.h"
#include "shard_worker/comm/mpi_communicator.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/runtime/dashed_flags.h"

ABSL_FLAG(std::string, model, "", "model directory (e.g. glmctl synth --preset bench)");
ABSL_FLAG(int32_t, stages, 1, "pipeline stages");
ABSL_FLAG(std::string, expert_layout, "expert-parallel",
          "expert-parallel (whole experts per rank) | expert-tensor-parallel (a slice of every expert)");
ABSL_FLAG(int32_t, batch, 1, "sequences decoded together");
ABSL_FLAG(int32_t, context, 32, "prompt tokens per sequence");
ABSL_FLAG(double, seconds, 5.0, "decode for about this long");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::string, expert_load, "", "routing statistics (glmctl expert-load) for --hot-expert-replicas");
ABSL_FLAG(std::string, hot_expert_replicas, "0",
          "copies of each MoE layer's N most-chosen experts (the planner's; auto = all that fit)");
ABSL_FLAG(std::string, prompt_ids, "",
          "a file of token ids (whitespace or comma separated) the sequences' prompts are cut from (sequence b "
          "starts at id b * context); default: synthetic ids");

int main(int argc, char** argv) {
  glm::runtime::NormalizeDashedFlags(argc, argv);
  auto session = glm::comm::MpiSession::Init(&argc, &argv);
  if (!session.ok()) return 3;
  absl::ParseCommandLine(argc, argv);
  auto world = (*session)->World();
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (const double seconds = absl::GetFlag(FLAGS_seconds); !(seconds > 0 && seconds <= 86400)) {
    std::fprintf(stderr, "cluster_bench: --seconds must be in (0, 86400], got %g\n", seconds);
    glm::comm::MpiSession::Abort(2);
  }
  auto config = glm::model::ModelConfig::FromFile(dir + "/config.json");
  if (!config.ok()) {
    std::fprintf(stderr, "cluster_bench: %s\n", std::string(config.status().message()).c_str());
    glm::comm::MpiSession::Abort(2);
  }
  const int workers = world->size() - 1, batch = absl::GetFlag(FLAGS_batch), context = absl::GetFlag(FLAGS_context);
  std::optional<glm::placement::ExpertLoad> load;
  if (!absl::GetFlag(FLAGS_expert_load).empty()) {
    auto read = glm::placement::ReadExpertLoadFile(absl::GetFlag(FLAGS_expert_load), *config);
    if (!read.ok()) {
      std::fprintf(stderr, "cluster_bench: --expert-load %s\n", std::string(read.status().message()).c_str());
      glm::comm::MpiSession::Abort(2);
    }
    load = *std::move(read);
  }
  // Prompts: real text's ids route like real text (synthetic ids route unlike anything recorded).
  std::vector<int32_t> prompt_ids;
  if (const std::string path = absl::GetFlag(FLAGS_prompt_ids); !path.empty()) {
    std::ifstream in(path);
    std::string word;
    while (in >> word)
      for (absl::string_view id : absl::StrSplit(word, ',', absl::SkipEmpty())) {
        int32_t v = 0;
        if (!absl::SimpleAtoi(id, &v) || v < 0 || v >= config->vocab_size) {
          std::fprintf(stderr, "cluster_bench: --prompt-ids %s: '%s' is not a token id\n", path.c_str(),
                       std::string(id).c_str());
          glm::comm::MpiSession::Abort(2);
        }
        prompt_ids.push_back(v);
      }
    if (static_cast<int64_t>(prompt_ids.size()) < static_cast<int64_t>(batch) * context) {
      std::fprintf(stderr, "cluster_bench: --prompt-ids %s holds %zu ids; batch x context needs %d\n", path.c_str(),
                   prompt_ids.size(), batch * context);
      glm::comm::MpiSession::Abort(2);
    }
  }
  glm::cluster::ClusterOptions options;
  options.model_dir = dir;
  options.kv_block_size = 32;
  options.kv_blocks = batch * ((context + 4096) / 32 + 2);
  auto client = glm::cluster::ClusterClient::Start(world.get(), options, [&](const std::vector<glm::shard::WorkerHello>& hellos) {
    std::vector<glm::placement::WorkerSlot> slots;
    for (const auto& h : hellos) {
      glm::placement::WorkerSlot s;
      s.host = h.topology();
      s.numa_node = std::max(0, h.bound_numa_node());
      slots.push_back(s);
    }
    glm::placement::PlannerOptions po;
    po.expert_layout = absl::GetFlag(FLAGS_expert_layout);
    po.stages = absl::GetFlag(FLAGS_stages);
    if (!glm::placement::ParseHotExpertReplicas(absl::GetFlag(FLAGS_hot_expert_replicas), &po.hot_expert_replicas))
      return absl::StatusOr<glm::placement::PlacementPlan>(absl::InvalidArgumentError(
          absl::StrCat("--hot-expert-replicas '", absl::GetFlag(FLAGS_hot_expert_replicas), "' is not a count or auto")));
    po.expert_load = load ? &*load : nullptr;
    po.model_name = glm::placement::ModelNameFromPath(dir);
    return glm::placement::Plan(*config, slots, po);
  });
  if (!client.ok()) {
    std::fprintf(stderr, "cluster_bench: %s\n", std::string(client.status().message()).c_str());
    glm::comm::MpiSession::Abort(1);
  }
  const int blocks_per_seq = options.kv_blocks / batch;
  std::vector<int32_t> next(batch);
  std::vector<int64_t> position(batch, context);
  auto table = [&](int b) {
    std::vector<int32_t> t;
    for (int i = 0; i < blocks_per_seq; ++i) t.push_back(b * blocks_per_seq + i);
    return t;
  };
  {  // prefill
    glm::shard::StepPlan plan;
    plan.set_step_id(1);
    for (int b = 0; b < batch; ++b) {
      auto* s = plan.add_sequences();
      s->set_seq_id(b);
      for (int i = 0; i < context; ++i)
        s->add_tokens(prompt_ids.empty() ? static_cast<int32_t>((b * 7919 + i * 104729) % config->vocab_size)
                                         : prompt_ids[static_cast<size_t>(b) * context + i]);
      auto t = table(b);
      s->mutable_block_table()->Add(t.begin(), t.end());
      s->set_sample(true);
    }
    auto r = (*client)->Step(plan);
    if (!r.ok()) glm::comm::MpiSession::Abort(1);
    for (int b = 0; b < batch; ++b) next[b] = r->sequences(b).token();
  }
  double step_total = 0, comm_total = 0, comm_max_total = 0;
  int steps = 0;
  auto start = std::chrono::steady_clock::now();
  const double budget = absl::GetFlag(FLAGS_seconds);
  while (steps < 4 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < budget) {
    glm::shard::StepPlan plan;
    plan.set_step_id(2 + steps);
    for (int b = 0; b < batch; ++b) {
      auto* s = plan.add_sequences();
      s->set_seq_id(b);
      s->add_tokens(next[b]);
      s->set_start_position(position[b]++);
      auto t = table(b);
      s->mutable_block_table()->Add(t.begin(), t.end());
      s->set_sample(true);
      s->set_sample_index(steps + 1);
    }
    auto r = (*client)->Step(plan);
    if (!r.ok()) glm::comm::MpiSession::Abort(1);
    for (int b = 0; b < batch; ++b) next[b] = r->sequences(b).token();
    if (steps > 0) {  // the first decode step warms caches
      step_total += r->step_seconds();
      comm_total += r->comm_seconds();
      comm_max_total += r->comm_seconds_max();
    }
    ++steps;
    if (position[0] + 2 >= config->max_position_embeddings) break;
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Expert-parallel balance, free of timing noise: the routed-expert bytes each rank read (the
  // prefill's included), the busiest against the mean.
  double busiest_expert_ratio = 0;
  if (auto stats = (*client)->CollectStats(); stats.ok() && !stats->empty()) {
    int64_t most = 0, sum = 0;
    for (const auto& r : *stats) most = std::max(most, r.expert_bytes_read()), sum += r.expert_bytes_read();
    if (sum > 0) busiest_expert_ratio = static_cast<double>(most) * stats->size() / sum;
  }
  (*client)->Shutdown().IgnoreError();
  const double tokens_per_s = steps * batch / wall;
  const double comm_fraction = step_total > 0 ? comm_total / step_total : 0;
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("{\"model\":\"%s\",\"ranks\":%d,\"stages\":%d,\"batch\":%d,\"steps\":%d,\"tokens_per_s\":%.3f,"
                "\"step_ms\":%.3f,\"comm_ms\":%.3f,\"comm_fraction\":%.4f,\"imbalance_wait_ms\":%.3f,"
                "\"busiest_rank_expert_bytes_vs_mean\":%.3f}\n",
                dir.c_str(), workers, absl::GetFlag(FLAGS_stages), batch, steps, tokens_per_s,
                1000 * step_total / std::max(1, steps - 1), 1000 * comm_total / std::max(1, steps - 1), comm_fraction,
                1000 * (comm_max_total - comm_total) / std::max(1, steps - 1), busiest_expert_ratio);
  } else {
    std::printf("%d ranks, %d stage(s), batch %d: %.2f tokens/s, step %.2f ms, communication (transfer) %.3f ms per "
                "step = %.1f%% of the step (bar 5%%); waiting for slower ranks up to %.3f ms more (load imbalance)\n",
                workers, absl::GetFlag(FLAGS_stages), batch, tokens_per_s, 1000 * step_total / std::max(1, steps - 1),
                1000 * comm_total / std::max(1, steps - 1), 100 * comm_fraction,
                1000 * (comm_max_total - comm_total) / std::max(1, steps - 1));
    if (busiest_expert_ratio > 0)
      std::printf("routed-expert bytes read: the busiest rank %.3fx the mean of %d (1.000 = even)\n",
                  busiest_expert_ratio, workers);
  }
  return 0;
}
