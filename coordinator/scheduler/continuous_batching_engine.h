// The Engine: continuous batching with chunked prefill over a StepRunner (the cluster).
//
// Each iteration (one cluster step): running decodes take one token each, prompts in progress
// take chunks up to `prefill_chunk` tokens in total, then waiting requests are admitted FCFS
// while KV blocks and the batch allow. A sequence is `tokens` (prompt + generated) of which the
// first `computed` have KV in the cache; a step feeds tokens[computed, computed + n) and samples
// when that reaches the end. Admission reuses cached prefix blocks; when decode runs out of
// blocks the newest sequence is preempted (blocks freed, recomputed later from its tokens).
#ifndef GLM_COORDINATOR_SCHEDULER_CONTINUOUS_BATCHING_ENGINE_H_
#define GLM_COORDINATOR_SCHEDULER_CONTINUOUS_BATCHING_ENGINE_H_

#include <deque>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "absl/synchronization/mutex.h"
#include "coordinator/kv/block_allocator.h"
#include "coordinator/scheduler/engine.h"
#include "shard_worker/runtime/ngram_index.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::scheduler {

class ContinuousBatchingEngine : public Engine {
 public:
  ContinuousBatchingEngine(StepRunner* runner, const EngineOptions& options);

  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request) override;
  bool Abort(const std::string& request_id) override;
  bool AbortStream(const RequestStream& stream) override;
  EngineLoad GetLoad() const override;
  std::map<int64_t, std::vector<int64_t>> ExpertRouting() const override;
  absl::Status RunLoop() override;
  void Shutdown(bool drain) override;
  bool draining() const override;

  // One scheduling iteration (RunLoop calls it; tests may drive it directly). Returns false when
  // there was nothing to do.
  absl::StatusOr<bool> Iterate();
  // Refreshes load_.ranks from the workers: at most once a second while steps run, and once
  // when the loop goes idle after steps (so /metrics holds every finished step).
  absl::Status CollectRankStatsIfDue(bool idle);

 private:
  struct Sequence {
    uint64_t seq_id = 0;
    GenerationRequest request;
    std::shared_ptr<RequestStream> stream;
    std::vector<int32_t> tokens;  // prompt + generated
    int32_t prompt_len = 0;
    int64_t computed = 0;         // tokens with KV in the cache
    std::vector<int32_t> blocks;  // block table
    int64_t blocks_sent = 0;      // leading entries of it the workers hold (block_table_from)
    int32_t registered = 0;       // leading full blocks registered in the prefix cache
    uint64_t chain_hash = 0;      // hash chain value after `registered` blocks
    int32_t generated = 0;
    int32_t cached_tokens = 0;    // prompt tokens served from the prefix cache (first admission)
    bool admitted_before = false;
    uint64_t seed = 0;
    absl::Time arrival;
    absl::Time first_scheduled;   // its first admission
    bool first_token_sent = false;
    // Prompt scoring (SamplingOptions::prompt_logprobs): position p's at p - 1.
    std::vector<TokenLogprob> prompt_logprobs;
    // Speculative decoding.
    runtime::SpeculativeConfig spec;
    std::unique_ptr<runtime::AdaptiveDraftLength> adaptive;
    std::vector<int32_t> mtp_drafts;  // proposed by the MTP head in the last step
    // A prediction's usage, per position of it (each counts once, however often it was
    // drafted): accepted, a draft kept or the token sampled after kept drafts equal to it;
    // rejected, a draft not kept, a differing token after kept drafts, or skipped when drafting
    // jumped ahead. A later keep turns a miss into accepted; so accepted + rejected <= the
    // prediction's length (they were every step's drafts, which a prediction drafted again and
    // again exceeded several times). prediction_state: 0 not seen, 1 rejected, 2 accepted.
    int32_t prediction_accepted = 0;
    int32_t prediction_rejected = 0;
    std::vector<uint8_t> prediction_state;
    int64_t prediction_anchor = -1;   // where in the prediction the output goes on (-1: at `generated`)
    // Prompt lookup's indexes (runtime/ngram_index.h), built at the first draft that needs them.
    std::unique_ptr<runtime::NgramIndex> ngram_index;
    std::unique_ptr<const runtime::PredictionIndex> prediction_index;
    int64_t penalty_sent = 0;         // leading tokens the last stage holds (penalties, draft vocabulary)
    std::string allowed_tokens;       // request.constraint: the next sample's bitmap (NextAllowedTokens)
    bool in_flight = false;           // in a submitted step whose result has not come back
    bool finished = false;            // Finish ran (an in-flight step's result for it is dropped)
  };
  using SeqPtr = std::shared_ptr<Sequence>;
  // A sequence's part of one step.
  struct Work {
    SeqPtr seq;
    int64_t n = 0;                // tokens fed (including drafts)
    std::vector<int32_t> drafts;  // speculative drafts appended after the last token
    int next_k = 0;               // MTP drafts to propose for the following step
    bool decode = false;          // a decode step of the sequence (its adaptive draft length counts it)
    int64_t prediction_from = -1; // the drafts come from request.prediction, starting here in it
  };

  // A step: the sequences that go (each at most once in all steps in flight), then its plan, and
  // once the result is back, what it gives each sequence.
  std::vector<Work> Schedule();
  shard::StepPlan BuildPlan(const std::vector<Work>& work);
  void Complete(const std::vector<Work>& work, const shard::StepResult& result);
  // Whether one more step could be scheduled now (fewer than max_steps_in_flight out, a free sequence).
  bool CanScheduleMore() const;
  bool RankStatsDue() const;

  // Abort's work, of the request holding `request_id` (only if its stream is `stream`, when given).
  bool AbortLocked(const std::string& request_id, const RequestStream* stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainInbox();
  // Events go to their streams in batches: Emit queues one, Deliver pushes the queue. A step's
  // tokens are delivered while the next step runs on the workers (between StepRunner::Submit and AwaitResult),
  // or before the loop idles, so waking the streams' readers (one per request) overlaps the
  // forward instead of delaying the next plan.
  void Emit(const std::shared_ptr<RequestStream>& stream, GenerationEvent e);
  void Deliver();
  // Ends `s` with `reason` (or error). The finished event carries `last`'s tokens when given (a
  // step's final tokens and their finish reason arrive together: front ends hide a stop token's
  // text only when they see both at once).
  void Finish(const SeqPtr& s, const std::string& reason, absl::Status error = absl::OkStatus(),
              GenerationEvent* last = nullptr);
  void ReleaseBlocks(Sequence& s);
  // Whether the last stage keeps the sequence's MTP rows (MTP drafting), and the prefix-cache
  // chain seed that keeps its blocks apart from plain ones.
  static bool WritesMtpRows(const Sequence& s);
  // A sampled request with a seed of the client's own: its tokens must not depend on the batch.
  static bool ClientSeeded(const Sequence& s);
  // A step of `sequences` is past EngineOptions::speculative_max_batch.
  bool OverSpeculativeBatch(int64_t sequences) const;
  static uint64_t ChainSeed(const Sequence& s);
  // Tokens after a block that its prefix-cache hash covers too (BlockAllocator::MatchPrefix).
  static int32_t HashLookahead(const Sequence& s);
  void RegisterFullBlocks(Sequence& s);
  // A prefill chunk of n tokens for `s`, cut to EngineOptions::max_scored_logits when its
  // prompt is scored.
  int64_t ScoredChunk(const Sequence& s, int64_t n) const;
  // Whether steps of `s` still score its prompt (SamplingOptions::prompt_logprobs, until sent).
  static bool ScoresPrompt(const Sequence& s);
  // How many drafts `s` may have at positions first_position onwards: the positions left in the
  // context / KV cache, and what max_tokens can still verify (may be <= 0).
  int64_t DraftRoom(const Sequence& s, int64_t first_position) const;
  // Whether `s` may grow to `positions` for something optional (drafts, chained draft rows) and
  // still leave a free block for each of the `later` sequences scheduled after it this step.
  bool OptionalRoomFits(const Sequence& s, int64_t positions, int64_t later) const;
  // Stores the prompt positions a step scored for `s` (its chunk started at `start`).
  static void CollectPromptLogprobs(Sequence& s, int64_t start, const shard::SequenceResult& r);
  // Leading full blocks of `s` the prefix cache may serve (0 without the cache or for a scored prompt).
  int32_t PrefixBlocksToMatch(const Sequence& s) const;
  // Blocks `s` holds once admitted (its tokens and the first generated one), cached prefix included.
  int64_t AdmissionBlocks(const Sequence& s) const;
  bool EnsureBlocks(Sequence& s, int64_t positions);
  bool Admit(const SeqPtr& s);
  // `s`'s KV blocks go back (kept as cached prefix) and it waits to recompute. `for_request`:
  // the waiting request it made room for (the priority policy), for the log.
  void Preempt(const SeqPtr& s, const Sequence* for_request = nullptr);
  // The scheduling policy's order (EngineOptions::scheduling_policy): whether `a` goes before `b`.
  bool Precedes(const Sequence& a, const Sequence& b) const;
  // Queues `s` to be admitted: fcfs at the back, or at the front when preempted (it is older than
  // any waiting request); priority in Precedes order.
  void EnqueueWaiting(const SeqPtr& s, bool preempted);
  // Adds an admitted sequence to running_: fcfs at the back; priority in Precedes order, so that
  // the back (preempted first) holds the highest priority value.
  void AddRunning(const SeqPtr& s);
  // The priority policy's preemption for a waiting request `s` that cannot be admitted: preempts
  // running sequences of a strictly higher priority value (not in flight), highest first, as few
  // as free a running slot and the blocks `s` lacks, and takes their parts out of this step's
  // `work` (returning their tokens to the budgets). False, preempting nothing, when even all of
  // them would not make room.
  bool PreemptFor(const Sequence& s, std::vector<Work>& work, int64_t* budget, int64_t* prefill_budget);
  void FailAll(const absl::Status& cause);
  void LogFailed(const Sequence& s, const absl::Status& error) const;
  void PublishLoad();

  StepRunner* runner_;
  EngineOptions options_;
  kv::BlockAllocator blocks_;
  uint64_t next_seq_id_ = 1;
  uint64_t next_step_id_ = 1;
  std::mt19937_64 seed_rng_;

  // The longest sequence: the model's context, or the KV cache's positions if fewer (a request
  // without max_tokens stops there with finish reason "length").
  int64_t max_len_ = 0;
  // Loop-thread state.
  std::map<int64_t, std::vector<int64_t>> routing_ ABSL_GUARDED_BY(mu_);  // ExpertRouting()
  int64_t steps_run_ = 0, steps_at_rank_stats_ = 0;
  absl::Time rank_stats_time_ = absl::InfinitePast();
  std::deque<SeqPtr> waiting_;
  std::vector<uint64_t> forget_;  // finished/preempted sequences whose worker state can go
  std::list<SeqPtr> running_;  // admission order (back = newest, preempted first)
  std::deque<std::vector<Work>> in_flight_;  // submitted steps, oldest first (its result comes next)
  std::vector<std::pair<std::shared_ptr<RequestStream>, GenerationEvent>> undelivered_;

  // Shared with API threads.
  mutable absl::Mutex mu_;
  std::vector<SeqPtr> inbox_ ABSL_GUARDED_BY(mu_);
  // Sequences to abort (by seq_id: an aborted request's id may be reused before the loop gets to it).
  std::set<uint64_t> abort_requests_ ABSL_GUARDED_BY(mu_);
  // Request ids in use -> their sequence. Abort releases the id at once (a client that stopped a
  // request on a stop string may send the next one with the same id right away).
  struct LiveId {
    uint64_t seq_id = 0;
    const RequestStream* stream = nullptr;  // identity only (AbortStream)
  };
  std::map<std::string, LiveId> live_ids_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool drain_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  EngineLoad load_ ABSL_GUARDED_BY(mu_);
  // waiting_.size() as the loop last published it, plus what it has drained from the inbox since:
  // Submit's queue bound counts it and inbox_ (load_.waiting counted the inbox as it was then,
  // so adding inbox_ to it counted new requests twice until the next step).
  int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace glm::scheduler

#endif  // GLM_COORDINATOR_SCHEDULER_CONTINUOUS_BATCHING_ENGINE_H_
