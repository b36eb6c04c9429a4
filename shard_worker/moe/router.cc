#include "shard_worker/moe/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace glm::moe {

Router::Router(const model::ModelConfig& c)
    : n_experts_(c.n_routed_experts), n_group_(c.n_group), topk_group_(c.topk_group),
      top_k_(c.num_experts_per_tok), norm_topk_prob_(c.norm_topk_prob), scaling_(c.routed_scaling_factor) {}

Routing Router::Route(const float* logits, const float* bias) const {
  std::vector<float> scores(n_experts_), choice(n_experts_);
  for (int64_t e = 0; e < n_experts_; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    choice[e] = scores[e] + bias[e];
  }
  // Rank groups by the sum of their two highest choice scores; keep topk_group groups.
  const int64_t per_group = n_experts_ / n_group_;
  std::vector<bool> allowed(n_experts_, true);
  if (n_group_ > 1) {
    std::vector<float> group_score(n_group_);
    for (int64_t g = 0; g < n_group_; ++g) {
      float best = -std::numeric_limits<float>::infinity(), second = best;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) {
        if (choice[e] > best) { second = best; best = choice[e]; }
        else if (choice[e] > second) second = choice[e];
      }
      group_score[g] = best + second;
    }
    std::vector<int64_t> groups(n_group_);
    std::iota(groups.begin(), groups.end(), 0);
    std::stable_sort(groups.begin(), groups.end(),
                     [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
    std::fill(allowed.begin(), allowed.end(), false);
    for (int64_t i = 0; i < topk_group_; ++i)
      for (int64_t e = groups[i] * per_group; e < (groups[i] + 1) * per_group; ++e) allowed[e] = true;
  }
  std::vector<int32_t> order;
  for (int64_t e = 0; e < n_experts_; ++e)
    if (allowed[e]) order.push_back(static_cast<int32_t>(e));
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return choice[a] > choice[b]; });
  order.resize(top_k_);
  std::sort(order.begin(), order.end());
  Routing r;
  r.experts = order;
  r.weights.resize(top_k_);
  float sum = 0.0f;
  for (int64_t i = 0; i < top_k_; ++i) {
    r.weights[i] = scores[order[i]];
    sum += r.weights[i];
  }
  for (int64_t i = 0; i < top_k_; ++i) {
    if (norm_topk_prob_) r.weights[i] /= (sum + 1e-20f);
    r.weights[i] *= scaling_;
  }
  return r;
}

}  // namespace glm::moe
