// The Engine's StepRunner over the real cluster.
#ifndef GLM_COORDINATOR_SCHEDULER_CLUSTER_STEP_RUNNER_H_
#define GLM_COORDINATOR_SCHEDULER_CLUSTER_STEP_RUNNER_H_

#include "coordinator/cluster/cluster_client.h"
#include "coordinator/scheduler/engine.h"

namespace glm::scheduler {

class ClusterStepRunner : public StepRunner {
 public:
  explicit ClusterStepRunner(cluster::ClusterClient* client) : client_(client) {}
  absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override { return client_->Step(plan); }
  absl::Status Submit(const shard::StepPlan& plan) override { return client_->Submit(plan); }
  absl::StatusOr<shard::StepResult> AwaitResult() override { return client_->AwaitResult(); }
  absl::StatusOr<std::vector<shard::RankStats>> CollectRankStats() override { return client_->CollectStats(); }

 private:
  cluster::ClusterClient* client_;
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_CLUSTER_STEP_RUNNER_H_
