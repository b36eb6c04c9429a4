// ContinuousBatchingEngine's bookkeeping of what steps report besides tokens
// (continuous_batching_engine.h): prompt logprobs gathered chunk by chunk, and the ranks'
// statistics and expert routing, collected between steps about once a second.
#include <algorithm>
#include <map>

#include "coordinator/scheduler/continuous_batching_engine.h"

namespace glm::scheduler {

bool ContinuousBatchingEngine::ScoresPrompt(const Sequence& s) {
  // Until its scores went out with the first token: a sequence preempted after that recomputes
  // its prompt as any other does (from the prefix cache, in full chunks, no logits kept).
  return s.request.sampling.prompt_logprobs >= 0 && !s.first_token_sent;
}

int64_t ContinuousBatchingEngine::ScoredChunk(const Sequence& s, int64_t n) const {
  // A scored prompt's chunk computes n x vocab logits: keep that within max_scored_logits.
  if (!ScoresPrompt(s) || s.computed >= s.prompt_len) return n;
  return std::min<int64_t>(n, std::max<int64_t>(1, options_.max_scored_logits / std::max(1, options_.vocab_size)));
}

void ContinuousBatchingEngine::CollectPromptLogprobs(Sequence& s, int64_t start, const shard::SequenceResult& r) {
  if (r.prompt_logprobs_size() == 0 || s.prompt_len < 2) return;
  s.prompt_logprobs.resize(s.prompt_len - 1);
  for (int j = 0; j < r.prompt_logprobs_size(); ++j) {
    const int64_t pos = start + 1 + j;  // the position row j predicts
    if (pos < 1 || pos >= s.prompt_len) continue;
    const shard::PositionLogprob& p = r.prompt_logprobs(j);
    TokenLogprob& lp = s.prompt_logprobs[pos - 1];
    lp.token = p.token();
    lp.logprob = p.logprob();
    lp.rank = p.rank();
    lp.top.clear();
    for (const auto& t : p.top()) lp.top.push_back({t.token(), t.logprob()});
  }
}

bool ContinuousBatchingEngine::RankStatsDue() const {
  return steps_run_ != steps_at_rank_stats_ && absl::Now() - rank_stats_time_ >= absl::Seconds(1);
}

absl::Status ContinuousBatchingEngine::CollectRankStatsIfDue(bool idle) {
  if (steps_run_ == steps_at_rank_stats_) return absl::OkStatus();  // nothing new
  // Between steps only: the workers answer once they are done with every step before the request.
  if (!in_flight_.empty()) return absl::OkStatus();
  const absl::Time now = absl::Now();
  if (!idle && now - rank_stats_time_ < absl::Seconds(1)) return absl::OkStatus();
  auto ranks = runner_->CollectRankStats();
  if (!ranks.ok()) return ranks.status();
  steps_at_rank_stats_ = steps_run_;
  rank_stats_time_ = now;
  int64_t expert_bytes = 0;
  // Routing statistics are kept apart (ExpertRouting): GetLoad's copies (every /metrics scrape)
  // need not carry GLM-5's 78 x 256 counters.
  std::map<int64_t, std::vector<int64_t>> routing;
  for (shard::RankStats& r : *ranks) {
    expert_bytes += r.expert_bytes_read();
    for (const shard::LayerRouting& l : r.routing())
      routing[l.layer()].assign(l.tokens_per_expert().begin(), l.tokens_per_expert().end());
    r.clear_routing();
  }
  absl::MutexLock lock(&mu_);
  load_.ranks = *std::move(ranks);
  load_.expert_bytes_total = expert_bytes;
  if (!routing.empty()) routing_ = std::move(routing);
  return absl::OkStatus();
}

std::map<int64_t, std::vector<int64_t>> ContinuousBatchingEngine::ExpertRouting() const {
  absl::MutexLock lock(&mu_);
  return routing_;
}

}  // namespace glm::scheduler
