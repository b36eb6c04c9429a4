#include "coordinator/cluster/cluster_client.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "shard_worker/runtime/protocol_tags.h"

namespace glm::cluster {
namespace {

std::string ThisHost() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace

ClusterClient::ClusterClient(comm::Communicator* world, ClusterOptions options)
    : world_(world), options_(std::move(options)), watch_(ThisHost()) {}

ClusterClient::~ClusterClient() { world_->SetWaitCheck(nullptr); }

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Start(comm::Communicator* world,
                                                                    const ClusterOptions& options,
                                                                    const PlanFunction& plan_function,
                                                                    bool* workers_released) {
  bool released_storage = false;
  bool& released = workers_released != nullptr ? *workers_released : released_storage;
  released = false;
  if (world->rank() != 0) return absl::FailedPreconditionError("the coordinator must be rank 0");
  if (world->size() < 2) return absl::FailedPreconditionError("no shard workers: start at least one (mpirun ... : -np N shard_worker)");
  auto client = std::unique_ptr<ClusterClient>(new ClusterClient(world, options));
  for (int r = 1; r < world->size(); ++r) {
    std::string bytes;
    if (auto s = world->RecvStringWithTimeout(r, runtime::kTagHello, &bytes, options.startup_timeout); !s.ok())
      return absl::UnavailableError(absl::StrCat("worker ", r, " did not say hello: ", s.message()));
    shard::WorkerHello hello;
    if (!hello.ParseFromString(bytes)) return absl::DataLossError(absl::StrCat("worker ", r, ": unreadable hello"));
    client->hellos_.push_back(hello);
    client->watch_.Add(hello);
  }
  // From here on every wait of the coordinator notices a local worker's exit at once: while the
  // workers load (a worker killed then no longer leaves the start-up waiting for 30 minutes)
  // and during every step.
  world->SetWaitCheck([c = client.get()] {
    if (c->options_.start_check)
      if (absl::Status s = c->options_.start_check(); !s.ok()) return s;
    return c->watch_.Check();
  });
  auto plan = plan_function(client->hellos_);
  shard::WorkerSetup setup;
  if (plan.ok() && client->options_.kv_blocks_for_plan) client->options_.kv_blocks = client->options_.kv_blocks_for_plan(*plan);
  if (plan.ok() && client->options_.kv_blocks <= 0) plan = absl::InvalidArgumentError(
        "the KV cache budget gives no blocks: raise --kv-cache-gib or lower --kv-block-size");
  if (plan.ok()) {
    client->plan_ = *plan;
    setup.set_model_dir(options.model_dir);
    *setup.mutable_plan() = *plan;
    setup.set_kv_blocks(client->options_.kv_blocks);
    setup.set_kv_block_size(client->options_.kv_block_size);
    setup.set_kv_cache_dtype(client->options_.kv_cache_dtype);
    setup.set_index_key_dtype(client->options_.index_key_dtype);
  }
  std::string bytes = setup.SerializeAsString();
  if (auto s = world->BroadcastString(0, &bytes); !s.ok()) return s;
  if (!plan.ok()) {
    released = true;  // workers saw an empty setup and exit
    return plan.status();
  }
  auto split = world->Split(0, 0);
  if (!split.ok()) return split.status();
  client->stage_comm_ = std::move(*split);
  client->result_rank_ = plan->stages(plan->stages_size() - 1).ranks(0);
  for (const auto& stage : plan->stages())
    for (int r : stage.ranks()) client->workers_by_stage_.push_back(r);
  for (int r = 1; r < world->size(); ++r)  // a rank the plan leaves out still takes the plans
    if (std::find(client->workers_by_stage_.begin(), client->workers_by_stage_.end(), r) == client->workers_by_stage_.end())
      client->workers_by_stage_.push_back(r);
  std::string errors;
  for (int r = 1; r < world->size(); ++r) {
    std::string b;
    if (auto s = world->RecvStringWithTimeout(r, runtime::kTagReady, &b, options.startup_timeout); !s.ok())
      return absl::UnavailableError(absl::StrCat("worker ", r, " did not finish loading: ", s.message()));
    shard::WorkerReady ready;
    ready.ParseFromString(b);
    if (!ready.error().empty()) absl::StrAppend(&errors, errors.empty() ? "" : "; ", ready.error());
    client->ready_.push_back(ready);
  }
  client->options_.start_check = nullptr;  // started: a signal from now on drains (coordinator_main)
  if (!errors.empty()) {
    released = client->Shutdown().ok();
    return absl::FailedPreconditionError(absl::StrCat("loading failed: ", errors));
  }
  return client;
}

absl::StatusOr<shard::StepResult> ClusterClient::Step(const shard::StepPlan& plan) {
  if (auto s = Submit(plan); !s.ok()) return s;
  return AwaitResult();
}

absl::Status ClusterClient::PostToWorkers(const std::string& bytes) {
  for (int r : workers_by_stage_)
    if (auto s = world_->PostString(r, runtime::kTagPlan, bytes); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status ClusterClient::Submit(const shard::StepPlan& plan) {
  if (!healthy_) return absl::UnavailableError("the cluster lost a worker");
  if (auto s = PostToWorkers(plan.SerializeAsString()); !s.ok()) {
    healthy_ = false;
    return absl::UnavailableError(absl::StrCat("sending the step failed: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<shard::StepResult> ClusterClient::AwaitResult() {
  if (!healthy_) return absl::UnavailableError("the cluster lost a worker");
  std::string reply;
  if (auto s = world_->RecvStringWithTimeout(result_rank_, runtime::kTagResult, &reply, options_.step_timeout); !s.ok()) {
    healthy_ = false;
    // A timeout says only that the last stage's rank did not answer: the stuck rank may be any
    // rank of the step (the last stage waits in a collective for a stopped peer), so the message
    // must not send the operator to it.
    if (absl::IsDeadlineExceeded(s))
      return absl::UnavailableError(absl::StrCat(
          "no result from the workers within ", absl::FormatDuration(options_.step_timeout),
          " (--step-timeout-s): a worker rank is stuck or gone (the result comes from rank ", result_rank_, ")"));
    return absl::UnavailableError(absl::StrCat("no result from the workers: ", s.message()));
  }
  shard::StepResult result;
  if (!result.ParseFromString(reply)) {
    healthy_ = false;
    return absl::DataLossError("unreadable StepResult");
  }
  if (!result.error().empty() && result.fatal()) {
    // The reporting rank has left: no later step can be served. Unhealthy at once, and
    // UNAVAILABLE, instead of a rejected batch and a step timeout for the next one.
    healthy_ = false;
    return absl::UnavailableError(absl::StrCat("a worker failed: ", result.error()));
  }
  if (!result.error().empty()) return absl::InvalidArgumentError(result.error());
  return result;
}

absl::StatusOr<std::vector<shard::RankStats>> ClusterClient::CollectStats() {
  if (!healthy_) return absl::UnavailableError("the cluster lost a worker");
  shard::StepPlan plan;
  plan.set_kind(shard::StepPlan::STATS);
  if (auto s = PostToWorkers(plan.SerializeAsString()); !s.ok()) {
    healthy_ = false;
    return absl::UnavailableError(absl::StrCat("sending the stats request failed: ", s.message()));
  }
  std::vector<shard::RankStats> stats(world_->size() - 1);
  for (int rank = 1; rank < world_->size(); ++rank) {
    std::string reply;
    auto s = world_->RecvStringWithTimeout(rank, runtime::kTagStats, &reply, options_.step_timeout);
    if (!s.ok() || !stats[rank - 1].ParseFromString(reply)) {
      healthy_ = false;
      return absl::UnavailableError(absl::StrCat("no stats from rank ", rank, s.ok() ? ": unreadable" : ": ", s.message()));
    }
  }
  return stats;
}

absl::Status ClusterClient::Shutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  shard::StepPlan plan;
  plan.set_kind(shard::StepPlan::SHUTDOWN);
  if (auto s = PostToWorkers(plan.SerializeAsString()); !s.ok()) return s;
  // Every worker has taken it (or a worker is gone): nothing posted may outlive the job.
  return world_->FlushPosted(options_.step_timeout);
}

}  // namespace glm::cluster
