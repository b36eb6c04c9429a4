// ValidatePlan(): the structural checks an operator's hand-edited plan must pass before any
// worker loads a byte. Every error names the stage, rank and range at fault.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/range_split.h"
#include "coordinator/placement/size_flags.h"
#include "coordinator/placement/weight_format.h"
#include "shard_worker/kv_cache/kv_block_pool.h"
#include "shard_worker/kernels/matmul.h"

namespace glm::placement {
namespace {

// A slice one rank claims of a dimension.
struct Claim {
  int64_t begin, end;
  int32_t rank;
};

// `claims` must tile [0, total) exactly: no gap, no overlap, no range outside. `allow_empty`:
// whether a rank may hold none (attention heads and the last stage's vocabulary rows it may not:
// every rank of a stage runs attention and the head, a worker with no heads divided by zero).
absl::Status CheckTiling(std::vector<Claim> claims, int64_t total, const std::string& what, int stage,
                         bool allow_empty = true) {
  for (const Claim& c : claims) {
    if (c.begin < 0 || c.end < c.begin || c.end > total)
      return absl::InvalidArgumentError(absl::StrCat("stage ", stage, ": rank ", c.rank, " has ", what, " [", c.begin,
                                                     ", ", c.end, "), outside [0, ", total, ")"));
    if (!allow_empty && c.begin == c.end)
      return absl::InvalidArgumentError(absl::StrCat("stage ", stage, ": rank ", c.rank, " has no ", what, " ([",
                                                     c.begin, ", ", c.end, ") is empty); every rank of a stage needs "
                                                     "some (fewer ranks a stage, or more stages)"));
  }
  std::sort(claims.begin(), claims.end(), [](const Claim& a, const Claim& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t covered = 0;
  int32_t last_rank = 0;
  for (const Claim& c : claims) {
    if (c.begin == c.end) continue;  // an empty slice claims nothing
    if (c.begin > covered)
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", stage, ": ", what, " [", covered, ", ", c.begin, ") are held by no rank"));
    if (c.begin < covered)
      return absl::InvalidArgumentError(absl::StrCat("stage ", stage, ": ranks ", last_rank, " and ", c.rank,
                                                     " overlap on ", what, " [", c.begin, ", ",
                                                     std::min(covered, c.end), ")"));
    covered = c.end;
    last_rank = c.rank;
  }
  if (covered != total)
    return absl::InvalidArgumentError(
        absl::StrCat("stage ", stage, ": ", what, " [", covered, ", ", total, ") are held by no rank"));
  return absl::OkStatus();
}

absl::Status CheckStages(const PlacementPlan& plan, const model::ModelConfig& config) {
  if (plan.stages_size() == 0) return absl::InvalidArgumentError("the plan has no stages");
  int64_t next_layer = 0;
  for (int s = 0; s < plan.stages_size(); ++s) {
    const Stage& st = plan.stages(s);
    if (st.index() != s)
      return absl::InvalidArgumentError(absl::StrCat("stage at position ", s, " has index ", st.index()));
    if (st.layer_begin() != next_layer)
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", s, " starts at layer ", st.layer_begin(), " but the previous stage ended at layer ",
                       next_layer, next_layer < st.layer_begin() ? " (layers in between are in no stage)"
                                                                 : " (layers in two stages)"));
    if (st.layer_end() <= st.layer_begin())
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", s, " has no layers: [", st.layer_begin(), ", ", st.layer_end(), ")"));
    next_layer = st.layer_end();
    if (st.has_embedding() != (s == 0))
      return absl::InvalidArgumentError(absl::StrCat("stage ", s, (s == 0 ? " must" : " must not"),
                                                     " hold the embedding (only the first stage does)"));
    if (st.has_head() != (s == plan.stages_size() - 1))
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", s, (s == plan.stages_size() - 1 ? " must" : " must not"),
                       " hold the head (only the last stage does)"));
    if (st.ranks_size() == 0) return absl::InvalidArgumentError(absl::StrCat("stage ", s, " has no ranks"));
  }
  if (next_layer != config.num_hidden_layers)
    return absl::InvalidArgumentError(absl::StrCat("the stages end at layer ", next_layer, " but the model has ",
                                                   config.num_hidden_layers, " layers"));
  return absl::OkStatus();
}

// The numbers of one rank a worker or the table takes from the plan as they are: the thread
// count the worker starts, the bytes and predictions the table prints.
absl::Status CheckRankNumbers(const PlacementPlan& plan, const RankAssignment& r) {
  const int32_t k = r.rank();
  // The node the rank is bound to, when the plan carries its host's topology: no more threads
  // than it has hardware threads.
  const NumaNode* node = nullptr;
  for (const HostTopology& h : plan.hosts())
    if (h.hostname() == r.host())
      for (const NumaNode& n : h.numa_nodes())
        if (n.os_index() == r.numa_node()) node = &n;
  int node_threads = node != nullptr ? std::max(node->cores(), node->pus()) : 0;
  if (node_threads >= kMaxRankCores) node_threads = 0;  // the cap binds first (or the topology is absurd)
  const int most = node_threads > 0 ? node_threads : kMaxRankCores;
  if (r.cores() < 1 || r.cores() > most)
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", k, " has cores ", r.cores(), "; a rank runs 1..", most, " compute threads",
        node_threads > 0 ? absl::StrCat(" (host '", r.host(), "' NUMA node ", r.numa_node(), " has ", node_threads, ")")
                         : ""));
  if (r.numa_node() < 0)
    return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has numa_node ", r.numa_node(), " (an os index, >= 0)"));
  if (r.expert_memory_bytes() < 0)
    return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has expert_memory_bytes ", r.expert_memory_bytes(),
                                                   " (0 = all resident, else positive)"));
  const std::pair<const char*, int64_t> bytes[] = {
      {"weight_bytes", r.weight_bytes()},
      {"kv_bytes_per_token", r.kv_bytes_per_token()},
      {"decode_bytes_per_token", r.decode_bytes_per_token()},
      {"memory_budget_bytes", r.memory_budget_bytes()},
      {"kv_reserve_bytes", r.kv_reserve_bytes()},
      {"streamed_expert_bytes", r.streamed_expert_bytes()},
  };
  for (const auto& [name, value] : bytes)
    if (value < 0) return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has ", name, " ", value, " (negative)"));
  const std::pair<const char*, double> reals[] = {
      {"bandwidth_gbps", r.bandwidth_gbps()},
      {"predicted_ms_per_token", r.predicted_ms_per_token()},
  };
  for (const auto& [name, value] : reals)
    if (!(std::isfinite(value) && value >= 0))
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", k, " has ", name, " ", value, " (a finite number >= 0)"));
  return absl::OkStatus();
}

absl::Status CheckPlanNumbers(const PlacementPlan& plan) {
  const std::pair<const char*, double> reals[] = {
      {"predicted_ms_per_token", plan.predicted_ms_per_token()},
      {"predicted_tokens_per_s", plan.predicted_tokens_per_s()},
      {"communication_ms_per_token", plan.communication_ms_per_token()},
  };
  for (const auto& [name, value] : reals)
    if (!(std::isfinite(value) && value >= 0))
      return absl::InvalidArgumentError(absl::StrCat("the plan's ", name, " is ", value, " (a finite number >= 0)"));
  return absl::OkStatus();
}

// A rank's replicas of hot experts: expert-parallel only, each a MoE layer of its stage, an
// expert it does not own, once.
absl::Status CheckReplicas(const RankAssignment& r, const std::set<int32_t>& own, const Stage& st,
                           const model::ModelConfig& config, bool etp) {
  if (r.replicas_size() == 0) return absl::OkStatus();
  if (etp)
    return absl::InvalidArgumentError(absl::StrCat("rank ", r.rank(), " lists expert replicas, but expert-tensor-parallel "
                                                   "ranks already hold a slice of every expert"));
  std::set<std::pair<int32_t, int32_t>> seen;
  for (const ExpertReplica& rep : r.replicas()) {
    const int64_t l = rep.layer();
    const bool moe_layer = (l >= st.layer_begin() && l < st.layer_end() && l < config.num_hidden_layers &&
                            config.mlp_kind(l) == model::MlpKind::kSparse) ||
                           (st.has_head() && config.has_mtp() && l == config.num_hidden_layers);
    const std::string what = absl::StrCat("rank ", r.rank(), ": replica of expert ", rep.expert(), " in layer ", l);
    if (!moe_layer) return absl::InvalidArgumentError(absl::StrCat(what, ": not a MoE layer of stage ", st.index()));
    if (rep.expert() < 0 || rep.expert() >= config.n_routed_experts)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the model has experts 0..", config.n_routed_experts - 1));
    if (own.count(rep.expert()))
      return absl::InvalidArgumentError(absl::StrCat(what, ": the rank already owns that expert"));
    if (!seen.emplace(rep.layer(), rep.expert()).second)
      return absl::InvalidArgumentError(absl::StrCat(what, ": listed twice"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPlanDimensions(const model::ModelConfig& c) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const std::pair<const char*, int64_t> counts[] = {
      {"num_hidden_layers", c.num_hidden_layers},     {"num_attention_heads", c.num_attention_heads},
      {"intermediate_size", c.intermediate_size},     {"moe_intermediate_size", c.moe_intermediate_size},
      {"n_routed_experts", c.n_routed_experts},       {"n_shared_experts", c.n_shared_experts},
      {"vocab_size", c.vocab_size},
  };
  for (const auto& [name, value] : counts)
    if (value < 0 || value > kMax)
      return absl::InvalidArgumentError(
          absl::StrCat("the model's ", name, " ", value, " does not fit a placement plan (0..", kMax, ")"));
  if (c.n_shared_experts > 0 && c.moe_intermediate_size > kMax / c.n_shared_experts)
    return absl::InvalidArgumentError(absl::StrCat("the model's shared-expert columns (moe_intermediate_size ",
                                                   c.moe_intermediate_size, " x n_shared_experts ",
                                                   c.n_shared_experts, ") do not fit a placement plan (0..", kMax,
                                                   ")"));
  return absl::OkStatus();
}

absl::Status ValidatePlan(const PlacementPlan& plan, const model::ModelConfig& config, int world_size) {
  if (plan.world_size() != world_size)
    return absl::InvalidArgumentError(absl::StrCat(
        "the plan is for a world of ", plan.world_size(), " ranks (", plan.world_size() - 1,
        " shard workers + the coordinator); this one has ", world_size, " (", world_size - 1,
        " shard workers): start `-np ", plan.world_size() - 1, " shard_worker` or plan for ", world_size - 1,
        " workers"));
  const int n_workers = world_size - 1;
  if (n_workers < 1) return absl::InvalidArgumentError("the world has no worker ranks");
  const bool etp = plan.expert_layout() == "expert-tensor-parallel";
  if (!etp && plan.expert_layout() != "expert-parallel")
    return absl::InvalidArgumentError(absl::StrCat("expert layout '", plan.expert_layout(),
                                                   "' is unknown (expert-parallel, expert-tensor-parallel)"));
  // The load options every worker applies: refused here, before any worker loads a byte.
  if (auto format = ParseWeightFormat(plan.weight_dtype(), plan.quantize_scope(), config); !format.ok())
    return absl::InvalidArgumentError(absl::StrCat("weight_dtype / quantize_scope: ", format.status().message()));
  if (bool bf16 = false; !kernels::ParseActivationDType(plan.activation_dtype(), &bf16))
    return absl::InvalidArgumentError(
        absl::StrCat("activation_dtype '", plan.activation_dtype(), "' is not one of f32, bf16"));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32;
      !plan.kv_cache_dtype().empty() && !kv_cache::ParseKvDType(plan.kv_cache_dtype(), &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("kv_cache_dtype", plan.kv_cache_dtype()));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32;
      !plan.index_key_dtype().empty() && !kv_cache::ParseKvDType(plan.index_key_dtype(), &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("index_key_dtype", plan.index_key_dtype()));
  if (auto s = CheckPlanDimensions(config); !s.ok()) return s;
  if (auto s = CheckStages(plan, config); !s.ok()) return s;
  if (auto s = CheckPlanNumbers(plan); !s.ok()) return s;

  // Ranks 1..N, each once, each in the stage that lists it at its tp_index.
  std::map<int32_t, const RankAssignment*> by_rank;
  for (const RankAssignment& r : plan.ranks()) {
    if (r.rank() < 1 || r.rank() > n_workers)
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", r.rank(), " is not a worker rank (workers are 1..", n_workers, ")"));
    if (!by_rank.emplace(r.rank(), &r).second)
      return absl::InvalidArgumentError(absl::StrCat("rank ", r.rank(), " is assigned twice"));
    if (auto s = CheckRankNumbers(plan, r); !s.ok()) return s;
  }
  for (int32_t k = 1; k <= n_workers; ++k)
    if (!by_rank.count(k)) return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has no assignment"));
  std::map<int32_t, int32_t> staged;  // rank -> the stage that lists it
  for (const Stage& st : plan.stages()) {
    // First, so a duplicate is named as one rather than as its wrong position.
    std::set<int32_t> in_stage;
    for (int32_t k : st.ranks())
      if (!in_stage.insert(k).second)
        return absl::InvalidArgumentError(absl::StrCat("rank ", k, " is listed twice in stage ", st.index()));
    for (int i = 0; i < st.ranks_size(); ++i) {
      const int32_t k = st.ranks(i);
      auto it = by_rank.find(k);
      if (it == by_rank.end())
        return absl::InvalidArgumentError(absl::StrCat("stage ", st.index(), " lists rank ", k, ", which has no assignment"));
      if (auto [at, fresh] = staged.emplace(k, st.index()); !fresh)
        return absl::InvalidArgumentError(
            absl::StrCat("rank ", k, " is listed in more than one stage (", at->second, " and ", st.index(), ")"));
      const RankAssignment& r = *it->second;
      if (r.stage() != st.index() || r.tp_index() != i || r.tp_size() != st.ranks_size())
        return absl::InvalidArgumentError(absl::StrCat(
            "rank ", k, " says stage ", r.stage(), ", tp ", r.tp_index(), " of ", r.tp_size(), " but stage ",
            st.index(), " lists it at position ", i, " of ", st.ranks_size()));
    }
  }
  if (static_cast<int>(staged.size()) != n_workers) {
    for (int32_t k = 1; k <= n_workers; ++k)
      if (!staged.count(k)) return absl::InvalidArgumentError(absl::StrCat("rank ", k, " is in no stage"));
  }

  // Inside each stage: heads, dense, shared, experts and vocabulary held exactly once.
  const int64_t shared_total = config.moe_intermediate_size * config.n_shared_experts;
  for (const Stage& st : plan.stages()) {
    const int s = st.index();
    std::vector<Claim> heads, dense, shared, vocab;
    std::map<int32_t, int32_t> expert_owner;
    std::vector<Claim> expert_slices;
    for (int32_t k : st.ranks()) {
      const RankAssignment& r = *by_rank[k];
      heads.push_back({r.head_begin(), r.head_end(), k});
      dense.push_back({r.dense_begin(), r.dense_end(), k});
      shared.push_back({r.shared_begin(), r.shared_end(), k});
      if (st.has_head()) {
        vocab.push_back({r.vocab_begin(), r.vocab_end(), k});
      } else if (r.vocab_begin() != 0 || r.vocab_end() != 0) {
        return absl::InvalidArgumentError(absl::StrCat("stage ", s, ": rank ", k, " has vocabulary [", r.vocab_begin(),
                                                       ", ", r.vocab_end(), ") but the stage holds no head"));
      }
      std::set<int32_t> own;
      for (int32_t e : r.experts()) {
        if (e < 0 || e >= config.n_routed_experts)
          return absl::InvalidArgumentError(absl::StrCat("stage ", s, ": rank ", k, " lists expert ", e,
                                                         "; the model has experts 0..", config.n_routed_experts - 1));
        if (!own.insert(e).second)
          return absl::InvalidArgumentError(absl::StrCat("stage ", s, ": rank ", k, " lists expert ", e, " twice"));
      }
      if (auto x = CheckReplicas(r, own, st, config, etp); !x.ok()) return x;
      if (etp) {
        if (static_cast<int64_t>(own.size()) != config.n_routed_experts)
          return absl::InvalidArgumentError(absl::StrCat("stage ", s, ": rank ", k, " lists ", own.size(),
                                                         " experts; expert-tensor-parallel ranks hold a slice of all ",
                                                         config.n_routed_experts));
        expert_slices.push_back({r.expert_slice_begin(), r.expert_slice_end(), k});
      } else {
        for (int32_t e : own) {
          auto [it, fresh] = expert_owner.emplace(e, k);
          if (!fresh)
            return absl::InvalidArgumentError(
                absl::StrCat("stage ", s, ": expert ", e, " is held by both rank ", it->second, " and rank ", k));
        }
      }
    }
    if (auto x = CheckTiling(heads, config.num_attention_heads, "attention heads", s, /*allow_empty=*/false); !x.ok())
      return x;
    if (auto x = CheckTiling(dense, config.intermediate_size, "dense-MLP columns", s); !x.ok()) return x;
    if (auto x = CheckTiling(shared, shared_total, "shared-expert columns", s); !x.ok()) return x;
    if (st.has_head())
      if (auto x = CheckTiling(vocab, config.vocab_size, "vocabulary rows", s, /*allow_empty=*/false); !x.ok())
        return x;
    if (etp) {
      if (auto x = CheckTiling(expert_slices, config.moe_intermediate_size, "expert columns", s); !x.ok()) return x;
    } else {
      // int64 like the config's count (CheckPlanDimensions keeps it within int32 expert ids).
      for (int64_t e = 0; e < config.n_routed_experts; ++e)
        if (!expert_owner.count(static_cast<int32_t>(e)))
          return absl::InvalidArgumentError(absl::StrCat("stage ", s, ": expert ", e, " is held by no rank"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPlanModel(const PlacementPlan& plan, const std::string& model_name) {
  if (plan.model().empty() || plan.model() == model_name) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("the plan is for model '", plan.model(), "' but this coordinator serves '",
                                                 model_name, "' (--model): make the plan for it with `glmctl plan --model ",
                                                 "DIR --json`, or set the plan's model to \"\" to use it anyway"));
}

absl::Status CheckPlanAgainstWorkers(const PlacementPlan& plan, const std::vector<WorkerSlot>& workers) {
  std::map<std::pair<std::string, int32_t>, int64_t> budgets;  // (host, node) -> the ranks' budgets
  // A plan's host names are labels (`glmctl plan` writes host0, host1, ... for a topology it was
  // given): what must hold is that they name the workers' hosts one to one — ranks the plan puts
  // together run together, and ranks it puts apart run apart.
  std::map<std::string, std::pair<std::string, int32_t>> label_host;  // plan host -> (worker host, first rank)
  std::map<std::string, std::pair<std::string, int32_t>> host_label;  // worker host -> (plan host, first rank)
  for (const RankAssignment& r : plan.ranks()) {
    const int32_t k = r.rank();
    if (k < 1 || k > static_cast<int32_t>(workers.size()))
      return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has no worker (", workers.size(), " started)"));
    const HostTopology& host = workers[k - 1].host;
    const auto [by_label, new_label] = label_host.try_emplace(r.host(), host.hostname(), k);
    if (!new_label && by_label->second.first != host.hostname())
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", k, " has host '", r.host(), "' like rank ", by_label->second.second, ", but their workers run on '",
          by_label->second.first, "' and '", host.hostname(), "': the plan's hosts must match how mpirun placed the ranks"));
    const auto [by_host, new_host] = host_label.try_emplace(host.hostname(), r.host(), k);
    if (!new_host && by_host->second.first != r.host())
      return absl::InvalidArgumentError(absl::StrCat(
          "ranks ", by_host->second.second, " and ", k, " run on the same host '", host.hostname(),
          "' but the plan puts them on hosts '", by_host->second.first, "' and '", r.host(),
          "': the plan's hosts must match how mpirun placed the ranks"));
    if (host.numa_nodes_size() == 0) continue;  // no topology from this worker: nothing to check
    const NumaNode* node = nullptr;
    std::vector<int32_t> nodes;
    for (const NumaNode& n : host.numa_nodes()) {
      nodes.push_back(n.os_index());
      if (n.os_index() == r.numa_node()) node = &n;
    }
    if (node == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has numa_node ", r.numa_node(), " but host '",
                                                     host.hostname(), "' has NUMA nodes ", FormatIdRanges(nodes)));
    const int threads = std::max(node->cores(), node->pus());
    if (threads > 0 && r.cores() > threads)
      return absl::InvalidArgumentError(absl::StrCat("rank ", k, " has cores ", r.cores(), " but host '", host.hostname(),
                                                     "' NUMA node ", r.numa_node(), " has ", threads,
                                                     " hardware threads"));
    int64_t& sum = budgets[{r.host(), r.numa_node()}];
    // Saturating: a hand-edited budget may be near INT64_MAX.
    sum = r.memory_budget_bytes() > std::numeric_limits<int64_t>::max() - sum ? std::numeric_limits<int64_t>::max()
                                                                               : sum + r.memory_budget_bytes();
    if (node->memory_bytes() > 0 && sum > node->memory_bytes())
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", k, ": the memory_budget_bytes of the ranks on host '", host.hostname(), "' NUMA node ",
          r.numa_node(), " add up to ", SizeText(sum), " or more, more than the ", SizeText(node->memory_bytes()),
          " the worker's topology reports for the node"));
  }
  return absl::OkStatus();
}

}  // namespace glm::placement
