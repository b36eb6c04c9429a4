#include "coordinator/placement/expert_replica_planner.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/weight_format.h"

namespace glm::placement {

absl::StatusOr<ReplicaSummary> AddHotExpertReplicas(const model::ModelConfig& config, const ExpertLoad& load,
                                                    int64_t per_layer, PlacementPlan* plan) {
  if (per_layer < 0)
    return absl::InvalidArgumentError(absl::StrCat("--hot-expert-replicas is ", per_layer, "; it must be 0 or more"));
  ReplicaSummary summary;
  if (per_layer == 0) return summary;
  if (plan->expert_layout() == "expert-tensor-parallel")
    return absl::InvalidArgumentError(
        "--hot-expert-replicas needs --expert-layout expert-parallel (expert-tensor-parallel ranks already hold a "
        "slice of every expert)");
  for (const RankAssignment& r : plan->ranks())
    if (r.replicas_size() > 0)
      return absl::InvalidArgumentError(absl::StrCat("rank ", r.rank(), " already lists expert replicas"));
  auto format = ParseWeightFormat(plan->weight_dtype(), plan->quantize_scope(), config);
  if (!format.ok()) return format.status();
  const CostModel cost(config, *format);
  const int64_t E = config.n_routed_experts;
  for (const Stage& st : plan->stages()) {
    if (st.ranks_size() < 2) continue;
    std::vector<RankAssignment*> ranks;  // by position in the stage
    for (int32_t k : st.ranks())
      for (RankAssignment& r : *plan->mutable_ranks())
        if (r.rank() == k) ranks.push_back(&r);
    std::sort(ranks.begin(), ranks.end(),
              [](const RankAssignment* a, const RankAssignment* b) { return a->tp_index() < b->tp_index(); });
    std::vector<int64_t> added_bytes(ranks.size(), 0);
    for (const auto& [layer, tokens] : load.tokens_per_expert) {
      const bool in_stage = (layer >= st.layer_begin() && layer < st.layer_end()) ||
                            (st.has_head() && config.has_mtp() && layer == config.num_hidden_layers);
      if (!in_stage || config.mlp_kind(layer) != model::MlpKind::kSparse) continue;
      // Holders of each expert (positions) and each rank's expected tokens in this layer.
      std::vector<std::vector<size_t>> holders(E);
      for (size_t i = 0; i < ranks.size(); ++i)
        for (int32_t e : ranks[i]->experts())
          if (e >= 0 && e < E) holders[e].push_back(i);
      auto expected = [&](size_t i) {
        double sum = 0;
        for (int64_t e = 0; e < E; ++e)
          if (std::find(holders[e].begin(), holders[e].end(), i) != holders[e].end())
            sum += static_cast<double>(tokens[e]) / holders[e].size();
        return sum;
      };
      std::vector<int64_t> hottest;
      for (int64_t e = 0; e < E; ++e)
        if (tokens[e] > 0) hottest.push_back(e);
      std::stable_sort(hottest.begin(), hottest.end(), [&](int64_t a, int64_t b) { return tokens[a] > tokens[b]; });
      if (static_cast<int64_t>(hottest.size()) > per_layer) hottest.resize(per_layer);
      for (int64_t e : hottest) {
        int best = -1;
        double best_load = 0;
        int64_t best_bytes = 0;
        for (size_t i = 0; i < ranks.size(); ++i) {
          const RankAssignment& r = *ranks[i];
          if (std::find(holders[e].begin(), holders[e].end(), i) != holders[e].end()) continue;
          if (r.streamed_expert_bytes() > 0) continue;  // its experts already stream from disk
          // The copy's bytes as this rank would hold them in this layer.
          RankAssignment with = r;
          ExpertReplica* rep = with.add_replicas();
          rep->set_layer(static_cast<int32_t>(layer));
          rep->set_expert(static_cast<int32_t>(e));
          const int64_t bytes = cost.Layer(with, layer, false).weight_bytes - cost.Layer(r, layer, false).weight_bytes;
          if (r.memory_budget_bytes() > 0 &&
              r.weight_bytes() + added_bytes[i] + r.kv_reserve_bytes() + bytes > r.memory_budget_bytes())
            continue;
          const double l = expected(i);
          if (best < 0 || l < best_load) best = static_cast<int>(i), best_load = l, best_bytes = bytes;
        }
        if (best < 0) {
          summary.no_memory++;
          continue;
        }
        ExpertReplica* rep = ranks[best]->add_replicas();
        rep->set_layer(static_cast<int32_t>(layer));
        rep->set_expert(static_cast<int32_t>(e));
        holders[e].push_back(best);
        added_bytes[best] += best_bytes;
        summary.added++;
        summary.bytes += best_bytes;
      }
    }
  }
  if (auto s = RecountPlan(config, plan); !s.ok()) return s;
  return summary;
}

}  // namespace glm::placement
