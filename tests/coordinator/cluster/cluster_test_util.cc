#include "cluster_test_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "coordinator/placement/planner.h"
#include "shard_worker/comm/in_process_communicator.h"
#include "shard_worker/runtime/worker_service.h"
#include "nlohmann/json.hpp"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"

namespace glm::testing {

std::vector<Layout> AcceptanceLayouts() {
  return {{"one_worker", 1, 1},
          {"two_workers_tp_ep", 2, 1},
          {"three_workers_uneven", 3, 1},
          {"two_stages_by_two", 4, 2},
          {"four_stages", 4, 4},
          {"two_workers_tp_etp", 2, 1, "expert-tensor-parallel"},
          {"three_workers_etp_uneven", 3, 1, "expert-tensor-parallel"},
          {"two_stages_by_two_etp", 4, 2, "expert-tensor-parallel"}};
}

placement::ExpertLoad SkewedExpertLoad(const model::ModelConfig& config) {
  placement::ExpertLoad load;
  for (int64_t l = 0; l < config.num_weight_layers(); ++l) {
    if (config.mlp_kind(l) != model::MlpKind::kSparse) continue;
    auto& counts = load.tokens_per_expert[l];
    for (int64_t e = 0; e < config.n_routed_experts; ++e) counts.push_back((e * 7 + l) % config.n_routed_experts + 1);
  }
  return load;
}

absl::StatusOr<placement::PlacementPlan> MakePlan(const model::ModelConfig& config, int workers, int stages,
                                                  const std::string& expert_layout,
                                                  const std::string& activation_dtype) {
  placement::HostTopology host;
  host.set_hostname("testhost");
  host.set_packages(1);
  for (int i = 0; i < workers; ++i) {
    auto* node = host.add_numa_nodes();
    node->set_os_index(i);
    node->set_cores(1);
    node->set_pus(1);
    node->set_memory_bytes(int64_t{8} << 30);
  }
  placement::PlannerOptions options;
  options.stages = stages;
  options.expert_layout = expert_layout;
  options.activation_dtype = activation_dtype;
  options.model_name = "test";
  return placement::Plan(config, placement::OnePerNumaNode({host}), options);
}

absl::StatusOr<ClusterRun> RunThroughCluster(cluster::ClusterClient* client, const std::vector<int32_t>& prompt,
                                             int decode_steps, int vocab) {
  ClusterRun run;
  const int block_size = client->options().kv_block_size;
  const int total = static_cast<int>(prompt.size()) + decode_steps;
  std::vector<int32_t> blocks;
  for (int b = 0; b * block_size < total; ++b) blocks.push_back(b);
  shard::StepPlan plan;
  plan.set_step_id(1);
  auto* s = plan.add_sequences();
  s->set_seq_id(7);
  s->mutable_tokens()->Add(prompt.begin(), prompt.end());
  s->set_start_position(0);
  s->mutable_block_table()->Add(blocks.begin(), blocks.end());
  s->set_sample(true);
  s->set_return_logits(true);
  auto result = client->Step(plan);
  if (!result.ok()) return result.status();
  const auto& r = result->sequences(0);
  if (r.logits_size() != static_cast<int>(prompt.size()) * vocab)
    return absl::InternalError("wrong number of logits returned");
  run.prompt_logits.assign(r.logits().begin(), r.logits().end());
  int32_t token = r.token();
  int64_t position = static_cast<int64_t>(prompt.size());
  for (int i = 0; i < decode_steps; ++i) {
    run.greedy.push_back(token);
    if (i + 1 == decode_steps) break;
    shard::StepPlan step;
    step.set_step_id(2 + i);
    auto* d = step.add_sequences();
    d->set_seq_id(7);
    d->add_tokens(token);
    d->set_start_position(position++);
    d->mutable_block_table()->Add(blocks.begin(), blocks.end());
    d->set_sample(true);
    d->set_sample_index(i + 1);
    auto res = client->Step(step);
    if (!res.ok()) return res.status();
    token = res->sequences(0).token();
  }
  return run;
}

absl::StatusOr<ClusterRun> RunSingleProcess(const std::string& model_dir, const std::vector<int32_t>& prompt,
                                            int decode_steps) {
  auto ckpt = model::Checkpoint::Open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = model::ModelWeights::Load(**ckpt);
  if (!weights.ok()) return weights.status();
  kernels::ThreadPool pool(1);
  auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
  if (!m.ok()) return m.status();
  const int64_t vocab = (*m)->config().vocab_size;
  auto cache = (*m)->NewCache();
  std::vector<model::SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens = prompt;
  auto out = (*m)->Forward(batch, model::LogitRows::kAll);
  if (!out.ok()) return out.status();
  ClusterRun run;
  run.prompt_logits = out->logits;
  const float* last = out->logits.data() + (prompt.size() - 1) * vocab;
  int32_t token = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
  for (int i = 0; i < decode_steps; ++i) {
    run.greedy.push_back(token);
    if (i + 1 == decode_steps) break;
    batch[0].tokens = {token};
    auto step = (*m)->Forward(batch, model::LogitRows::kLast);
    if (!step.ok()) return step.status();
    token = static_cast<int32_t>(std::max_element(step->logits.begin(), step->logits.end()) - step->logits.begin());
  }
  return run;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const std::string& model_dir, int workers, int stages,
                                                                  int kv_blocks, int kv_block_size, int worker_threads,
                                                                  const std::string& kv_cache_dtype,
                                                                  const std::string& index_key_dtype) {
  auto lc = std::unique_ptr<LocalCluster>(new LocalCluster());
  auto config = model::ModelConfig::FromFile(model_dir + "/config.json");
  if (!config.ok()) return config.status();
  lc->config_ = *config;
  lc->comms_ = comm::InProcessCommunicator::CreateGroup(workers + 1);
  for (int r = 1; r <= workers; ++r) {
    comm::Communicator* c = lc->comms_[r].get();
    lc->threads_.emplace_back([c, worker_threads] {
      runtime::WorkerOptions o;
      o.threads = worker_threads;
      runtime::RunWorker(c, o).IgnoreError();
    });
  }
  cluster::ClusterOptions options;
  options.model_dir = model_dir;
  options.kv_blocks = kv_blocks;
  options.kv_block_size = kv_block_size;
  options.kv_cache_dtype = kv_cache_dtype;
  options.index_key_dtype = index_key_dtype;
  const model::ModelConfig cfg = *config;
  auto client = cluster::ClusterClient::Start(lc->comms_[0].get(), options,
                                              [&](const auto&) { return MakePlan(cfg, workers, stages); });
  if (!client.ok()) return client.status();  // (workers exit on the empty setup or shutdown)
  lc->client_ = std::move(*client);
  return lc;
}

LocalCluster::~LocalCluster() {
  if (client_) client_->Shutdown().IgnoreError();
  for (auto& t : threads_) t.join();
}

std::string FixtureModelDir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

std::vector<int32_t> FixturePrompt(const std::string& name) {
  std::ifstream in(std::filesystem::path(GLM_TEST_FIXTURES_DIR) / ("ref-" + name) / "reference.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str());
  // The longest prompt under 128 tokens: long enough for sparse selection in the random models.
  std::vector<int32_t> best;
  for (const auto& p : j["prompts"]) {
    auto ids = p["ids"].get<std::vector<int32_t>>();
    if (ids.size() <= 128 && ids.size() > best.size()) best = ids;
  }
  return best;
}

}  // namespace glm::testing
