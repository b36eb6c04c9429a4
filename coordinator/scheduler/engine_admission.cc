// ContinuousBatchingEngine's admission (continuous_batching_engine.h): the order requests wait
// in under --scheduling-policy, admitting a request over the prefix cache, and preemption — a
// running request's KV blocks going back to the cache so that another can run.
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "coordinator/scheduler/continuous_batching_engine.h"

namespace glm::scheduler {

bool ContinuousBatchingEngine::EnsureBlocks(Sequence& s, int64_t positions) {
  const int64_t need = (positions + options_.kv_block_size - 1) / options_.kv_block_size;
  while (static_cast<int64_t>(s.blocks.size()) < need) {
    auto b = blocks_.Allocate();
    if (!b) return false;
    s.blocks.push_back(*b);
  }
  return true;
}

int64_t ContinuousBatchingEngine::AdmissionBlocks(const Sequence& s) const {
  // The tokens so far and the first one generated after them.
  return (static_cast<int64_t>(s.tokens.size()) + options_.kv_block_size) / options_.kv_block_size;
}

bool ContinuousBatchingEngine::Admit(const SeqPtr& s) {
  const int32_t bs = options_.kv_block_size;
  const int64_t len = static_cast<int64_t>(s->tokens.size());
  // Reuse cached full blocks, but always compute at least the last token (its logits are needed).
  std::vector<int32_t> matched =
      blocks_.MatchPrefix(s->tokens, PrefixBlocksToMatch(*s), ChainSeed(*s), HashLookahead(*s));
  if (blocks_.num_free() < AdmissionBlocks(*s) - static_cast<int64_t>(matched.size())) {
    for (int32_t b : matched) blocks_.Release(b);
    return false;
  }
  s->blocks = matched;
  s->blocks_sent = 0;  // a new table: sent whole with the next step
  s->computed = static_cast<int64_t>(matched.size()) * bs;
  s->registered = 0;
  s->chain_hash = ChainSeed(*s);
  RegisterFullBlocks(*s);  // recomputes the chain over the matched blocks
  EnsureBlocks(*s, len);
  if (!s->admitted_before) {
    s->cached_tokens = static_cast<int32_t>(s->computed);
    s->admitted_before = true;
    s->first_scheduled = absl::Now();
    if (s->request.internal) return true;
    absl::MutexLock lock(&mu_);
    load_.prefix_cache_queries += s->prompt_len;
    load_.prefix_cache_hits += s->computed;
    load_.prompt_tokens_total += s->prompt_len;
  }
  return true;
}

int32_t ContinuousBatchingEngine::PrefixBlocksToMatch(const Sequence& s) const {
  // A scored prompt needs every position's logits: it cannot start from cached blocks.
  if (!options_.enable_prefix_cache || ScoresPrompt(s)) return 0;
  return static_cast<int32_t>((static_cast<int64_t>(s.tokens.size()) - 1) / options_.kv_block_size);
}

void ContinuousBatchingEngine::Preempt(const SeqPtr& s, const Sequence* for_request) {
  if (options_.log_event && !s->request.internal)
    options_.log_event("request_preempted", s->request.request_id,
                       absl::StrCat(s->tokens.size(), " tokens, ", s->generated, " generated",
                                    for_request == nullptr ? ""
                                                           : absl::StrCat(", priority ", s->request.priority,
                                                                          ", for request ", for_request->request.request_id,
                                                                          " of priority ", for_request->request.priority)));
  ReleaseBlocks(*s);
  s->mtp_drafts.clear();
  EnqueueWaiting(s, /*preempted=*/true);
  absl::MutexLock lock(&mu_);
  load_.preemptions++;
}

bool ContinuousBatchingEngine::Precedes(const Sequence& a, const Sequence& b) const {
  if (options_.scheduling_policy == SchedulingPolicy::kPriority && a.request.priority != b.request.priority)
    return a.request.priority < b.request.priority;
  return a.seq_id < b.seq_id;
}

void ContinuousBatchingEngine::EnqueueWaiting(const SeqPtr& s, bool preempted) {
  if (options_.scheduling_policy == SchedulingPolicy::kFcfs) {
    if (preempted) waiting_.push_front(s);
    else waiting_.push_back(s);
    return;
  }
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), s,
                                   [this](const SeqPtr& a, const SeqPtr& b) { return Precedes(*a, *b); }),
                  s);
}

void ContinuousBatchingEngine::AddRunning(const SeqPtr& s) {
  auto at = running_.end();
  if (options_.scheduling_policy == SchedulingPolicy::kPriority)
    at = std::find_if(running_.begin(), running_.end(), [&](const SeqPtr& r) { return Precedes(*s, *r); });
  running_.insert(at, s);
}

bool ContinuousBatchingEngine::PreemptFor(const Sequence& s, std::vector<Work>& work, int64_t* budget,
                                          int64_t* prefill_budget) {
  if (options_.scheduling_policy != SchedulingPolicy::kPriority) return false;
  // What admitting `s` takes (as Admit counts it): a running slot, and blocks for its prompt and
  // first token beyond its cached prefix; cached blocks nobody holds leave the free list with it.
  const std::vector<int32_t> cached =
      blocks_.PeekPrefix(s.tokens, PrefixBlocksToMatch(s), ChainSeed(s), HashLookahead(s));
  int64_t free_after = blocks_.num_free();
  for (int32_t b : cached) free_after -= blocks_.ref_count(b) == 0;
  const int64_t blocks_short =
      std::max<int64_t>(0, AdmissionBlocks(s) - static_cast<int64_t>(cached.size()) - free_after);
  bool slot = static_cast<int32_t>(running_.size()) < options_.max_running;
  // Victims from the back of running_ (priority order): a block frees once every holder of it is
  // a victim (two victims may share a prefix block), unless `s` would take it as its cached prefix.
  std::vector<SeqPtr> victims;
  std::map<int32_t, int32_t> victim_holders;  // block -> victims holding it
  int64_t freed = 0;
  for (auto r = running_.rbegin(); r != running_.rend() && (!slot || freed < blocks_short); ++r) {
    const Sequence& v = **r;
    if (v.request.priority <= s.request.priority) break;  // the rest do not yield to `s` either
    if (v.in_flight) continue;  // its step still writes its blocks
    victims.push_back(*r);
    slot = true;
    for (int32_t b : v.blocks)
      freed += ++victim_holders[b] == blocks_.ref_count(b) && std::find(cached.begin(), cached.end(), b) == cached.end();
  }
  if (victims.empty() || !slot || freed < blocks_short) return false;
  for (const SeqPtr& v : victims) {
    auto w = std::find_if(work.begin(), work.end(), [&](const Work& x) { return x.seq == v; });
    if (w != work.end()) {
      *budget += w->n;
      if (!w->decode) *prefill_budget += w->n;
      work.erase(w);
    }
    running_.remove(v);
    Preempt(v, &s);
  }
  return true;
}

}  // namespace glm::scheduler
