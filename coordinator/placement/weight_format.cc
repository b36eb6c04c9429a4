#include "coordinator/placement/weight_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/stored_expert_codes.h"

namespace glm::placement {
namespace {

// The widest rows (columns) among the matrices `scope` re-quantises. Tensor-parallel slices are
// narrower, so a group size the kernels accept here they accept on every slice too.
int64_t WidestQuantizedRow(const model::ModelConfig& c, model::QuantizeScope scope) {
  int64_t widest = std::max({c.hidden_size, c.moe_intermediate_size,
                             c.moe_intermediate_size * std::max<int64_t>(1, c.n_shared_experts)});
  if (scope == model::QuantizeScope::kAllMatrices || scope == model::QuantizeScope::kMtpLayer) {
    widest = std::max({widest, c.intermediate_size, c.q_lora_rank, c.num_attention_heads * c.v_head_dim,
                       c.has_mtp() ? 2 * c.hidden_size : int64_t{0}});
  }
  return widest;
}

bool Given(const std::string& s) { return !s.empty(); }

}  // namespace

absl::StatusOr<WeightFormat> ParseWeightFormat(std::string_view weight_dtype, std::string_view quantize_scope,
                                               const model::ModelConfig& config) {
  model::LoadOptions load;
  if (auto s = model::ParseWeightDType(weight_dtype, &load); !s.ok()) return s;
  if (!quantize_scope.empty() && !model::ParseQuantizeScope(quantize_scope, &load.quantize_scope))
    return absl::InvalidArgumentError(
        absl::StrCat("quantize scope '", std::string(quantize_scope), "' is not one of experts, all, mtp"));
  WeightFormat f;
  f.dtype = load.matrix_dtype;
  f.group_size = load.matrix_group_size;
  f.scope = load.quantize_scope;
  if (auto s = model::CheckQuantizeScope(load, config); !s.ok()) return s;
  // Every scope reaches expert matrices (the MTP layer's own, for "mtp").
  if (auto s = model::CheckExpertFormatRequest(config, f.dtype, f.group_size, /*experts_in_scope=*/true); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("weight dtype '", std::string(weight_dtype), "': ", s.message()));
  if (f.quantized() && f.group_size > 0) {
    const int64_t widest = WidestQuantizedRow(config, f.scope);
    if (std::string why = kernels::CheckQuantGroupSize(*f.dtype, f.group_size, widest); !why.empty())
      return absl::InvalidArgumentError(absl::StrCat("weight dtype '", std::string(weight_dtype), "': ", why,
                                                     " (this model's re-quantised rows are up to ", widest,
                                                     " columns wide)"));
  }
  return f;
}

std::string WeightFormatText(const PlacementPlan& plan) {
  const std::string& dtype = plan.weight_dtype();
  // Activations and KV rows only where they differ from f32 (older plans leave them empty).
  std::string activations = plan.activation_dtype() == "bf16" ? ", bf16 activations" : "";
  if (!plan.kv_cache_dtype().empty() && plan.kv_cache_dtype() != "f32")
    absl::StrAppend(&activations, ", ", plan.kv_cache_dtype(), " KV cache");
  if (!plan.index_key_dtype().empty() && plan.index_key_dtype() != "f32")
    absl::StrAppend(&activations, ", ", plan.index_key_dtype(), " indexer keys");
  // Pre-quantised experts (glmctl quantize) are held as stored whatever the load asks.
  if (!plan.stored_expert_format().empty())
    activations = absl::StrCat(", experts pre-quantised ", plan.stored_expert_format(), activations);
  if (dtype.empty() || dtype == "stored") return "stored" + activations;
  if (dtype == "bf16" || dtype == "f32") return dtype + activations;
  const std::string& scope = plan.quantize_scope();
  return absl::StrCat(dtype, scope == "all" ? " (all matrices)" : scope == "mtp" ? " (MTP draft layer)" : " (experts)",
                      activations);
}

absl::Status ApplyLoadFlags(const LoadFlags& flags, PlacementPlan* plan) {
  auto conflict = [](const char* flag, const std::string& value, const char* field, const std::string& planned) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", value, " contradicts the pinned plan's ", field,
                                                   " '", planned, "': edit the plan or drop the flag"));
  };
  if (!Given(plan->weight_dtype())) {
    plan->set_weight_dtype(flags.weight_dtype);
  } else if (flags.weight_dtype_given && flags.weight_dtype != plan->weight_dtype()) {
    return conflict("weight-dtype", flags.weight_dtype, "weight_dtype", plan->weight_dtype());
  }
  if (!Given(plan->quantize_scope())) {
    plan->set_quantize_scope(flags.quantize_scope);
  } else if (flags.quantize_scope_given && flags.quantize_scope != plan->quantize_scope()) {
    return conflict("quantize-scope", flags.quantize_scope, "quantize_scope", plan->quantize_scope());
  }
  if (!Given(plan->activation_dtype())) {
    plan->set_activation_dtype(flags.activation_dtype);
  } else if (flags.activation_dtype_given && flags.activation_dtype != plan->activation_dtype()) {
    return conflict("activation-dtype", flags.activation_dtype, "activation_dtype", plan->activation_dtype());
  }
  bool planned = false;
  for (const RankAssignment& r : plan->ranks()) planned |= r.expert_memory_bytes() != 0;
  if (!planned) {
    for (RankAssignment& r : *plan->mutable_ranks()) r.set_expert_memory_bytes(flags.expert_memory_bytes);
  } else if (flags.expert_memory_given) {
    for (const RankAssignment& r : plan->ranks())
      if (r.expert_memory_bytes() != flags.expert_memory_bytes)
        return absl::InvalidArgumentError(absl::StrCat("--expert-memory-gib (", flags.expert_memory_bytes,
                                                       " bytes) contradicts the pinned plan's expert_memory_bytes ",
                                                       r.expert_memory_bytes(), " for rank ", r.rank(),
                                                       ": edit the plan or drop the flag"));
  }
  return absl::OkStatus();
}

}  // namespace glm::placement
