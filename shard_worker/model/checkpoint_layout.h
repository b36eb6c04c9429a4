// The tensor names, roles and shapes a glm_moe_dsa checkpoint must hold for its config.json:
// the loader validates against it and `glmctl synth` writes it.
#ifndef GLM_SHARD_WORKER_MODEL_CHECKPOINT_LAYOUT_H_
#define GLM_SHARD_WORKER_MODEL_CHECKPOINT_LAYOUT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/model/model_config.h"

namespace glm::model {

enum class TensorRole {
  kMatrix,  // a linear weight: F32, BF16, F16, or F8_E4M3 with a weight_scale_inv companion
  kVector,  // a norm weight or bias: F32, BF16, F16 -> f32
};

struct ExpectedTensor {
  TensorRole role;
  std::vector<int64_t> shape;
  bool optional = false;  // may be absent (indexer weights of "shared" layers)
};

using ExpectedMap = std::map<std::string, ExpectedTensor>;

// "model.layers.{layer}."
std::string LayerPrefix(int64_t layer);
ExpectedMap ExpectedTensors(const ModelConfig& config);
class Checkpoint;
// DataLoss naming the file and tensor unless `ckpt` holds exactly `expected` (optional ones may
// be absent): shapes, dtypes (matrices F32/BF16/F16, or F8_E4M3 with a weight_scale_inv of the
// config's block grid), and no tensor the config does not imply (rotary inv_freq aside).
absl::Status ValidateCheckpointTensors(const Checkpoint& ckpt, const ExpectedMap& expected);
// A routed or shared expert's gate/up/down matrix ("...experts.E.gate_proj.weight",
// "...shared_experts.down_proj.weight"): what `glmctl quantize` stores as codes.
bool IsExpertMatrix(const std::string& name);
// Columns of an expert matrix (IsExpertMatrix) by the config: gate/up hidden_size, down the
// expert's intermediate size (times n_shared_experts for the shared one).
int64_t ExpertMatrixCols(const ModelConfig& config, const std::string& name);
// The F16 scales beside a pre-quantised matrix: "X.weight" -> "X.weight_scale".
std::string QuantScaleName(const std::string& weight_name);
// Pre-quantised experts (ModelConfig::expert_quant_format): their codes' dtype (kI8 / kI4) and
// columns per scale for a matrix of `cols` columns (-1 in the config: cols). False: none.
bool StoredExpertFormat(const ModelConfig& config, int64_t cols, kernels::DType* dtype, int64_t* group_size);
// Weight layer a tensor belongs to (num_hidden_layers = MTP), or -1 for embedding/norm/head.
int64_t TensorLayer(const std::string& name);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_CHECKPOINT_LAYOUT_H_
