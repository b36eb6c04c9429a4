// The coordinator's side of the step protocol: starts the workers (hello -> plan -> setup ->
// ready), then turns each StepPlan into one broadcast and one StepResult from the last stage.
// A worker that does not answer within the step timeout is reported as UNAVAILABLE; the caller
// fails its requests and ends the job.
#ifndef GLM_COORDINATOR_CLUSTER_CLUSTER_CLIENT_H_
#define GLM_COORDINATOR_CLUSTER_CLUSTER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/placement.pb.h"
#include "protos/shard.pb.h"
#include "coordinator/cluster/local_worker_watch.h"
#include "shard_worker/comm/communicator.h"

namespace glm::cluster {

struct ClusterOptions {
  std::string model_dir;
  int32_t kv_blocks = 0;      // physical KV blocks per worker
  // Or: derive them from the plan (e.g. a memory budget over the largest stage's block size).
  std::function<int32_t(const placement::PlacementPlan&)> kv_blocks_for_plan;
  int32_t kv_block_size = 32;
  std::string kv_cache_dtype = "f32";  // the workers' KV rows: f32 | bf16 | fp8_e4m3 | int8 (kv_cache::ParseKvDType)
  std::string index_key_dtype = "f32";  // their DSA indexer key rows (the same names)
  absl::Duration startup_timeout = absl::Minutes(30);  // loading a large model takes a while
  absl::Duration step_timeout = absl::Seconds(120);
  // Run by Start's waits (hellos, loading) with the local worker watch: a non-OK status (a stop
  // signal while the workers load) ends the start with it. Not used once Start returns.
  std::function<absl::Status()> start_check;
};

// Makes the plan from the workers' hellos (their topologies and bindings).
using PlanFunction =
    std::function<absl::StatusOr<placement::PlacementPlan>(const std::vector<shard::WorkerHello>& hellos)>;

class ClusterClient {
 public:
  // Collective with every worker. On failure (bad plan, a worker failed to load) the workers are
  // told to shut down before the error is returned, and *workers_released (if given) is set: they
  // exit cleanly on their own, so the caller should finalize MPI and exit rather than MPI_Abort
  // (an abort racing the workers' MPI_Finalize can leave mpirun waiting forever). It stays false
  // when a worker never answered (the caller must abort the job).
  static absl::StatusOr<std::unique_ptr<ClusterClient>> Start(comm::Communicator* world, const ClusterOptions& options,
                                                              const PlanFunction& plan_function,
                                                              bool* workers_released = nullptr);

  const placement::PlacementPlan& plan() const { return plan_; }
  const std::vector<shard::WorkerHello>& hellos() const { return hellos_; }
  const std::vector<shard::WorkerReady>& ready() const { return ready_; }
  const ClusterOptions& options() const { return options_; }
  int32_t kv_blocks() const { return options_.kv_blocks; }

  // One step on every rank. Errors: INVALID_ARGUMENT (the workers rejected the plan; the cluster
  // is fine), UNAVAILABLE (a worker failed the step (StepResult::fatal), died or timed out; the
  // cluster is not usable any more).
  absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan);
  // Step in halves, for steps in flight together (pipeline stages working on different
  // micro-batches): Submit sends every worker the plan and returns; AwaitResult waits for the
  // oldest submitted step's result (the last stage answers in submission order). Errors as Step's;
  // after an UNAVAILABLE one the cluster is not usable and no other result will come.
  absl::Status Submit(const shard::StepPlan& plan);
  absl::StatusOr<shard::StepResult> AwaitResult();
  // Every worker's counters (RankStats), in rank order; between steps only. UNAVAILABLE (and the
  // cluster unusable) when a worker does not answer within the step timeout.
  absl::StatusOr<std::vector<shard::RankStats>> CollectStats();
  // Tells every worker to exit (idempotent).
  absl::Status Shutdown();
  bool healthy() const { return healthy_; }
  // Workers on the coordinator's host whose processes are watched (LocalWorkerWatch).
  int watched_local_workers() const { return watch_.watched(); }
  ~ClusterClient();

 private:
  ClusterClient(comm::Communicator* world, ClusterOptions options);
  // Posts a StepPlan's bytes to every worker, the first stage's ranks first (kTagPlan).
  absl::Status PostToWorkers(const std::string& bytes);

  comm::Communicator* world_;
  ClusterOptions options_;
  placement::PlacementPlan plan_;
  std::vector<shard::WorkerHello> hellos_;
  std::vector<shard::WorkerReady> ready_;
  std::unique_ptr<comm::Communicator> stage_comm_;  // the coordinator's (unused) split group
  int result_rank_ = -1;
  std::vector<int> workers_by_stage_;  // every worker rank, the first stage's first
  bool healthy_ = true;
  bool shut_down_ = false;
  LocalWorkerWatch watch_;  // run by world_'s waits (SetWaitCheck) from the first hello on
};

}  // namespace glm::cluster

#endif  // GLM_COORDINATOR_CLUSTER_CLUSTER_CLIENT_H_
