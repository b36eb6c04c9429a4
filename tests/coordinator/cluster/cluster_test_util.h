// Shared by the in-process and the MPI cluster tests: layouts, plans and the single-process
// baseline to compare against.
#ifndef GLM_TESTS_COORDINATOR_CLUSTER_CLUSTER_TEST_UTIL_H_
#define GLM_TESTS_COORDINATOR_CLUSTER_CLUSTER_TEST_UTIL_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/cluster/cluster_client.h"
#include "coordinator/placement/expert_load.h"
#include "protos/placement.pb.h"
#include "shard_worker/comm/communicator.h"
#include "shard_worker/model/model_config.h"

namespace glm::testing {

struct Layout {
  std::string name;
  int workers;
  int stages;
  std::string expert_layout = "expert-parallel";  // or "expert-tensor-parallel"
};

// The layouts the cluster must reproduce the single-process engine with.
std::vector<Layout> AcceptanceLayouts();

// A plan for `workers` single-core workers (one NUMA node each, on one host) in `stages` stages,
// made by the real planner.
absl::StatusOr<placement::PlacementPlan> MakePlan(const model::ModelConfig& config, int workers, int stages,
                                                  const std::string& expert_layout = "expert-parallel",
                                                  const std::string& activation_dtype = "f32");

// A recorded routing load for hot-expert replica tests: expert e of MoE layer l (the MTP layer
// included) chosen by (7e + l) % n_routed_experts + 1 tokens, a different hottest set per layer.
placement::ExpertLoad SkewedExpertLoad(const model::ModelConfig& config);

// Logits [n_tokens, vocab] of a prompt through the cluster (one prefill step with
// return_logits), then `decode_steps` greedy tokens through the cache.
struct ClusterRun {
  std::vector<float> prompt_logits;
  std::vector<int32_t> greedy;
};
absl::StatusOr<ClusterRun> RunThroughCluster(cluster::ClusterClient* client, const std::vector<int32_t>& prompt,
                                             int decode_steps, int vocab);

// The same with the single-process engine.
absl::StatusOr<ClusterRun> RunSingleProcess(const std::string& model_dir, const std::vector<int32_t>& prompt,
                                            int decode_steps);

// A cluster on threads (in-process transport): worker threads running RunWorker and a
// ClusterClient for the calling side. Shuts the workers down and joins them on destruction.
class LocalCluster {
 public:
  // `worker_threads`: compute threads of every worker.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const std::string& model_dir, int workers, int stages,
                                                             int kv_blocks, int kv_block_size, int worker_threads = 1,
                                                             const std::string& kv_cache_dtype = "f32",
                                                             const std::string& index_key_dtype = "f32");
  ~LocalCluster();
  cluster::ClusterClient* client() { return client_.get(); }
  const model::ModelConfig& config() const { return config_; }

 private:
  LocalCluster() = default;
  model::ModelConfig config_;
  std::vector<std::unique_ptr<comm::Communicator>> comms_;
  std::vector<std::thread> threads_;
  std::unique_ptr<cluster::ClusterClient> client_;
};

// Model directory of a fixture model name.
std::string FixtureModelDir(const std::string& name);
// A prompt of each fixture model long enough to exercise sparse attention where the model has it.
std::vector<int32_t> FixturePrompt(const std::string& name);

}  // namespace glm::testing

#endif  // GLM_TESTS_COORDINATOR_CLUSTER_CLUSTER_TEST_UTIL_H_
