// How the workers will hold the model's matrices, as the planner needs to count them: the
// --weight-dtype / --quantize-scope names a PlacementPlan carries, parsed with the same
// functions the workers use (model::ParseWeightDType, model::ParseQuantizeScope), so the
// coordinator refuses at startup what a worker would refuse at load.
#ifndef GLM_COORDINATOR_PLACEMENT_WEIGHT_FORMAT_H_
#define GLM_COORDINATOR_PLACEMENT_WEIGHT_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protos/placement.pb.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/model_weights.h"

namespace glm::placement {

struct WeightFormat {
  // Unset: every matrix as stored in the checkpoint. kBF16 / kF32: every matrix converted
  // (embedding and heads too). kI8 / kI4: the matrices `scope` names re-quantised in groups of
  // `group_size` columns (-1: one scale per row); the embedding and lm_head stay as stored.
  std::optional<kernels::DType> dtype;
  int64_t group_size = 0;
  model::QuantizeScope scope = model::QuantizeScope::kExperts;
  // Legacy flat count (PlannerOptions::weight_bytes_per_param): when > 0, every matrix takes
  // this many bytes per weight whatever `dtype` says.
  int64_t bytes_per_param = 0;

  bool quantized() const { return dtype && kernels::IsGroupQuantized(*dtype); }
};

// `weight_dtype` ("" = stored) and `quantize_scope` ("" = experts) as a WeightFormat.
// InvalidArgument naming the bad value and the accepted ones; a group size the kernels cannot
// run on this model's matrices (kernels::CheckQuantGroupSize) is refused here too, rather than
// by every worker halfway through loading.
absl::StatusOr<WeightFormat> ParseWeightFormat(std::string_view weight_dtype, std::string_view quantize_scope,
                                               const model::ModelConfig& config);

// "stored", or e.g. "int8 (experts)", "int4-g64 (all matrices)", "bf16", then ", bf16 activations"
// and ", int8 KV cache" where those are not f32: for the plan table.
std::string WeightFormatText(const PlacementPlan& plan);

// The load options the coordinator's flags name, for a plan an operator pinned (--placement):
// the plan's own values win; a value the plan leaves empty (weight_dtype, quantize_scope) or 0
// (every rank's expert_memory_bytes) takes the flag's; a flag given explicitly (`*_given`) that
// contradicts the plan is an InvalidArgument error rather than silently ignored.
struct LoadFlags {
  std::string weight_dtype = "stored";
  bool weight_dtype_given = false;
  std::string quantize_scope = "experts";
  bool quantize_scope_given = false;
  int64_t expert_memory_bytes = 0;
  bool expert_memory_given = false;
  std::string activation_dtype = "f32";
  bool activation_dtype_given = false;
};
absl::Status ApplyLoadFlags(const LoadFlags& flags, PlacementPlan* plan);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_WEIGHT_FORMAT_H_
