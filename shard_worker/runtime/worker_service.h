// A shard worker's life: say hello (topology, binding) to the coordinator, receive the plan,
// load exactly its part of the model into memory, report ready, then execute StepPlans until
// SHUTDOWN. The same function runs under MPI (bin/shard_worker) and on threads in tests.
#ifndef GLM_SHARD_WORKER_RUNTIME_WORKER_SERVICE_H_
#define GLM_SHARD_WORKER_RUNTIME_WORKER_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "protos/shard.pb.h"
#include "shard_worker/comm/communicator.h"
#include "shard_worker/model/model_weights.h"

namespace glm::runtime {

struct WorkerOptions {
  int threads = 0;  // compute threads; 0 = the plan's cores for this rank, else all cores
  // This worker's hello (topology and binding); filled by the caller (bin/shard_worker binds
  // with hwloc first).
  shard::WorkerHello hello;
  // Progress and errors, one line each (bin/shard_worker prints them to stderr).
  std::function<void(const std::string&)> log;
  // Pins compute thread `index` (0 = the calling thread) to a core of this rank's NUMA node;
  // called only when the plan gives the rank its node to itself (ranks sharing a node leave
  // scheduling to the OS). Unset: threads are never pinned (no topology, --bind none). Its
  // status goes into the start-up log line that states the threads and their pinning.
  std::function<absl::Status(int index)> pin_thread;
  // Commit the KV cache at start-up (StepExecutor::PrefaultKvCache); false: its pages are taken as
  // blocks are first written (bin/shard_worker --kv_prefault).
  bool prefault_kv = true;
};

// The load options of `rank` in `plan`: its layers, heads, slices and experts, and the plan's
// weight_dtype / quantize_scope and the rank's expert_memory_bytes. InvalidArgument when the
// plan names values this worker cannot load as asked.
absl::StatusOr<model::LoadOptions> LoadOptionsFor(const placement::PlacementPlan& plan, int rank,
                                                  const model::ModelConfig& config);

// Runs until the coordinator sends SHUTDOWN (returns OK) or communication fails.
absl::Status RunWorker(comm::Communicator* world, const WorkerOptions& options);

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_WORKER_SERVICE_H_
