// Parsing of the load-time options users name on command lines (--weight-dtype,
// --quantize-scope), shared by the coordinator, the workers, glmctl and the benchmarks.
#include <string>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {

bool ParseQuantizeScope(std::string_view name, QuantizeScope* scope) {
  if (name == "experts") *scope = QuantizeScope::kExperts;
  else if (name == "all") *scope = QuantizeScope::kAllMatrices;
  else if (name == "mtp") *scope = QuantizeScope::kMtpLayer;
  else return false;
  return true;
}

const char* QuantizeScopeName(QuantizeScope scope) {
  switch (scope) {
    case QuantizeScope::kExperts:
      return "experts";
    case QuantizeScope::kAllMatrices:
      return "all";
    case QuantizeScope::kMtpLayer:
      return "mtp";
  }
  return "experts";
}

absl::Status CheckQuantizeScope(const LoadOptions& options, const ModelConfig& config) {
  if (options.quantize_scope != QuantizeScope::kMtpLayer) return absl::OkStatus();
  if (options.matrix_dtype && !kernels::IsGroupQuantized(*options.matrix_dtype))
    return absl::InvalidArgumentError(
        "quantize scope mtp re-quantises the MTP layer to int8 or int4; a bf16 or f32 weight dtype converts every matrix");
  if (!config.has_mtp()) return absl::InvalidArgumentError("quantize scope mtp: this model has no MTP layer");
  return absl::OkStatus();
}

absl::Status ParseWeightDType(std::string_view name, LoadOptions* options) {
  if (name.empty() || name == "stored") {
    options->matrix_dtype.reset();
    return absl::OkStatus();
  }
  if (name == "bf16") {
    options->matrix_dtype = kernels::DType::kBF16;
    return absl::OkStatus();
  }
  if (name == "f32") {
    options->matrix_dtype = kernels::DType::kF32;
    return absl::OkStatus();
  }
  kernels::DType q;
  int64_t group = 0;
  if (kernels::ParseQuantFormatName(name, &q, &group)) {
    options->matrix_dtype = q;
    options->matrix_group_size = group;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("weight dtype '", std::string(name),
                                                 "' is not one of stored, bf16, f32, int8, int8-row, int4, "
                                                 "int8-g<N>, int4-g<N>"));
}

}  // namespace glm::model
