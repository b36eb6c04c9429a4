#include "shard_worker/moe/expert_replicas.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::moe {

absl::StatusOr<ExpertReplicas> ExpertReplicas::Create(std::vector<std::vector<int32_t>> holders,
                                                      int32_t stage_ranks, int32_t self) {
  if (stage_ranks < 1 || self < 0 || self >= stage_ranks)
    return absl::InvalidArgumentError(
        absl::StrCat("expert replicas: position ", self, " outside a stage of ", stage_ranks, " ranks"));
  for (size_t e = 0; e < holders.size(); ++e) {
    const std::vector<int32_t>& h = holders[e];
    if (h.empty()) return absl::InvalidArgumentError(absl::StrCat("expert replicas: no rank holds expert ", e));
    for (size_t i = 0; i < h.size(); ++i) {
      if (h[i] < 0 || h[i] >= stage_ranks)
        return absl::InvalidArgumentError(absl::StrCat("expert replicas: expert ", e, " held by position ", h[i],
                                                       " outside a stage of ", stage_ranks, " ranks"));
      if (i > 0 && h[i] <= h[i - 1])
        return absl::InvalidArgumentError(
            absl::StrCat("expert replicas: expert ", e, "'s holders are not ascending and distinct"));
    }
  }
  ExpertReplicas r;
  r.holders_ = std::move(holders);
  r.stage_ranks_ = stage_ranks;
  r.self_ = self;
  for (size_t e = 0; e < r.holders_.size(); ++e)
    if (r.holders_[e].size() > 1) r.replicated_.push_back(static_cast<int32_t>(e));
  return r;
}

std::vector<int32_t> ExpertReplicas::Assign(const std::vector<int64_t>& tokens) const {
  const int64_t n = std::min<int64_t>(n_experts(), static_cast<int64_t>(tokens.size()));
  std::vector<int32_t> computer(tokens.size(), -1);
  std::vector<int64_t> load(stage_ranks_, 0);
  for (int64_t e = 0; e < n; ++e)
    if (tokens[e] > 0 && holders_[e].size() == 1) {
      computer[e] = holders_[e][0];
      load[computer[e]] += kReadCostTokens + tokens[e];
    }
  // The replicated active experts, most tokens first: the big ones placed while the loads are
  // still open, the small ones then fill the gaps (greedy longest-processing-time order).
  std::vector<int32_t> active;
  for (int32_t e : replicated_)
    if (e < n && tokens[e] > 0) active.push_back(e);
  std::stable_sort(active.begin(), active.end(), [&](int32_t a, int32_t b) { return tokens[a] > tokens[b]; });
  for (int32_t e : active) {
    int32_t best = holders_[e][0];
    for (int32_t h : holders_[e])
      if (load[h] < load[best]) best = h;
    computer[e] = best;
    load[best] += kReadCostTokens + tokens[e];
  }
  // Greedy order can stack shared experts whose holders overlap on one rank (every expert
  // copied: each placed before the next is known). Then move shared experts off the busiest rank
  // while a move lowers it below where it was: each move lowers the busiest rank's load or the
  // number of ranks at that load, so this ends; bounded anyway.
  for (size_t moves = 0; moves < active.size() * static_cast<size_t>(stage_ranks_); ++moves) {
    const int32_t busiest = static_cast<int32_t>(std::max_element(load.begin(), load.end()) - load.begin());
    bool moved = false;
    for (int32_t e : active) {
      if (computer[e] != busiest) continue;
      const int64_t cost = kReadCostTokens + tokens[e];
      for (int32_t h : holders_[e]) {
        if (h == busiest || load[h] + cost >= load[busiest]) continue;
        load[busiest] -= cost;
        load[h] += cost;
        computer[e] = h;
        moved = true;
        break;
      }
      if (moved) break;
    }
    if (!moved) break;
  }
  return computer;
}

}  // namespace glm::moe
