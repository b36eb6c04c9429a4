// Plan(): ranks into stages, slices inside each stage, then the layer split that balances the
// stages' predicted time per token under the memory budgets, then the per-rank predictions.
#include "coordinator/placement/planner.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "coordinator/placement/cost_model.h"
#include "coordinator/placement/expert_replica_planner.h"
#include "coordinator/placement/range_split.h"
#include "coordinator/placement/size_flags.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "coordinator/placement/weight_format.h"

namespace glm::placement {
namespace {

constexpr double kGib = 1024.0 * 1024.0 * 1024.0;
// Cost of a layer split that overflows a memory budget: worse than any feasible split, and still
// ordered by how far it overflows so the final error names the least-bad plan's numbers.
constexpr double kOverflowPenaltyMs = 1e9;

// Where a worker runs and what it may use there.
struct Resources {
  const NumaNode* node = nullptr;
  int ranks_on_node = 1;
  double bandwidth_gbps = 0;
  int cores = 1;
  int64_t budget_bytes = 0;
  int64_t expert_memory_bytes = 0;  // 0 = every routed expert resident
};

absl::StatusOr<std::vector<Resources>> ResolveResources(const std::vector<WorkerSlot>& workers,
                                                        const PlannerOptions& options) {
  std::map<std::pair<std::string, int>, int> sharing;
  for (const WorkerSlot& w : workers) ++sharing[{w.host.hostname(), w.numa_node}];
  std::vector<Resources> out(workers.size());
  for (size_t i = 0; i < workers.size(); ++i) {
    const WorkerSlot& w = workers[i];
    for (const NumaNode& n : w.host.numa_nodes())
      if (n.os_index() == w.numa_node) out[i].node = &n;
    if (out[i].node == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("worker rank ", i + 1, ": host '", w.host.hostname(),
                                                     "' has no NUMA node with os index ", w.numa_node));
    Resources& r = out[i];
    r.ranks_on_node = sharing[{w.host.hostname(), w.numa_node}];
    r.bandwidth_gbps = NodeBandwidthGbps(*r.node) / r.ranks_on_node;
    // Capped: the worker starts this many threads, and ValidatePlan refuses more.
    r.cores = std::clamp(r.node->cores() / r.ranks_on_node, 1, kMaxRankCores);
    if (!(r.bandwidth_gbps > 0 && r.bandwidth_gbps <= kMaxFlagGbps))
      return absl::InvalidArgumentError(absl::StrCat("worker rank ", i + 1, ": host '", w.host.hostname(),
                                                     "' NUMA node ", w.numa_node, " reports bandwidth ",
                                                     r.node->bandwidth_gbps(), " GB/s"));
    // A node whose memory the topology does not report (hwloc without its Linux backend, e.g.
    // HWLOC_COMPONENTS=-linux) gave a silent budget of 0 and "budget 0.0 GiB" in the error.
    if (options.memory_budget_gib <= 0 && r.node->memory_bytes() <= 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "worker rank ", i + 1, ": the topology of host '", w.host.hostname(), "' reports no memory for NUMA node ",
          w.numa_node, " (hwloc found none: is its Linux backend off, e.g. HWLOC_COMPONENTS=-linux?), so there is no "
          "default budget; pass --memory-budget-gib (memory per rank)"));
    // The options were range-checked in Plan(): these casts are in range.
    r.budget_bytes = options.memory_budget_gib > 0
                         ? static_cast<int64_t>(options.memory_budget_gib * kGib)
                         : static_cast<int64_t>(static_cast<double>(std::max<int64_t>(0, r.node->memory_bytes())) *
                                                kDefaultMemoryFraction / r.ranks_on_node);
    r.expert_memory_bytes = static_cast<int64_t>(options.expert_memory_gib * kGib);
    // An explicit budget beyond the node's memory "fitted" 4 x 90.7 GiB on a 256 GiB host
    // (--memory-budget-gib 100 on 64 GiB nodes). Checked when the topology reports memory.
    const int64_t node_memory = r.node->memory_bytes();
    if (options.memory_budget_gib > 0 && node_memory > 0 &&
        static_cast<double>(r.budget_bytes) * r.ranks_on_node > static_cast<double>(node_memory))
      return absl::InvalidArgumentError(absl::StrCat(
          "--memory-budget-gib ", options.memory_budget_gib, " for worker rank ", i + 1, ": ", r.ranks_on_node,
          r.ranks_on_node == 1 ? " rank" : " ranks", " of host '", w.host.hostname(), "' NUMA node ", w.numa_node,
          " would be given ", SizeText(r.budget_bytes * r.ranks_on_node), ", more than the ",
          SizeText(node_memory), " the topology reports for the node; lower it (0 = 90% of the node's share)"));
  }
  return out;
}

// The columns a load-time re-quantisation groups (1: none, or one scale a row).
int64_t LoadQuantGroup(const WeightFormat& format) {
  if (!format.quantized() || format.group_size < 0) return 1;
  if (format.group_size > 0) return format.group_size;
  return *format.dtype == kernels::DType::kI8 ? kernels::kDefaultI8GroupSize : kernels::kDefaultI4GroupSize;
}

// A pinned plan's slices of what is re-quantised at load start on the matrix's groups too (the
// check FillSlices' split makes for the plans made here).
absl::Status CheckSlicesOnGroups(const model::ModelConfig& c, const WeightFormat& format, bool etp,
                                 const RankAssignment& r) {
  const bool all = format.scope == model::QuantizeScope::kAllMatrices;
  if (format.quantized() && format.group_size < 0 && r.tp_size() > 1 && (c.n_shared_experts > 0 || etp || all))
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", r.rank(), ": one scale a row cannot be split over ", r.tp_size(),
        " ranks (int8-row: the experts' down_proj columns are split, and each rank's scale would be its "
        "part's): use groups (int8, int4) or one rank a stage"));
  const int64_t g = LoadQuantGroup(format);
  if (g <= 1) return absl::OkStatus();
  std::vector<std::pair<const char*, int64_t>> starts = {{"shared_begin", r.shared_begin()}};
  if (etp) starts.push_back({"expert_slice_begin", r.expert_slice_begin()});
  if (all) {
    starts.push_back({"dense_begin", r.dense_begin()});
    starts.push_back({"head_begin x v_head_dim", r.head_begin() * c.v_head_dim});
  }
  for (const auto& [field, column] : starts)
    if (column % g != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", r.rank(), ": ", field, " ", column, " is not on the groups of ", g,
          " columns the plan's weight dtype re-quantises in (each rank's groups must be the whole matrix's, or the "
          "ranks hold other weights than one rank does); make the plan again with `glmctl plan --json`"));
  return absl::OkStatus();
}

// Heads, dense/shared/expert slices and vocabulary of rank `i` of a stage of `p` ranks.
absl::Status FillSlices(const model::ModelConfig& c, const WeightFormat& format, bool etp, bool last_stage, int p,
                        int i, RankAssignment* r) {
  const int64_t align = c.fp8_weights ? c.fp8_block_cols : 1;
  // Load-time re-quantisation (--weight-dtype int4 / int8) quantises each rank's slice in groups
  // that start at the slice's first column: the slices of the matrices it quantises (down_proj's
  // columns) start on the whole matrix's groups, or the ranks would together hold other weights
  // than one rank does (and other tokens come out). One scale a row (group -1) has no grid.
  const int64_t quant_group = LoadQuantGroup(format);
  // Scope all quantises o_proj too, whose columns the heads slice (v_head_dim a head).
  const bool dense_quantized = format.scope == model::QuantizeScope::kAllMatrices;
  const int64_t head_align =
      dense_quantized && c.v_head_dim > 0 ? quant_group / std::gcd(quant_group, c.v_head_dim) : 1;
  // A split on the groups that does not exist (too few groups for the ranks) is refused: the
  // plain split would quietly serve other weights.
  for (const auto& [what, total, group_align] : std::vector<std::tuple<const char*, int64_t, int64_t>>{
           {"attention heads", c.num_attention_heads, head_align},
           {"the dense MLP's width", dense_quantized ? c.intermediate_size : 0, std::lcm(align, quant_group)},
           {"the shared expert's width", c.moe_intermediate_size * c.n_shared_experts, quant_group},
           {"the experts' width", etp ? c.moe_intermediate_size : 0, quant_group}})
    if (const int64_t n = total; n > 0 && !AlignedSplitExists(n, p, group_align)) {
      const std::string dtype(format.dtype ? kernels::DTypeName(*format.dtype) : std::string_view());
      const std::string where = absl::StrCat(what, " (", n, ")");
      return absl::InvalidArgumentError(absl::StrCat(
          "--weight-dtype ", dtype, " quantises in groups of ", quant_group, " columns, and ", where,
          " cannot be split over ", p, " ranks on those groups (each rank's groups must be the whole matrix's, or the "
          "ranks hold other weights than one rank does): use fewer ranks a stage, a smaller group (a multiple of 32, "
          "e.g. int8-g32), or another layout"));
    }
  const Range heads = AlignedSlice(c.num_attention_heads, p, i, head_align);
  r->set_head_begin(heads.begin);
  r->set_head_end(heads.end);
  const Range dense = AlignedSlice(c.intermediate_size, p, i, dense_quantized ? std::lcm(align, quant_group) : align);
  r->set_dense_begin(dense.begin);
  r->set_dense_end(dense.end);
  // Pre-quantised experts are sliced on their scale groups (a slice starting inside one is
  // refused at load): the group replaces the FP8 block, whose scales they no longer have.
  kernels::DType codes;
  int64_t group = 0;
  const int64_t expert_align = model::StoredExpertFormat(c, c.moe_intermediate_size, &codes, &group)
                                   ? group
                                   : std::lcm(align, quant_group);
  const Range shared = AlignedSlice(c.moe_intermediate_size * c.n_shared_experts, p, i, expert_align);
  r->set_shared_begin(shared.begin);
  r->set_shared_end(shared.end);
  if (etp) {
    // int64: the config's count is int64 (Plan() refused counts beyond int32 expert ids).
    for (int64_t e = 0; e < c.n_routed_experts; ++e) r->add_experts(static_cast<int32_t>(e));
    const Range slice = AlignedSlice(c.moe_intermediate_size, p, i, expert_align);
    r->set_expert_slice_begin(slice.begin);
    r->set_expert_slice_end(slice.end);
  } else {
    const Range experts = ExpertSlice(c.n_routed_experts, p, i);
    for (int64_t e = experts.begin; e < experts.end; ++e) r->add_experts(static_cast<int32_t>(e));
  }
  if (last_stage) {
    const Range vocab = BalancedSlice(c.vocab_size, p, i);
    r->set_vocab_begin(vocab.begin);
    r->set_vocab_end(vocab.end);
  }
  return CheckSlicesOnGroups(c, format, etp, *r);  // as a pinned plan's (one scale a row included)
}

// Per-rank prefix sums over the main layers, plus the stage's fixed extras, so any layer range's
// cost is O(ranks).
struct StageCosts {
  std::vector<int> ranks;                      // indexes into workers
  std::vector<std::vector<Footprint>> prefix;  // [rank][layer + 1]
  std::vector<Footprint> extra;                // embedding / head / MTP
  bool spans_hosts = false;
  bool has_head = false;
};

double CommunicationMs(size_t ranks, bool spans_hosts, bool has_head, int64_t layers) {
  double ms = kStageHandoffMs;
  if (ranks > 1) {
    const double all_reduce = spans_hosts ? kAllReduceMsAcrossHosts : kAllReduceMsInHost;
    ms += all_reduce * static_cast<double>(2 * layers + (has_head ? 1 : 0));
  }
  return ms;
}

double CommunicationMs(const StageCosts& s, int64_t layers) {
  return CommunicationMs(s.ranks.size(), s.spans_hosts, s.has_head, layers);
}

double MsForBytes(int64_t bytes, double gbps) { return static_cast<double>(bytes) / (gbps * 1e6); }

// What rank j of the stage holds and reads for layers [a, b), extras included.
Footprint RankFootprint(const StageCosts& s, size_t j, int64_t a, int64_t b) {
  Footprint f = s.extra[j];
  f.weight_bytes += s.prefix[j][b].weight_bytes - s.prefix[j][a].weight_bytes;
  f.decode_bytes += s.prefix[j][b].decode_bytes - s.prefix[j][a].decode_bytes;
  f.routed_expert_bytes += s.prefix[j][b].routed_expert_bytes - s.prefix[j][a].routed_expert_bytes;
  return f;
}

// The stage's cost for layers [a, b): its slowest rank's time plus communication, or the
// overflow penalty when a rank's weights and KV reserve exceed its budget.
double StageCostMs(const StageCosts& s, const std::vector<Resources>& res, int64_t kv_reserve, int64_t a, int64_t b) {
  double worst_ms = 0, worst_ratio = 0;
  for (size_t j = 0; j < s.ranks.size(); ++j) {
    const Resources& r = res[s.ranks[j]];
    const Footprint f = RankFootprint(s, j, a, b);
    const int64_t dec = f.decode_bytes;
    const int64_t mem = f.ResidentBytes(r.expert_memory_bytes) + kv_reserve;
    worst_ms = std::max(worst_ms, MsForBytes(dec, r.bandwidth_gbps));
    worst_ratio = std::max(worst_ratio, static_cast<double>(mem) / std::max<int64_t>(1, r.budget_bytes));
  }
  if (worst_ratio > 1.0) return kOverflowPenaltyMs * worst_ratio;
  return worst_ms + CommunicationMs(s, b - a);
}

// Contiguous split of `layers` into the stages minimising the largest stage cost (the pipeline's
// throughput limit; at batch 1 the stages run one after another anyway). Returns stage ends.
std::vector<int64_t> SplitLayers(const std::vector<StageCosts>& stages, const std::vector<Resources>& res,
                                 int64_t kv_reserve, int64_t layers) {
  const size_t n = stages.size();
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][b]: the least max-cost of stages 0..s covering layers [0, b); from[s][b]: stage s's begin.
  std::vector<std::vector<double>> best(n, std::vector<double>(layers + 1, inf));
  std::vector<std::vector<int64_t>> from(n, std::vector<int64_t>(layers + 1, -1));
  for (int64_t b = 1; b <= layers; ++b) best[0][b] = StageCostMs(stages[0], res, kv_reserve, 0, b);
  for (size_t s = 1; s < n; ++s) {
    for (int64_t b = static_cast<int64_t>(s) + 1; b <= layers; ++b) {
      for (int64_t a = static_cast<int64_t>(s); a < b; ++a) {
        if (best[s - 1][a] == inf) continue;
        const double cost = std::max(best[s - 1][a], StageCostMs(stages[s], res, kv_reserve, a, b));
        if (cost < best[s][b]) {
          best[s][b] = cost;
          from[s][b] = a;
        }
      }
    }
  }
  std::vector<int64_t> ends(n);
  int64_t end = layers;
  for (size_t s = n; s-- > 0;) {
    ends[s] = end;
    end = s > 0 ? from[s][end] : 0;
  }
  return ends;
}

// Every rank's bytes and predictions, and the plan's, from what each rank holds and reads
// (`footprints`, by position in plan->ranks()) over its stage's layers: one computation for a
// fresh plan and a pinned one (whose own numbers are not trusted). Returns a line per rank whose
// weights and KV reserve exceed its memory budget; a budget of 0 is unlimited when
// `zero_budget_unlimited` (pinned plans), else it overflows too.
std::vector<std::string> FillPredictions(const CostModel& cost, const std::vector<Footprint>& footprints,
                                         bool zero_budget_unlimited, PlacementPlan* plan) {
  const model::ModelConfig& config = cost.config();
  kv_cache::KvDType kv_dtype = kv_cache::KvDType::kF32;  // checked by Plan / RecountPlan; empty = f32
  if (!plan->kv_cache_dtype().empty()) kv_cache::ParseKvDType(plan->kv_cache_dtype(), &kv_dtype);
  kv_cache::KvDType index_dtype = kv_cache::KvDType::kF32;
  if (!plan->index_key_dtype().empty()) kv_cache::ParseKvDType(plan->index_key_dtype(), &index_dtype);
  std::map<int32_t, int> position;  // rank -> index into plan->ranks()
  for (int i = 0; i < plan->ranks_size(); ++i) position[plan->ranks(i).rank()] = i;
  double total_ms = 0, comm_ms = 0, slowest_ms = -1;
  std::vector<std::string> overflows;
  for (int s = 0; s < plan->stages_size(); ++s) {
    const Stage& stage = plan->stages(s);
    const int64_t a = stage.layer_begin(), b = stage.layer_end();
    int64_t kv_per_token = 0;
    for (int64_t l = a; l < b; ++l) kv_per_token += cost.KvBytesPerToken(l, kv_dtype, index_dtype);
    if (stage.has_head() && config.has_mtp())
      kv_per_token += cost.KvBytesPerToken(config.num_hidden_layers, kv_dtype, index_dtype);
    double stage_ms = 0;
    bool spans_hosts = false;
    for (int32_t k : stage.ranks()) {
      RankAssignment* r = plan->mutable_ranks(position.at(k));
      const Footprint& f = footprints[position.at(k)];
      spans_hosts |= r->host() != plan->ranks(position.at(stage.ranks(0))).host();
      // Memory held: routed experts beyond the expert budget stay on disk.
      const int64_t weights = f.ResidentBytes(r->expert_memory_bytes());
      const int64_t decode = f.decode_bytes;
      const int64_t kv_reserve = r->kv_reserve_bytes();
      r->set_weight_bytes(weights);
      r->set_streamed_expert_bytes(f.weight_bytes - weights);
      r->set_decode_bytes_per_token(decode);
      r->set_kv_bytes_per_token(kv_per_token);
      const double ms = r->bandwidth_gbps() > 0 ? MsForBytes(decode, r->bandwidth_gbps()) : 0;
      r->set_predicted_ms_per_token(ms);
      stage_ms = std::max(stage_ms, ms);
      if (ms > slowest_ms) {
        slowest_ms = ms;
        plan->set_slowest_rank(r->rank());
      }
      const bool unlimited = zero_budget_unlimited && r->memory_budget_bytes() == 0;
      if (!unlimited && weights + kv_reserve > r->memory_budget_bytes()) {
        overflows.push_back(absl::StrCat("rank ", r->rank(), " (host ", r->host(), " NUMA node ", r->numa_node(),
                                         ", stage ", s, ", layers [", a, ", ", b, ")) needs ",
                                         SizeText(weights + kv_reserve), " (weights ", SizeText(weights),
                                         " + KV reserve ", SizeText(kv_reserve), "), budget ",
                                         SizeText(r->memory_budget_bytes()),
                                         r->streamed_expert_bytes() > 0
                                             ? absl::StrCat(" (", SizeText(r->streamed_expert_bytes()),
                                                            " of routed experts already left on disk)")
                                             : ""));
      }
    }
    const double c = CommunicationMs(stage.ranks_size(), spans_hosts, stage.has_head(), b - a);
    comm_ms += c;
    total_ms += stage_ms + c;
  }
  plan->set_communication_ms_per_token(comm_ms);
  plan->set_predicted_ms_per_token(total_ms);
  plan->set_predicted_tokens_per_s(total_ms > 0 ? 1000.0 / total_ms : 0);
  return overflows;
}

}  // namespace

std::vector<WorkerSlot> OnePerNumaNode(const std::vector<HostTopology>& hosts) {
  std::vector<WorkerSlot> slots;
  for (const HostTopology& h : hosts) {
    for (const NumaNode& n : h.numa_nodes()) {
      WorkerSlot w;
      w.host = h;
      w.numa_node = n.os_index();
      slots.push_back(std::move(w));
    }
  }
  return slots;
}

absl::StatusOr<PlacementPlan> Plan(const model::ModelConfig& config, const std::vector<WorkerSlot>& workers,
                                   const PlannerOptions& options) {
  const int n_workers = static_cast<int>(workers.size());
  const int64_t layers = config.num_hidden_layers;
  if (n_workers == 0) return absl::InvalidArgumentError("no worker ranks to place the model on");
  if (layers < 1) return absl::InvalidArgumentError("the model has no layers");
  const bool etp = options.expert_layout == "expert-tensor-parallel";
  if (!etp && options.expert_layout != "expert-parallel")
    return absl::InvalidArgumentError(absl::StrCat("expert layout '", options.expert_layout,
                                                   "' is unknown (expert-parallel, expert-tensor-parallel)"));
  // Named by the flags glmctl and the coordinator fill them from. NaN, inf and 1e30 are refused
  // here: cast to bytes they were undefined (INT64_MIN budgets and KV reserves).
  if (auto s = CheckGibFlag("--memory-budget-gib", options.memory_budget_gib, "90% of the NUMA node's share");
      !s.ok())
    return s;
  if (auto s = CheckGibFlag("--kv-cache-gib", options.kv_cache_gib); !s.ok()) return s;
  if (auto s = CheckGibFlag("--expert-memory-gib", options.expert_memory_gib, "all routed experts resident"); !s.ok())
    return s;
  if (options.weight_bytes_per_param < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("weight bytes per parameter must not be negative, got ", options.weight_bytes_per_param));
  if (auto s = CheckPlanDimensions(config); !s.ok()) return s;
  auto format = ParseWeightFormat(options.weight_dtype, options.quantize_scope, config);
  if (!format.ok()) return format.status();
  if (bool bf16 = false; !kernels::ParseActivationDType(options.activation_dtype, &bf16))
    return absl::InvalidArgumentError(
        absl::StrCat("activation dtype '", options.activation_dtype, "' is not one of f32, bf16"));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32; !kv_cache::ParseKvDType(options.kv_cache_dtype, &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("KV cache dtype", options.kv_cache_dtype));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32; !kv_cache::ParseKvDType(options.index_key_dtype, &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("indexer key dtype", options.index_key_dtype));
  if (options.weight_bytes_per_param > 0 && format->dtype)
    return absl::InvalidArgumentError(absl::StrCat("give weight_bytes_per_param or weight dtype '",
                                                   options.weight_dtype, "', not both"));
  format->bytes_per_param = options.weight_bytes_per_param;
  std::vector<std::string> hostnames;
  for (const WorkerSlot& w : workers)
    if (std::find(hostnames.begin(), hostnames.end(), w.host.hostname()) == hostnames.end())
      hostnames.push_back(w.host.hostname());
  if (options.stages < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("--stages must be 0 (one pipeline stage per host) or more, got ", options.stages));
  const int n_stages = options.stages > 0 ? options.stages : static_cast<int>(hostnames.size());
  if (n_stages > n_workers)
    return absl::InvalidArgumentError(absl::StrCat(n_stages, " pipeline stages need at least ", n_stages,
                                                   " worker ranks; there are ", n_workers));
  if (n_stages > layers)
    return absl::InvalidArgumentError(
        absl::StrCat(n_stages, " pipeline stages for a model of ", layers, " layers: each stage needs a layer"));
  auto res = ResolveResources(workers, options);
  if (!res.ok()) return res.status();

  PlacementPlan plan;
  plan.set_model(options.model_name);
  plan.set_world_size(n_workers + 1);
  plan.set_expert_layout(etp ? "expert-tensor-parallel" : "expert-parallel");
  plan.set_weight_dtype(options.weight_dtype.empty() ? "stored" : options.weight_dtype);
  plan.set_quantize_scope(options.quantize_scope.empty() ? "experts" : options.quantize_scope);
  if (!config.expert_quant_format.empty())
    plan.set_stored_expert_format(absl::StrCat(config.expert_quant_format, config.expert_quant_group_size < 0
                                                                               ? std::string("-row")
                                                                               : absl::StrCat("-g", config.expert_quant_group_size)));
  plan.set_activation_dtype(options.activation_dtype.empty() ? "f32" : options.activation_dtype);
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32; kv_cache::ParseKvDType(options.kv_cache_dtype, &kv))
    plan.set_kv_cache_dtype(kv_cache::KvDTypeName(kv));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32; kv_cache::ParseKvDType(options.index_key_dtype, &kv))
    plan.set_index_key_dtype(kv_cache::KvDTypeName(kv));
  for (const std::string& name : hostnames)
    for (const WorkerSlot& w : workers)
      if (w.host.hostname() == name) {
        *plan.add_hosts() = w.host;
        break;
      }

  // Ranks into stages (the remainder to the first stages), slices inside each stage. The ranks
  // are taken host by host (hosts in order of their first rank, rank order within a host), not
  // in rank order: `mpirun --map-by node` (deploy/launch.sh with a hostfile) deals ranks round
  // robin, 1 and 3 on host a, 2 and 4 on host b, and stages filled in rank order then put every
  // tensor-parallel all-reduce across the network.
  std::vector<int> by_host;
  for (const std::string& name : hostnames)
    for (int i = 0; i < n_workers; ++i)
      if (workers[i].host.hostname() == name) by_host.push_back(i);
  // plan.ranks stays in rank order (index i = rank i + 1) whatever stage a rank lands in.
  for (int i = 0; i < n_workers; ++i) plan.add_ranks();
  const CostModel cost(config, *format);
  const int64_t kv_reserve = static_cast<int64_t>(options.kv_cache_gib * kGib);
  std::vector<StageCosts> stage_costs(n_stages);
  // Stage sizes differ by at most one. Dealt in host order, each stage takes the largest size left
  // that still fits in its host's remaining ranks (so 6 ranks on 2 hosts in 4 stages are 2,1 | 2,1,
  // not 2,2,1,1 with the second stage's all-reduces across the network); if none fits, the next.
  std::vector<int> stage_sizes;
  {
    std::multiset<int, std::greater<int>> sizes;
    for (int s = 0; s < n_stages; ++s) sizes.insert(n_workers / n_stages + (s < n_workers % n_stages ? 1 : 0));
    int taken = 0;
    while (!sizes.empty()) {
      const std::string& host = workers[by_host[taken]].host.hostname();
      int left_on_host = 0;
      for (size_t j = taken; j < by_host.size() && workers[by_host[j]].host.hostname() == host; ++j) ++left_on_host;
      auto it = sizes.lower_bound(left_on_host);  // the largest size <= what the host has left
      if (it == sizes.end()) it = sizes.begin();
      stage_sizes.push_back(*it);
      taken += *it;
      sizes.erase(it);
    }
  }
  int next = 0;
  for (int s = 0; s < n_stages; ++s) {
    const int p = stage_sizes[s];
    if (p > config.num_attention_heads)
      return absl::InvalidArgumentError(absl::StrCat("stage ", s, " would have ", p, " ranks but the model has only ",
                                                     config.num_attention_heads,
                                                     " attention heads; use more pipeline stages"));
    Stage* stage = plan.add_stages();
    stage->set_index(s);
    stage->set_has_embedding(s == 0);
    stage->set_has_head(s == n_stages - 1);
    StageCosts& sc = stage_costs[s];
    sc.has_head = stage->has_head();
    for (int i = 0; i < p; ++i, ++next) {
      const int k = by_host[next];  // index into workers: rank k + 1
      const WorkerSlot& w = workers[k];
      const Resources& r = (*res)[k];
      RankAssignment* a = plan.mutable_ranks(k);
      a->set_rank(k + 1);
      a->set_stage(s);
      a->set_tp_index(i);
      a->set_tp_size(p);
      a->set_host(w.host.hostname());
      a->set_numa_node(w.numa_node);
      a->set_cores(r.cores);
      a->set_bandwidth_gbps(r.bandwidth_gbps);
      a->set_memory_budget_bytes(r.budget_bytes);
      a->set_kv_reserve_bytes(kv_reserve);
      a->set_expert_memory_bytes(r.expert_memory_bytes);
      if (auto s = FillSlices(config, *format, etp, stage->has_head(), p, i, a); !s.ok()) return s;
      stage->add_ranks(k + 1);
      sc.ranks.push_back(k);
      if (w.host.hostname() != workers[sc.ranks.front()].host.hostname()) sc.spans_hosts = true;
      std::vector<Footprint> prefix(layers + 1);
      for (int64_t l = 0; l < layers; ++l) {
        prefix[l + 1] = prefix[l];
        prefix[l + 1] += cost.Layer(*a, l, etp);
      }
      sc.prefix.push_back(std::move(prefix));
      Footprint extra;
      if (stage->has_embedding()) extra += cost.Embedding();
      if (stage->has_head()) {
        extra += cost.Head(*a);
        if (config.has_mtp()) extra += cost.Layer(*a, config.num_hidden_layers, etp);
      }
      sc.extra.push_back(extra);
    }
  }

  const std::vector<int64_t> ends = SplitLayers(stage_costs, *res, kv_reserve, layers);

  // Predictions and the memory check on the chosen split.
  std::vector<Footprint> footprints(n_workers);
  for (int s = 0; s < n_stages; ++s) {
    Stage* stage = plan.mutable_stages(s);
    const int64_t a = s == 0 ? 0 : ends[s - 1], b = ends[s];
    stage->set_layer_begin(static_cast<int32_t>(a));
    stage->set_layer_end(static_cast<int32_t>(b));
    const StageCosts& sc = stage_costs[s];
    for (size_t j = 0; j < sc.ranks.size(); ++j) footprints[sc.ranks[j]] = RankFootprint(sc, j, a, b);
  }
  const std::vector<std::string> overflows = FillPredictions(cost, footprints, /*zero_budget_unlimited=*/false, &plan);
  if (!overflows.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model does not fit: ", absl::StrJoin(overflows, "; "),
                     ". Add ranks or hosts, lower --kv-cache-gib, raise --memory-budget-gib if the nodes "
                     "have more memory, re-quantise the experts (--weight-dtype int8|int4), or leave routed "
                     "experts on disk beyond --expert-memory-gib"));
  }
  if (options.hot_expert_replicas != 0) {
    if (options.expert_load == nullptr)
      return absl::InvalidArgumentError(
          "--hot-expert-replicas needs --expert-load FILE (routing statistics recorded with `glmctl expert-load`)");
    if (!options.expert_load->model.empty() && !options.model_name.empty() &&
        options.expert_load->model != options.model_name)
      return absl::InvalidArgumentError(absl::StrCat(
          "--expert-load was recorded on model '", options.expert_load->model, "' but the plan is for '",
          options.model_name, "': record it on this model, or set its \"model\" to \"\" to use it anyway"));
    auto replicas = AddHotExpertReplicas(config, *options.expert_load, options.hot_expert_replicas, &plan);
    if (!replicas.ok()) return replicas.status();
    plan.set_replicas_without_memory(static_cast<int32_t>(replicas->no_memory));
  }
  return plan;
}

absl::Status RecountPlan(const model::ModelConfig& config, PlacementPlan* plan) {
  auto format = ParseWeightFormat(plan->weight_dtype(), plan->quantize_scope(), config);
  if (!format.ok()) return format.status();
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32;
      !plan->kv_cache_dtype().empty() && !kv_cache::ParseKvDType(plan->kv_cache_dtype(), &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("plan kv_cache_dtype", plan->kv_cache_dtype()));
  if (kv_cache::KvDType kv = kv_cache::KvDType::kF32;
      !plan->index_key_dtype().empty() && !kv_cache::ParseKvDType(plan->index_key_dtype(), &kv))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("plan index_key_dtype", plan->index_key_dtype()));
  const bool etp = plan->expert_layout() == "expert-tensor-parallel";
  const CostModel cost(config, *format);
  std::vector<Footprint> footprints(plan->ranks_size());
  for (int i = 0; i < plan->ranks_size(); ++i) {
    const RankAssignment& r = plan->ranks(i);
    if (r.stage() < 0 || r.stage() >= plan->stages_size())
      return absl::InvalidArgumentError(absl::StrCat("rank ", r.rank(), " names stage ", r.stage()));
    if (auto s = CheckSlicesOnGroups(config, *format, etp, r); !s.ok()) return s;
    const Stage& st = plan->stages(r.stage());
    Footprint& f = footprints[i];
    for (int64_t l = st.layer_begin(); l < st.layer_end(); ++l) f += cost.Layer(r, l, etp);
    if (st.has_embedding()) f += cost.Embedding();
    if (st.has_head()) {
      f += cost.Head(r);
      if (config.has_mtp()) f += cost.Layer(r, config.num_hidden_layers, etp);
    }
  }
  const std::vector<std::string> overflows = FillPredictions(cost, footprints, /*zero_budget_unlimited=*/true, plan);
  if (!overflows.empty())
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model does not fit the plan's memory budgets (bytes recounted from the ranks' slices): ",
        absl::StrJoin(overflows, "; "),
        ". Raise the rank's memory_budget_bytes (0 = unlimited) or make a new plan with `glmctl plan --json`"));
  return absl::OkStatus();
}

}  // namespace glm::placement
