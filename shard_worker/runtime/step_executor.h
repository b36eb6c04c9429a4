// Runs the coordinator's StepPlans on one shard worker: maps each sequence's block table onto
// the worker's KV pool, runs its pipeline stage (receiving hidden states from the previous
// stage, sending them to the next), and on the last stage samples and reports a StepResult.
#ifndef GLM_SHARD_WORKER_RUNTIME_STEP_EXECUTOR_H_
#define GLM_SHARD_WORKER_RUNTIME_STEP_EXECUTOR_H_

#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/placement.pb.h"
#include "protos/shard.pb.h"
#include "shard_worker/comm/communicator.h"
#include "shard_worker/kv_cache/kv_block_pool.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/last_stage_sampler.h"

namespace glm::runtime {

struct ExecutorContext {
  comm::Communicator* world = nullptr;  // rank 0 is the coordinator
  const placement::PlacementPlan* plan = nullptr;
  int world_rank = 0;
  int64_t kv_blocks = 0;
  int64_t kv_block_size = 0;
  kv_cache::KvDType kv_dtype = kv_cache::KvDType::kF32;
  kv_cache::KvDType index_key_dtype = kv_cache::KvDType::kF32;  // the DSA indexer key rows'
};

class StepExecutor {
 public:
  static absl::StatusOr<std::unique_ptr<StepExecutor>> Create(const model::Glm5Model* model, ExecutorContext ctx);

  // Executes one FORWARD step. A plan every rank rejects in validation (bad block table, bad
  // token) becomes an error StepResult — never a crash, never a rank left waiting.
  absl::Status Execute(const shard::StepPlan& plan);

  // Reports to the coordinator when this rank is the last stage's first rank.
  bool reports_results() const { return is_last_stage_ && tp_index_ == 0; }

  // This rank's counters over every step it executed (the coordinator's per-rank metrics).
  shard::RankStats Stats() const;

  // Touches this rank's whole KV pool now, on the model's threads (KvBlockPool::Prefault); bytes.
  int64_t PrefaultKvCache();

 private:
  StepExecutor(const model::Glm5Model* model, ExecutorContext ctx);
  // Checks the plan against this rank's state (block tables included) without changing it.
  absl::Status Validate(const shard::StepPlan& plan) const;
  // After Validate: every sequence's block table updated with the plan's new entries; returns
  // them in plan order.
  std::vector<const std::vector<int32_t>*> UpdateBlockTables(const shard::StepPlan& plan);
  absl::Status Run(const shard::StepPlan& plan, const std::vector<const std::vector<int32_t>*>& block_tables,
                   shard::StepResult* result);

  const model::Glm5Model* model_;
  ExecutorContext ctx_;
  std::unique_ptr<kv_cache::KvBlockPool> pool_;
  std::unique_ptr<LastStageSampler> sampler_;  // last stage only
  // Each sequence's block table as the steps sent it (SequenceStep::block_table_from), until the
  // plan lists the sequence as finished. The same on every rank: all ranks see every plan.
  std::unordered_map<uint64_t, std::vector<int32_t>> block_tables_;
  int stage_index_ = 0;
  int tp_index_ = 0;
  bool is_first_stage_ = false;
  bool is_last_stage_ = false;
  int prev_stage_leader_ = -1;           // world rank that sends us hidden states
  std::vector<int> next_stage_ranks_;    // world ranks we send hidden states to (as tp rank 0)
  int64_t steps_ = 0;                    // Stats(): steps executed, their wall and comm time
  double step_seconds_ = 0, comm_seconds_ = 0;
};

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_STEP_EXECUTOR_H_
