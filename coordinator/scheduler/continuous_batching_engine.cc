#include "coordinator/scheduler/continuous_batching_engine.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/scheduler/constrained_output.h"
#include "coordinator/scheduler/engine_errors.h"

namespace glm::scheduler {

absl::Status Engine::ValidateOptions(const EngineOptions& options) {
  if (options.max_context <= 0 || options.vocab_size <= 0) return absl::InvalidArgumentError("engine needs the model's context and vocabulary");
  if (options.kv_blocks <= 0 || options.kv_block_size <= 0) return absl::InvalidArgumentError("engine needs KV blocks");
  if (options.prefill_chunk <= 0 || options.prefill_chunk > kMaxStepTokens)
    return absl::InvalidArgumentError(absl::StrCat("--prefill-chunk must be 1..", kMaxStepTokens, ", got ", options.prefill_chunk));
  if (options.max_running <= 0 || options.max_running > kMaxRunning)
    return absl::InvalidArgumentError(absl::StrCat("--max-running must be 1..", kMaxRunning, ", got ", options.max_running));
  if (options.max_batch_tokens < 0 || options.max_batch_tokens > kMaxStepTokens)
    return absl::InvalidArgumentError(absl::StrCat("--max-num-batched-tokens must be 0..", kMaxStepTokens,
                                                   " (0 = --prefill-chunk + --max-running), got ", options.max_batch_tokens));
  if (options.max_waiting <= 0)
    return absl::InvalidArgumentError(absl::StrCat("--max-waiting must be positive, got ", options.max_waiting));
  if (options.max_steps_in_flight <= 0) return absl::InvalidArgumentError("max_steps_in_flight must be positive");
  if (options.draft_vocab < 0) return absl::InvalidArgumentError("--draft-vocab must be 0 (off) or positive");
  if (options.speculative_max_batch < 0)
    return absl::InvalidArgumentError("--speculative-max-batch must be 0 (any batch) or positive");
  // The server's default for requests: refused here, not on every request that relies on it.
  auto spec = runtime::ParseSpeculative(options.speculative);
  if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("--speculative ", spec.status().message()));
  if (spec->method == runtime::SpeculativeConfig::Method::kMtp && !options.has_mtp)
    return absl::InvalidArgumentError("--speculative mtp:K: this model has no MTP layer");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(StepRunner* runner, const EngineOptions& options) {
  if (runner == nullptr) return absl::InvalidArgumentError("engine needs a step runner");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  return std::unique_ptr<Engine>(new ContinuousBatchingEngine(runner, options));
}

bool ParseSchedulingPolicy(std::string_view name, SchedulingPolicy* policy) {
  if (name == "fcfs") *policy = SchedulingPolicy::kFcfs;
  else if (name == "priority") *policy = SchedulingPolicy::kPriority;
  else return false;
  return true;
}

ContinuousBatchingEngine::ContinuousBatchingEngine(StepRunner* runner, const EngineOptions& options)
    : runner_(runner), options_(options), blocks_(options.kv_blocks, options.kv_block_size),
      seed_rng_(std::random_device{}()) {
  if (options_.max_batch_tokens <= 0) options_.max_batch_tokens = options_.prefill_chunk + options_.max_running;
  max_len_ = std::min<int64_t>(options_.max_context, int64_t{options_.kv_blocks} * options_.kv_block_size);
  absl::MutexLock lock(&mu_);
  load_.kv_blocks_total = options_.kv_blocks;
  load_.max_steps_in_flight = options_.max_steps_in_flight;
}

absl::StatusOr<std::shared_ptr<RequestStream>> ContinuousBatchingEngine::Submit(GenerationRequest request) {
  const SamplingOptions& p = request.sampling;
  const RequestLimits limits{options_.vocab_size, options_.max_context,
                             int64_t{options_.kv_blocks} * options_.kv_block_size,
                             options_.scheduling_policy == SchedulingPolicy::kPriority};
  if (absl::Status valid = ValidateRequest(request, limits); !valid.ok()) return valid;
  std::string method = request.speculative.empty() ? options_.speculative : request.speculative;
  // A prediction drafts by prompt lookup: ngram:8 unless the request names its own method.
  if (!request.prediction.empty() && request.speculative.empty()) method = "ngram:8";
  auto spec = runtime::ParseSpeculative(method);
  // The client's value is checked whatever the request: a constrained one (below) does not
  // draft, but a malformed or impossible value is still the client's error (it was accepted).
  if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("speculative: ", spec.status().message()));
  if (!request.prediction.empty() && spec->method == runtime::SpeculativeConfig::Method::kMtp)
    return absl::InvalidArgumentError(
        "prediction: a prediction drafts by prompt lookup; leave speculative out or ask for ngram:K, not mtp");
  if (spec->method == runtime::SpeculativeConfig::Method::kMtp && !options_.has_mtp)
    return absl::InvalidArgumentError("speculative: this model has no MTP layer");
  // A constrained request's every token comes from its format's mask: no drafts.
  if (request.constraint != nullptr) *spec = runtime::SpeculativeConfig();
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  auto seq = std::make_shared<Sequence>();
  if (request.constraint != nullptr) {
    seq->allowed_tokens = NextAllowedTokens(*request.constraint, p, options_.eos_token_ids, options_.vocab_size);
    if (!AnyAllowed(seq->allowed_tokens)) {
      // The client's token rules name their own field; a format is the response_format's.
      const std::string why = request.constraint->WhyNothingFits();
      const bool names_field = request.constraint->NothingFitsEndsOutput() || absl::StartsWith(why, "bad_words:");
      return absl::InvalidArgumentError(absl::StrCat(
          names_field ? "" : absl::StrCat(request.constraint_field, ": "),
          why.empty() ? "no token of this model's vocabulary can start the output" : why));
    }
  }
  seq->request = std::move(request);
  seq->tokens = seq->request.prompt;
  seq->prompt_len = static_cast<int32_t>(prompt_len);
  seq->arrival = absl::Now();
  seq->spec = *spec;
  if (spec->k > 0)
    seq->adaptive = std::make_unique<runtime::AdaptiveDraftLength>(spec->k, options_.verify_cost,
                                                                   runtime::AdaptiveDraftLength::DraftCost(*spec));
  absl::MutexLock lock(&mu_);
  if (!failed_.ok()) return absl::UnavailableError(absl::StrCat("the cluster failed: ", failed_.message()));
  if (shutdown_ || drain_) return absl::UnavailableError("the server is draining");
  if (seq->request.request_id.empty()) seq->request.request_id = absl::StrCat("req-", next_seq_id_);
  if (live_ids_.contains(seq->request.request_id))
    return absl::InvalidArgumentError(absl::StrCat("request_id: '", seq->request.request_id, "' is already running"));
  if (queued_ + static_cast<int64_t>(inbox_.size()) >= options_.max_waiting)
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", options_.max_waiting, " waiting requests)"));
  seq->seq_id = next_seq_id_++;
  seq->seed = seq->request.sampling.seed.has_value() ? *seq->request.sampling.seed : seed_rng_();
  seq->stream = std::make_shared<RequestStream>(seq->request.request_id);
  live_ids_[seq->request.request_id] = {seq->seq_id, seq->stream.get()};
  inbox_.push_back(seq);
  return seq->stream;
}

bool ContinuousBatchingEngine::Abort(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  return AbortLocked(request_id, nullptr);
}

bool ContinuousBatchingEngine::AbortStream(const RequestStream& stream) {
  absl::MutexLock lock(&mu_);
  return AbortLocked(stream.request_id(), &stream);
}

bool ContinuousBatchingEngine::AbortLocked(const std::string& request_id, const RequestStream* stream) {
  auto it = live_ids_.find(request_id);
  if (it == live_ids_.end() || (stream != nullptr && it->second.stream != stream)) return false;
  abort_requests_.insert(it->second.seq_id);
  live_ids_.erase(it);
  return true;
}

EngineLoad ContinuousBatchingEngine::GetLoad() const {
  absl::MutexLock lock(&mu_);
  return load_;
}

void ContinuousBatchingEngine::Shutdown(bool drain) {
  absl::MutexLock lock(&mu_);
  if (drain) drain_ = true;
  else shutdown_ = true;
}

bool ContinuousBatchingEngine::draining() const {
  absl::MutexLock lock(&mu_);
  return drain_ || shutdown_ || !failed_.ok();  // a failed cluster serves nothing more: not healthy
}

void ContinuousBatchingEngine::DrainInbox() {
  std::vector<SeqPtr> fresh;
  std::set<uint64_t> aborts;
  {
    absl::MutexLock lock(&mu_);
    queued_ += static_cast<int64_t>(inbox_.size());
    fresh.swap(inbox_);
    aborts.swap(abort_requests_);
  }
  for (auto& s : fresh) EnqueueWaiting(s, /*preempted=*/false);
  const absl::Time now = absl::Now();
  auto expired = [&](const SeqPtr& s) { return aborts.contains(s->seq_id) || now > s->request.deadline; };
  for (auto it = running_.begin(); it != running_.end();) {
    SeqPtr s = *it;
    if (expired(s)) {
      it = running_.erase(it);
      Finish(s, "abort", now > s->request.deadline ? absl::DeadlineExceededError("deadline exceeded") : absl::OkStatus());
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    SeqPtr s = *it;
    if (expired(s)) {
      it = waiting_.erase(it);
      Finish(s, "abort", now > s->request.deadline ? absl::DeadlineExceededError("deadline exceeded") : absl::OkStatus());
    } else {
      ++it;
    }
  }
}

void ContinuousBatchingEngine::ReleaseBlocks(Sequence& s) {
  RegisterFullBlocks(s);
  for (int32_t b : s.blocks) blocks_.Release(b);
  s.blocks.clear();
  s.blocks_sent = 0;
  s.registered = 0;
  s.chain_hash = ChainSeed(s);
  s.computed = 0;
}

bool ContinuousBatchingEngine::WritesMtpRows(const Sequence& s) {
  return s.adaptive != nullptr && s.spec.method == runtime::SpeculativeConfig::Method::kMtp;
}

bool ContinuousBatchingEngine::ClientSeeded(const Sequence& s) {
  return s.request.sampling.temperature > 0.0f && s.request.sampling.seed.has_value();
}

bool ContinuousBatchingEngine::OverSpeculativeBatch(int64_t sequences) const {
  return options_.speculative_max_batch > 0 && sequences > options_.speculative_max_batch;
}

uint64_t ContinuousBatchingEngine::ChainSeed(const Sequence& s) {
  // Blocks of MTP-drafting sequences also hold the MTP layer's rows, which a plain sequence never
  // writes: the two kinds are cached apart, so an MTP request never reads MTP rows that are not
  // there (its drafts, and so its seeded samples, would differ from a cold run's).
  const uint64_t kind = WritesMtpRows(s) ? 0x6d7470726f7773ull : 0;  // "mtprows"
  // vLLM's cache_salt: requests of different salts never share a cached block (tenants apart).
  return s.request.cache_salt.empty() ? kind : kind ^ (std::hash<std::string>{}(s.request.cache_salt) | 1);
}

int32_t ContinuousBatchingEngine::HashLookahead(const Sequence& s) {
  // A block's last MTP row is built from the next block's first token: that token is part of
  // the block's contents, so of its hash (registration waits for it already, see below).
  return WritesMtpRows(s) ? 1 : 0;
}

void ContinuousBatchingEngine::RegisterFullBlocks(Sequence& s) {
  if (!options_.enable_prefix_cache) return;
  const int32_t bs = options_.kv_block_size;
  // MTP row j needs token j + 1: after a prefill chunk the chunk's last row waits for the next
  // step, so an MTP sequence's block is complete one position later than its main rows.
  const int64_t complete = WritesMtpRows(s) ? s.computed - 1 : s.computed;
  while (static_cast<int64_t>(s.registered + 1) * bs <= complete && s.registered < static_cast<int32_t>(s.blocks.size())) {
    s.chain_hash = kv::BlockAllocator::ChainHash(s.chain_hash, s.tokens.data() + static_cast<int64_t>(s.registered) * bs,
                                                 bs + HashLookahead(s));
    blocks_.Register(s.blocks[s.registered], s.chain_hash);
    ++s.registered;
  }
}

void ContinuousBatchingEngine::Finish(const SeqPtr& s, const std::string& reason, absl::Status error,
                                      GenerationEvent* last) {
  s->finished = true;
  ReleaseBlocks(*s);
  forget_.push_back(s->seq_id);
  GenerationEvent e = last != nullptr ? std::move(*last) : GenerationEvent();
  e.finished = true;
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = s->prompt_len;
  e.completion_tokens = s->generated;
  e.cached_tokens = s->cached_tokens;
  e.accepted_prediction_tokens = s->prediction_accepted;
  e.rejected_prediction_tokens = s->prediction_rejected;
  Emit(s->stream, std::move(e));
  absl::MutexLock lock(&mu_);
  // Unless Abort released the id already (and a new request may hold it now).
  if (auto it = live_ids_.find(s->request.request_id); it != live_ids_.end() && it->second.seq_id == s->seq_id)
    live_ids_.erase(it);
}

void ContinuousBatchingEngine::Emit(const std::shared_ptr<RequestStream>& stream, GenerationEvent e) {
  undelivered_.emplace_back(stream, std::move(e));
}

void ContinuousBatchingEngine::Deliver() {
  for (auto& [stream, e] : undelivered_) stream->Push(std::move(e));
  undelivered_.clear();
}

void ContinuousBatchingEngine::LogFailed(const Sequence& s, const absl::Status& error) const {
  if (options_.log_event && !s.request.internal) options_.log_event("request_failed", s.request.request_id, std::string(error.message()));
}

void ContinuousBatchingEngine::FailAll(const absl::Status& cause) {
  // Whatever broke (a worker gone, timed out, or an unreadable reply), the clients' answer is
  // UNAVAILABLE: the cluster cannot serve, and their requests were not at fault.
  const absl::Status error = cause.code() == absl::StatusCode::kUnavailable
                                 ? cause
                                 : absl::UnavailableError(absl::StrCat("the cluster failed: ", cause.message()));
  std::vector<SeqPtr> fresh;
  {
    absl::MutexLock lock(&mu_);
    fresh.swap(inbox_);
    failed_ = error;
  }
  for (const auto& s : fresh) LogFailed(*s, error);
  for (const auto& s : running_) LogFailed(*s, error);
  for (const auto& s : waiting_) LogFailed(*s, error);
  for (auto& s : running_) Finish(s, "abort", error);
  for (auto& s : waiting_) Finish(s, "abort", error);
  in_flight_.clear();  // no result will come: the cluster is gone
  running_.clear();
  waiting_.clear();
  for (auto& s : fresh) Finish(s, "abort", error);
}

void ContinuousBatchingEngine::PublishLoad() {
  absl::MutexLock lock(&mu_);
  load_.running = static_cast<int32_t>(running_.size());
  load_.waiting = static_cast<int32_t>(waiting_.size() + inbox_.size());
  queued_ = static_cast<int64_t>(waiting_.size());
  load_.kv_blocks_used = blocks_.num_used();
  load_.kv_blocks_cached = blocks_.num_cached_free();
}

bool ContinuousBatchingEngine::CanScheduleMore() const {
  if (static_cast<int64_t>(in_flight_.size()) >= options_.max_steps_in_flight) return false;
  // Rank stats are read between steps: once due, the pipeline drains first.
  if (!in_flight_.empty() && RankStatsDue()) return false;
  if (!waiting_.empty()) return true;
  return std::any_of(running_.begin(), running_.end(), [](const SeqPtr& s) { return !s->in_flight; });
}

absl::StatusOr<bool> ContinuousBatchingEngine::Iterate() {
  DrainInbox();
  bool submitted = false;
  std::vector<Work> work;
  if (CanScheduleMore()) work = Schedule();
  PublishLoad();  // also after aborts and deadlines (DrainInbox) with nothing to schedule
  if (!work.empty()) {
    if (auto s = runner_->Submit(BuildPlan(work)); !s.ok()) {
      FailAll(s);
      return s;
    }
    for (const Work& w : work) w.seq->in_flight = true;
    if (!in_flight_.empty()) {
      absl::MutexLock lock(&mu_);
      load_.overlapped_steps++;
    }
    in_flight_.push_back(std::move(work));
    submitted = true;
  }
  if (in_flight_.empty()) {
    Deliver();
    return false;
  }
  // Another micro-batch can join the pipeline before this thread waits for the oldest.
  if (submitted && CanScheduleMore()) return true;
  Deliver();  // the last step's tokens go to their streams while the workers compute
  auto result = runner_->AwaitResult();
  work = std::move(in_flight_.front());
  in_flight_.pop_front();
  for (const Work& w : work) w.seq->in_flight = false;
  if (!result.ok()) {
    if (result.status().code() == absl::StatusCode::kInvalidArgument) {
      // The workers rejected this batch: fail its requests, keep serving the others.
      for (const Work& w : work) {
        if (w.seq->finished) continue;
        running_.remove(w.seq);
        Finish(w.seq, "abort", absl::InternalError(absl::StrCat("the workers rejected the step: ", result.status().message())));
      }
      return true;
    }
    FailAll(result.status());
    return result.status();
  }
  Complete(work, *result);
  PublishLoad();
  return true;
}

std::vector<ContinuousBatchingEngine::Work> ContinuousBatchingEngine::Schedule() {
  std::vector<Work> work;
  int64_t budget = options_.max_batch_tokens;
  int64_t prefill_budget = options_.prefill_chunk;
  // 1. Running sequences: decodes first (one token), then prompts in progress (chunks).
  const int64_t batch = static_cast<int64_t>(running_.size());
  int64_t position = 0;  // of `it` in running_ (a list: counted, not measured, every step)
  // With steps in flight together, each takes its share of the running sequences (micro-batches
  // of about equal size, so the pipeline stages get equal work); a sequence in flight waits for
  // its result.
  const int64_t steps = options_.max_steps_in_flight;  // at least 1 (Engine::Create)
  const int64_t share = (batch + steps - 1) / steps;
  int64_t taken = 0;
  for (auto it = running_.begin(); it != running_.end();) {
    SeqPtr s = *it;
    if (s->in_flight || taken >= share) {
      ++it;
      ++position;
      continue;
    }
    // Sequences after this one (preemption pops them off the back).
    const int64_t later = static_cast<int64_t>(running_.size()) - 1 - position;
    const int64_t remaining = static_cast<int64_t>(s->tokens.size()) - s->computed;
    const bool decode = remaining == 1;
    int64_t n = decode ? 1 : ScoredChunk(*s, std::min({remaining, prefill_budget, budget}));
    // The priority policy: a prompt of a higher value than the waiting head leaves it the prefill.
    if (!decode && options_.scheduling_policy == SchedulingPolicy::kPriority && !waiting_.empty() &&
        waiting_.front()->request.priority < s->request.priority)
      n = 0;
    if (n <= 0) {
      ++it;
      ++position;
      continue;
    }
    // Speculation on decode steps: drafts after the last token, verified in the same forward.
    std::vector<int32_t> drafts;
    int64_t prediction_from = -1;  // drafts from request.prediction: where in it they start
    int next_k = 0;
    if (decode && s->adaptive) {
      // A sampled request's tokens depend on how many drafts each of its steps verifies (the
      // rejection rule draws differently for a drafted position than for a plain one). With a
      // seed of the client's own, that must not depend on the other requests: its draft length
      // follows only its own acceptance, as when it decodes alone. (Greedy outputs are the same
      // for any draft length; unseeded ones promise nothing.) The batch is this step's share: with
      // steps in flight together each carries about running / steps of the sequences.
      const bool client_seeded = ClientSeeded(*s);
      s->adaptive->SetBatchSize(client_seeded ? 1 : share);
      // Drafts follow the last token, and the token sampled after them needs a position too.
      const int k = static_cast<int>(std::clamp<int64_t>(
          std::min<int64_t>(s->adaptive->next(), DraftRoom(*s, static_cast<int64_t>(s->tokens.size()) + 1)), 0,
          s->spec.k));
      if (s->spec.method == runtime::SpeculativeConfig::Method::kNgram) {
        // Indexed lookups (the scans cost O(context) a step: 1.4 ms at 100K tokens).
        if (k > 0 && !s->request.prediction.empty()) {
          const int64_t anchor = s->prediction_anchor >= 0 ? s->prediction_anchor : s->generated;
          if (!s->prediction_index) s->prediction_index = std::make_unique<runtime::PredictionIndex>(s->request.prediction);
          drafts = s->prediction_index->Draft(s->request.prediction, s->tokens, anchor, k, &prediction_from);
          if (drafts.empty()) prediction_from = -1;
        }
        if (k > 0 && drafts.empty()) {
          if (!s->ngram_index) s->ngram_index = std::make_unique<runtime::NgramIndex>();
          drafts = s->ngram_index->Draft(s->tokens, k);
        }
      } else {
        drafts.assign(s->mtp_drafts.begin(), s->mtp_drafts.begin() + std::min<size_t>(k, s->mtp_drafts.size()));
      }
      drafts.resize(std::min<int64_t>(drafts.size(), std::max<int64_t>(0, budget - 1)));
      // min_tokens bans the stop tokens per step: a step's samples all come before it or none does.
      if (const int32_t min = s->request.sampling.min_tokens; s->generated < min)
        drafts.resize(std::min<int64_t>(drafts.size(), min - 1 - s->generated));
      // Drafts are optional: they take only blocks the sequences after this one cannot need
      // for their own next token (else an older sequence's drafts preempted a newer one).
      if (!drafts.empty() && !OptionalRoomFits(*s, s->computed + 1 + static_cast<int64_t>(drafts.size()), later))
        drafts.clear();
      // The MTP drafts the next step may use, chained on the last stage during this one: no
      // more than the adaptive length can ask for then (none through a pause).
      if (WritesMtpRows(*s))
        next_k = std::min(s->spec.k, s->adaptive->MostDraftsNext(static_cast<int>(drafts.size())));
      n = 1 + static_cast<int64_t>(drafts.size());
    } else if (WritesMtpRows(*s) && s->computed + n == static_cast<int64_t>(s->tokens.size())) {
      next_k = std::min(s->spec.k, s->adaptive->MostDraftsNext(0));  // the prompt's last chunk: the first drafts
    }
    // The MTP head's chained draft rows take positions computed + n onwards; optional room, as drafts.
    next_k = static_cast<int>(std::clamp<int64_t>(DraftRoom(*s, s->computed + n), 0, next_k));
    if (next_k > 0 && (!OptionalRoomFits(*s, s->computed + n + next_k, later) ||
                       !EnsureBlocks(*s, s->computed + n + next_k)))
      next_k = 0;
    if (!EnsureBlocks(*s, s->computed + n)) {
      // Out of blocks: preempt the newest other sequence and retry; preempt this one if alone. A
      // sequence in flight is never preempted (its step still writes its blocks): when only
      // those are newer, this one waits for their results instead.
      SeqPtr victim;
      for (auto r = running_.rbegin(); r != running_.rend() && victim == nullptr; ++r)
        if (!(*r)->in_flight) victim = *r;
      if (victim == s && !in_flight_.empty()) break;
      running_.remove(victim);
      Preempt(victim);
      if (victim == s) break;
      continue;
    }
    work.push_back({s, n, std::move(drafts), next_k, decode, prediction_from});
    ++taken;
    budget -= n;
    if (!decode) prefill_budget -= n;
    ++it;
    ++position;
  }
  // 2. Admit waiting requests in the policy's order while the batch and the cache allow (the
  // priority policy makes room by preempting requests of a higher value).
  while (!waiting_.empty() && budget > 0 && prefill_budget > 0) {
    SeqPtr s = waiting_.front();
    if (static_cast<int32_t>(running_.size()) >= options_.max_running || !Admit(s)) {
      if (PreemptFor(*s, work, &budget, &prefill_budget)) continue;
      break;
    }
    waiting_.pop_front();
    AddRunning(s);
    const int64_t remaining = static_cast<int64_t>(s->tokens.size()) - s->computed;
    const int64_t n = ScoredChunk(*s, std::min({remaining, prefill_budget, budget}));
    int next_k = WritesMtpRows(*s) && n == remaining ? std::min(s->spec.k, s->adaptive->MostDraftsNext(0)) : 0;
    next_k = static_cast<int>(std::clamp<int64_t>(DraftRoom(*s, s->computed + n), 0, next_k));
    if (next_k > 0 && !EnsureBlocks(*s, s->computed + n + next_k)) next_k = 0;
    work.push_back({s, n, {}, next_k});
    budget -= n;
    prefill_budget -= n;
  }
  // --speculative-max-batch: a step of more sequences verifies no drafts and chains no MTP draft
  // rows, but for client-seeded requests (whose drafts must follow their own steps alone). Their
  // adaptive lengths see steps without drafts (pauses run down).
  if (OverSpeculativeBatch(static_cast<int64_t>(work.size())))
    for (Work& w : work) {
      if (ClientSeeded(*w.seq)) continue;
      w.n -= static_cast<int64_t>(w.drafts.size());
      w.drafts.clear();
      w.next_k = 0;
    }
  return work;
}

shard::StepPlan ContinuousBatchingEngine::BuildPlan(const std::vector<Work>& work) {
  shard::StepPlan plan;
  plan.set_kind(shard::StepPlan::FORWARD);
  plan.set_step_id(next_step_id_++);
  plan.mutable_finished()->Add(forget_.begin(), forget_.end());
  forget_.clear();
  for (const Work& w : work) {
    Sequence& s = *w.seq;
    auto* p = plan.add_sequences();
    p->set_seq_id(s.seq_id);
    const int64_t fed = w.n - static_cast<int64_t>(w.drafts.size());
    p->mutable_tokens()->Add(s.tokens.begin() + s.computed, s.tokens.begin() + s.computed + fed);
    p->mutable_tokens()->Add(w.drafts.begin(), w.drafts.end());
    p->set_num_drafts(static_cast<int32_t>(w.drafts.size()));
    p->set_use_mtp(WritesMtpRows(s));
    p->set_mtp_drafts(w.next_k);
    // The last stage builds the draft vocabulary from the sequence's history (sent below).
    const bool draft_vocab = p->use_mtp() && options_.draft_vocab > 0;
    if (draft_vocab) p->set_draft_vocab(static_cast<int32_t>(std::min<int64_t>(options_.draft_vocab, INT32_MAX)));
    p->set_start_position(s.computed);
    // Only the entries the workers do not hold yet: a running sequence's table only grows.
    const int64_t blocks_from = std::min<int64_t>(s.blocks_sent, static_cast<int64_t>(s.blocks.size()));
    p->set_block_table_from(static_cast<int32_t>(blocks_from));
    p->mutable_block_table()->Add(s.blocks.begin() + blocks_from, s.blocks.end());
    s.blocks_sent = static_cast<int64_t>(s.blocks.size());
    const bool sample = s.computed + fed == static_cast<int64_t>(s.tokens.size());
    p->set_sample(sample);
    if (sample && s.request.constraint != nullptr) p->set_allowed_tokens(s.allowed_tokens);
    auto* sp = p->mutable_sampling();
    const SamplingOptions& o = s.request.sampling;
    sp->set_temperature(o.temperature);
    sp->set_top_k(o.top_k);
    sp->set_top_p(o.top_p);
    sp->set_min_p(o.min_p);
    sp->set_repetition_penalty(o.repetition_penalty);
    sp->set_presence_penalty(o.presence_penalty);
    sp->set_frequency_penalty(o.frequency_penalty);
    for (const auto& [token, bias] : o.logit_bias) (*sp->mutable_logit_bias())[token] = bias;
    if (s.generated < o.min_tokens) {  // no stop token yet: a logit of -inf is never sampled
      constexpr float kNever = -std::numeric_limits<float>::infinity();
      for (int32_t t : o.stop_token_ids) (*sp->mutable_logit_bias())[t] = kNever;
      if (!o.ignore_eos)
        for (int32_t t : options_.eos_token_ids) (*sp->mutable_logit_bias())[t] = kNever;
    }
    sp->set_seed(s.seed);
    sp->set_top_logprobs(o.top_logprobs);
    sp->set_logprobs(o.logprobs);
    p->set_sample_index(s.generated);
    if (ScoresPrompt(s) && s.computed < s.prompt_len) {
      p->set_want_prompt_logprobs(true);
      p->set_prompt_top_logprobs(o.prompt_logprobs);
      const int64_t after = s.computed + fed;  // the token the chunk's last row predicts
      if (after < s.prompt_len) p->set_prompt_next_token(s.tokens[after]);
    }
    if (sample && (o.repetition_penalty != 1.0f || o.presence_penalty != 0.0f || o.frequency_penalty != 0.0f ||
                   draft_vocab)) {
      // Only what the last stage does not hold yet: tokens only ever append to a sequence.
      const int64_t from = std::min<int64_t>(s.penalty_sent, static_cast<int64_t>(s.tokens.size()));
      p->set_penalty_tokens_from(static_cast<int32_t>(from));
      p->mutable_penalty_tokens()->Add(s.tokens.begin() + from, s.tokens.end());
      p->set_penalty_output_start(s.prompt_len);
      s.penalty_sent = static_cast<int64_t>(s.tokens.size());
    }
  }
  return plan;
}

void ContinuousBatchingEngine::Complete(const std::vector<Work>& work, const shard::StepResult& result) {
  {
    absl::MutexLock lock(&mu_);
    load_.steps++;
    load_.step_seconds_total += result.step_seconds();
    load_.comm_seconds_total += result.comm_seconds();
  }
  ++steps_run_;
  std::map<uint64_t, const shard::SequenceResult*> by_id;
  for (const auto& r : result.sequences()) by_id[r.seq_id()] = &r;
  const absl::Time now = absl::Now();
  int64_t new_tokens = 0;
  for (const Work& w : work) {
    SeqPtr s = w.seq;
    if (s->finished) continue;  // aborted (or its deadline passed) while the step ran
    const int64_t fed = w.n - static_cast<int64_t>(w.drafts.size());
    auto it = by_id.find(s->seq_id);
    if (it != by_id.end()) CollectPromptLogprobs(*s, s->computed, *it->second);
    if (s->computed + fed != static_cast<int64_t>(s->tokens.size())) {  // a prefill chunk, not the end
      s->computed += fed;
      RegisterFullBlocks(*s);
      continue;
    }
    if (it == by_id.end()) {
      running_.remove(s);
      Finish(s, "abort", absl::InternalError("the workers returned no token"));
      continue;
    }
    const shard::SequenceResult& r = *it->second;
    if (!r.error().empty()) {  // non-finite logits: this request ends, the batch goes on
      running_.remove(s);
      Finish(s, "abort", absl::InternalError(r.error()));
      continue;
    }
    // Verified positions: the fed tokens and the accepted drafts; then the new tokens.
    const int accepted = w.drafts.empty() ? 0 : r.accepted();
    s->computed += fed + accepted;
    std::vector<int32_t> produced(r.tokens().begin(), r.tokens().end());
    if (produced.empty()) produced = {r.token()};
    s->mtp_drafts.assign(r.drafts().begin(), r.drafts().end());
    if (s->adaptive && !w.drafts.empty()) {
      s->adaptive->Update(static_cast<int>(w.drafts.size()), accepted);
      if (w.prediction_from >= 0) {
        const int64_t n = static_cast<int64_t>(s->request.prediction.size());
        if (static_cast<int64_t>(s->prediction_state.size()) != n) s->prediction_state.assign(n, 0);
        // Position `at` of the prediction kept (2) or not (1); kept wins over an earlier miss.
        auto mark = [&](int64_t at, uint8_t now) {
          if (at < 0 || at >= n) return;
          uint8_t& state = s->prediction_state[at];
          if (now <= state) return;
          if (state == 1) --s->prediction_rejected;
          (now == 2 ? s->prediction_accepted : s->prediction_rejected)++;
          state = now;
        };
        const int64_t from = w.prediction_from;
        // Drafts that jumped ahead of where the output stood in the prediction skipped what lay
        // between (an edited span the output does not contain).
        if (s->prediction_anchor >= 0)
          for (int64_t at = s->prediction_anchor; at < std::min(from, n); ++at) mark(at, 1);
        for (int64_t i = 0; i < static_cast<int64_t>(w.drafts.size()); ++i) mark(from + i, i < accepted ? 2 : 1);
        // The token sampled after the kept drafts stands where the prediction goes on.
        if (from + accepted < n) mark(from + accepted, produced.back() == s->request.prediction[from + accepted] ? 2 : 1);
        // The output goes on past the kept drafts and the token after them.
        s->prediction_anchor = w.prediction_from + accepted + 1;
      }
      if (!s->request.internal) {
        absl::MutexLock lock(&mu_);
        load_.spec_num_drafts++;
        load_.spec_draft_tokens += static_cast<int64_t>(w.drafts.size());
        load_.spec_accepted_tokens += accepted;
        if (load_.spec_drafted_per_pos.size() < w.drafts.size()) {
          load_.spec_drafted_per_pos.resize(w.drafts.size());
          load_.spec_accepted_per_pos.resize(w.drafts.size());
        }
        for (size_t i = 0; i < w.drafts.size(); ++i) {
          load_.spec_drafted_per_pos[i]++;
          if (static_cast<int>(i) < accepted) load_.spec_accepted_per_pos[i]++;
        }
      }
    } else if (s->adaptive && w.decode) {
      s->adaptive->Update(0, 0);  // a decode step without drafts runs down a pause of the draft length
    }

    GenerationEvent e;
    const SamplingOptions& o = s->request.sampling;
    std::string finish;
    absl::Status constraint_error;
    for (size_t i = 0; i < produced.size() && finish.empty(); ++i) {
      const int32_t token = produced[i];
      s->tokens.push_back(token);
      s->generated++;
      if (!s->request.internal) new_tokens++;
      e.tokens.push_back(token);
      if ((o.logprobs || o.top_logprobs > 0) && i + 1 == produced.size()) {
        TokenLogprob lp;
        lp.token = token;
        lp.logprob = r.logprob();
        for (const auto& t : r.top_logprobs()) lp.top.push_back({t.token(), t.logprob()});
        e.logprobs.push_back(std::move(lp));
      } else if (o.logprobs || o.top_logprobs > 0) {
        // An accepted draft: its verify row's values (the workers send one per accepted draft).
        TokenLogprob lp{token, std::numeric_limits<float>::quiet_NaN(), {}};
        if (static_cast<int>(i) < r.accepted_logprobs_size()) {
          const shard::PositionLogprob& a = r.accepted_logprobs(static_cast<int>(i));
          lp.logprob = a.logprob();
          for (const auto& t : a.top()) lp.top.push_back({t.token(), t.logprob()});
        }
        e.logprobs.push_back(std::move(lp));
      }
      const bool eos = !o.ignore_eos && std::find(options_.eos_token_ids.begin(), options_.eos_token_ids.end(), token) !=
                                            options_.eos_token_ids.end();
      const bool stop_id = std::find(o.stop_token_ids.begin(), o.stop_token_ids.end(), token) != o.stop_token_ids.end();
      const bool length = (o.max_tokens > 0 && s->generated >= o.max_tokens) ||
                          static_cast<int64_t>(s->tokens.size()) >= max_len_;
      if (!eos && !stop_id && s->request.constraint != nullptr) {
        constraint_error = AfterConstrainedToken(*s->request.constraint, token, o, options_.eos_token_ids,
                                                 options_.vocab_size, &s->allowed_tokens, &finish);
        if (!constraint_error.ok()) finish = "abort";
      }
      if (!finish.empty()) break;
      if (eos || stop_id) finish = "stop";
      else if (length) finish = "length";
    }
    // Never count as cached more than the tokens kept (a stop inside accepted drafts).
    s->computed = std::min<int64_t>(s->computed, static_cast<int64_t>(s->tokens.size()) - 1);
    RegisterFullBlocks(*s);
    e.prompt_tokens = s->prompt_len;
    e.completion_tokens = s->generated;
    e.cached_tokens = s->cached_tokens;
    e.accepted_prediction_tokens = s->prediction_accepted;
    e.rejected_prediction_tokens = s->prediction_rejected;
    if (!s->first_token_sent) {
      e.times = {s->arrival, s->first_scheduled, now};
      s->first_token_sent = true;
      e.prompt_logprobs = std::move(s->prompt_logprobs);
    }
    if (!finish.empty()) {
      running_.remove(s);
      Finish(s, finish, constraint_error, &e);
    } else {
      Emit(s->stream, std::move(e));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    load_.generation_tokens_total += new_tokens;
  }
}

bool ContinuousBatchingEngine::OptionalRoomFits(const Sequence& s, int64_t positions, int64_t later) const {
  const int64_t need = (positions + options_.kv_block_size - 1) / options_.kv_block_size -
                       static_cast<int64_t>(s.blocks.size());
  return need <= 0 || blocks_.num_free() - need >= later;
}

int64_t ContinuousBatchingEngine::DraftRoom(const Sequence& s, int64_t first_position) const {
  // Past the context (or the KV cache) the last stage cannot hold draft rows: a step asking for
  // chained ones there failed on it and took the cluster down. Nor are drafts worth asking for
  // that max_tokens leaves no room to verify.
  int64_t room = max_len_ - first_position;
  const SamplingOptions& o = s.request.sampling;
  if (o.max_tokens > 0) room = std::min<int64_t>(room, o.max_tokens - s.generated - 1);
  return room;
}

absl::Status ContinuousBatchingEngine::RunLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) break;
      if (drain_ && inbox_.empty() && running_.empty() && waiting_.empty() && in_flight_.empty()) break;
    }
    auto worked = Iterate();
    if (!worked.ok()) {
      Deliver();
      return worked.status();
    }
    if (auto s = CollectRankStatsIfDue(/*idle=*/!*worked); !s.ok()) {
      FailAll(s);
      Deliver();
      return s;
    }
    if (!*worked) {
      // Idle: sleep until a request arrives (or shutdown), checking a few times a second.
      absl::MutexLock lock(&mu_);
      auto has_news = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || !abort_requests_.empty() || shutdown_ || drain_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&has_news), absl::Milliseconds(200));
    }
  }
  // Shutdown without drain: end whatever is left. Steps still in flight are waited for (their
  // tokens dropped), so that no worker is left sending a result nobody receives.
  while (!in_flight_.empty()) {
    in_flight_.pop_front();
    if (!runner_->AwaitResult().ok()) break;
  }
  in_flight_.clear();
  for (auto& s : running_) Finish(s, "abort", ShuttingDownError());
  for (auto& s : waiting_) Finish(s, "abort", ShuttingDownError());
  running_.clear();
  waiting_.clear();
  DrainInbox();
  for (auto& s : waiting_) Finish(s, "abort", ShuttingDownError());
  waiting_.clear();
  Deliver();
  return absl::OkStatus();
}

}  // namespace glm::scheduler
