// The serving engine on the coordinator: admits requests, schedules them onto the cluster with
// continuous batching and chunked prefill, owns the logical KV blocks and the prefix cache, and
// streams tokens back. Its loop must run on the thread that talks MPI (RunLoop, from main);
// every other method is thread-safe and called from API threads.
#ifndef GLM_COORDINATOR_SCHEDULER_ENGINE_H_
#define GLM_COORDINATOR_SCHEDULER_ENGINE_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduler/request.h"
#include "shard_worker/runtime/speculative_sampling.h"
#include "protos/shard.pb.h"

namespace glm::scheduler {

// What the engine needs from the cluster (ClusterClient in production; fakes in tests).
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  // INVALID_ARGUMENT: the workers rejected the step; UNAVAILABLE: the cluster is gone.
  virtual absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) = 0;
  // Steps in flight together (EngineOptions::max_steps_in_flight): Submit hands the workers a
  // plan and returns; AwaitResult returns the oldest submitted step's result (results come in
  // submission order). A runner that cannot overlap steps keeps the plans and runs each one in
  // AwaitResult (these defaults). Errors as Step's.
  virtual absl::Status Submit(const shard::StepPlan& plan) {
    submitted_.push_back(plan);
    return absl::OkStatus();
  }
  virtual absl::StatusOr<shard::StepResult> AwaitResult() {
    if (submitted_.empty()) return absl::FailedPreconditionError("no step was submitted");
    const shard::StepPlan plan = std::move(submitted_.front());
    submitted_.pop_front();
    return Step(plan);
  }
  // Every worker rank's counters, between steps (none from a runner without ranks).
  virtual absl::StatusOr<std::vector<shard::RankStats>> CollectRankStats() { return std::vector<shard::RankStats>(); }

 private:
  std::deque<shard::StepPlan> submitted_;  // the default Submit's plans, not run yet
};

// --scheduling-policy: the order waiting requests start in, and which running request gives its
// KV blocks up first when the cache runs short.
//   kFcfs: arrival order; the newest running request is preempted first.
//   kPriority: GenerationRequest::priority, lower first, then arrival (vLLM's rule). Beyond vLLM,
//     a waiting request also takes the slot and blocks of running requests of a strictly higher
//     value when it could not start otherwise, and prompts of a higher value than the waiting
//     head pause their prefill chunks meanwhile: a high-priority request never waits behind a
//     low-priority one (equal values never preempt each other, so nothing ping-pongs).
enum class SchedulingPolicy { kFcfs, kPriority };
// "fcfs" | "priority"; false for anything else.
bool ParseSchedulingPolicy(std::string_view name, SchedulingPolicy* policy);

struct EngineOptions {
  int64_t max_context = 0;           // the model's context (max prompt + completion)
  int32_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
  int32_t kv_blocks = 0;             // physical blocks per worker (= logical blocks here)
  int32_t kv_block_size = 32;
  int32_t prefill_chunk = 2048;      // prompt tokens per step, shared by the step's prefills
  int32_t max_batch_tokens = 0;      // tokens per step (decode + prefill); 0 = prefill_chunk + max_running
  int32_t max_running = 64;          // sequences decoding at once
  int32_t max_waiting = 1024;        // queued requests before RESOURCE_EXHAUSTED
  // Steps the workers hold at once. With pipeline stages, more than one lets the stages work on
  // different micro-batches (the running sequences split between the steps in flight) instead of
  // waiting for each other; 1 = one step at a time (every stage but one idle at any moment).
  int32_t max_steps_in_flight = 1;
  bool enable_prefix_cache = true;
  SchedulingPolicy scheduling_policy = SchedulingPolicy::kFcfs;
  // A scored prompt (prompt_logprobs) computes rows x vocab logits per step: its chunks are cut
  // to at most this many / vocab rows (64 Mi floats = 256 MiB: ~430 rows of GLM-5's 154k).
  int64_t max_scored_logits = int64_t{64} << 20;
  std::string speculative;           // default for requests: "" / "none", "mtp:K", "ngram:K"
  bool has_mtp = false;              // the model has an MTP layer (mtp:K is refused otherwise)
  // MTP drafts propose only ids below this count and the request's own tokens (reading those
  // rows of the MTP head alone; the outputs are the same); 0 = the whole vocabulary.
  int64_t draft_vocab = 0;
  // What verifying several drafted positions costs (runtime::VerifyCostModel::FromConfig); the
  // default is linear in the positions.
  runtime::VerifyCostModel verify_cost;
  // Requests draft only in steps of at most this many sequences (0 = any number), as vLLM's
  // disable_by_batch_size; client-seeded requests keep drafting (their tokens must not depend on
  // the batch). Why: in a batch a step's weights are read once for all its sequences, so a drafted
  // position costs about a whole token's share of the step, and more where the step is compute-
  // bound — on the bundled model at 8 streams (2 vCPUs) speculation cost ~7% of throughput while
  // the adaptive length still judged 83% acceptance worth drafting.
  int32_t speculative_max_batch = 0;
  // Scheduling events of client requests, for the structured log: "request_preempted" (its KV
  // blocks went to other requests; it recomputes when readmitted) and "request_failed" (the
  // cluster failed; detail: why). Called on the engine loop's thread; null = not logged.
  std::function<void(const std::string& event, const std::string& request_id, const std::string& detail)> log_event;
};

struct EngineLoad {
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;        // held by live sequences (cached-but-free blocks excluded)
  int64_t kv_blocks_cached = 0;      // free blocks still holding a reusable prefix
  int64_t prompt_tokens_total = 0;
  int64_t generation_tokens_total = 0;
  int64_t prefix_cache_queries = 0;  // prompt tokens looked up
  int64_t prefix_cache_hits = 0;     // prompt tokens found
  int64_t preemptions = 0;
  int64_t steps = 0;
  // Steps submitted while an earlier one was still on the workers (pipeline stages busy at once;
  // EngineOptions::max_steps_in_flight), and that limit.
  int64_t overlapped_steps = 0;
  int32_t max_steps_in_flight = 1;
  double step_seconds_total = 0;
  double comm_seconds_total = 0;
  int64_t expert_bytes_total = 0;    // the ranks' routed-expert bytes read, summed over `ranks`
  // Each worker rank's counters as of the last collection (at most a second old while steps
  // run, current once the engine is idle).
  std::vector<shard::RankStats> ranks;
  // Speculative decoding (vLLM's spec_decode counters).
  int64_t spec_num_drafts = 0;          // verify steps that carried drafts
  int64_t spec_draft_tokens = 0;
  int64_t spec_accepted_tokens = 0;
  std::vector<int64_t> spec_accepted_per_pos;  // accepted drafts by position (0 = first draft)
  std::vector<int64_t> spec_drafted_per_pos;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(StepRunner* runner, const EngineOptions& options);
  // Create's checks of `options` (INVALID_ARGUMENT naming the flag): the coordinator asks before
  // its workers load, so a bad flag costs no load. Bounds keep the step arithmetic in int32.
  static absl::Status ValidateOptions(const EngineOptions& options);
  static constexpr int32_t kMaxStepTokens = 1 << 24;  // --prefill-chunk, --max-num-batched-tokens
  static constexpr int32_t kMaxRunning = 1 << 16;     // --max-running
  virtual ~Engine() = default;

  // Queues a request. INVALID_ARGUMENT (empty prompt, token out of range, prompt + max_tokens
  // beyond the context, duplicate id; the message starts with the request field, "top_p: ..."),
  // RESOURCE_EXHAUSTED (queue full, or the request can never fit the KV cache: then
  // ExceedsKvCache() is true, engine_errors.h), UNAVAILABLE (draining or the cluster failed).
  virtual absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request) = 0;
  // Stops a request at the next step boundary and frees its blocks; its stream ends with
  // finish_reason "abort". Returns false if unknown or already finished.
  virtual bool Abort(const std::string& request_id) = 0;
  // The same for the request `stream` belongs to, and only while it runs: a front end stopping its
  // own request cannot abort a newer one that reuses the id after this one finished.
  virtual bool AbortStream(const RequestStream& stream) { return Abort(stream.request_id()); }
  virtual EngineLoad GetLoad() const = 0;
  // Tokens the workers routed to each expert of each MoE layer since they started (layer ->
  // [n_routed_experts]), as of the last collection of their counters (GetLoad's `ranks`): the
  // record `glmctl expert-load --server` saves for the planner's hot-expert replicas. Empty when
  // nothing ran yet or the engine has no workers to ask.
  virtual std::map<int64_t, std::vector<int64_t>> ExpertRouting() const { return {}; }

  // Runs scheduling iterations until Shutdown(); returns the cluster error that ended it, if any
  // (every live request is failed with it first).
  virtual absl::Status RunLoop() = 0;
  // Stop accepting; with drain, finish live requests first. Thread-safe.
  virtual void Shutdown(bool drain) = 0;
  virtual bool draining() const = 0;
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_ENGINE_H_
