#include "coordinator/placement/expert_replica_planner.h"

#include <algorithm>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/weight_format.h"

namespace glm::placement {

bool ParseHotExpertReplicas(std::string_view text, int64_t* per_layer) {
  if (text == "auto") {
    *per_layer = kAllReplicasThatFit;
    return true;
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &n) || n < 0) return false;
  *per_layer = n;
  return true;
}

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
  // One copy's bytes in a layer, as the cost model counts it (the layer's format: an MTP-only
  // quantisation scope makes the MTP layer's experts smaller); the same on every rank.
  std::map<int64_t, int64_t> copy_bytes_of;
  auto copy_bytes = [&](int64_t layer) {
    auto [it, fresh] = copy_bytes_of.try_emplace(layer, 0);
    if (fresh) {
      RankAssignment none, one;
      ExpertReplica* rep = one.add_replicas();
      rep->set_layer(static_cast<int32_t>(layer));
      it->second = cost.Layer(one, layer, false).weight_bytes - cost.Layer(none, layer, false).weight_bytes;
    }
    return it->second;
  };
  for (const Stage& st : plan->stages()) {
    if (st.ranks_size() < 2) continue;
    std::vector<RankAssignment*> ranks;  // by position in the stage
    for (int32_t k : st.ranks())
      for (RankAssignment& r : *plan->mutable_ranks())
        if (r.rank() == k) ranks.push_back(&r);
    std::sort(ranks.begin(), ranks.end(),
              [](const RankAssignment* a, const RankAssignment* b) { return a->tp_index() < b->tp_index(); });
    // Per recorded MoE layer of the stage: who holds each expert (positions), and its wanted copies.
    struct Wanted {
      int64_t layer, expert;
      double share;  // of its layer's recorded choices
    };
    std::map<int64_t, std::vector<std::vector<size_t>>> holders;
    std::vector<Wanted> wanted;
    for (const auto& [layer, tokens] : load.tokens_per_expert) {
      const bool in_stage = (layer >= st.layer_begin() && layer < st.layer_end()) ||
                            (st.has_head() && config.has_mtp() && layer == config.num_hidden_layers);
      if (!in_stage || config.mlp_kind(layer) != model::MlpKind::kSparse) continue;
      auto& h = holders[layer];
      h.assign(E, {});
      for (size_t i = 0; i < ranks.size(); ++i)
        for (int32_t e : ranks[i]->experts())
          if (e >= 0 && e < E) h[e].push_back(i);
      std::vector<int64_t> hottest;
      int64_t total = 0;
      for (int64_t e = 0; e < E; ++e) {
        total += tokens[e];
        if (tokens[e] > 0) hottest.push_back(e);
      }
      std::stable_sort(hottest.begin(), hottest.end(), [&](int64_t a, int64_t b) { return tokens[a] > tokens[b]; });
      if (static_cast<int64_t>(hottest.size()) > per_layer) hottest.resize(per_layer);
      for (int64_t e : hottest) wanted.push_back({layer, e, static_cast<double>(tokens[e]) / total});
    }
    // The hottest copies first over all layers: where memory runs out, the ones left are the coolest.
    std::stable_sort(wanted.begin(), wanted.end(), [](const Wanted& a, const Wanted& b) { return a.share > b.share; });
    std::vector<int64_t> added_bytes(ranks.size(), 0);
    for (const Wanted& w : wanted) {
      const std::vector<int64_t>& tokens = load.tokens_per_expert.at(w.layer);
      std::vector<std::vector<size_t>>& h = holders[w.layer];
      auto holds = [&](int64_t e, size_t i) { return std::find(h[e].begin(), h[e].end(), i) != h[e].end(); };
      // A rank's expected tokens in this layer: its experts', a shared expert's split between holders.
      auto expected = [&](size_t i) {
        double sum = 0;
        for (int64_t e = 0; e < E; ++e)
          if (holds(e, i)) sum += static_cast<double>(tokens[e]) / h[e].size();
        return sum;
      };
      int best = -1;
      double best_load = 0;
      int64_t best_bytes = 0;
      for (size_t i = 0; i < ranks.size(); ++i) {
        const RankAssignment& r = *ranks[i];
        if (holds(w.expert, i)) continue;
        if (r.streamed_expert_bytes() > 0) continue;  // its experts already stream from disk
        const int64_t bytes = copy_bytes(w.layer);
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
      rep->set_layer(static_cast<int32_t>(w.layer));
      rep->set_expert(static_cast<int32_t>(w.expert));
      h[w.expert].push_back(best);
      added_bytes[best] += best_bytes;
      summary.added++;
    }
  }
  if (auto s = RecountPlan(config, plan); !s.ok()) return s;
  return summary;
}

}  // namespace glm::placement
