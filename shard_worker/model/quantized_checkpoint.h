// `glmctl quantize`: a checkpoint whose routed and shared experts are stored pre-quantised (int8
// or int4 codes with F16 group scales, ModelConfig::expert_quant_format), so that loads read a
// quarter (int4 from BF16) to a half of the experts' bytes and re-quantise nothing, and experts
// streamed from disk (--expert-memory-gib) are read as codes. The codes are exactly those a load
// with --weight-dtype FORMAT computes (the loader computes them here), so the pre-quantised
// checkpoint serves the same tokens as the original with that flag.
#ifndef GLM_SHARD_WORKER_MODEL_QUANTIZED_CHECKPOINT_H_
#define GLM_SHARD_WORKER_MODEL_QUANTIZED_CHECKPOINT_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "shard_worker/kernels/dtype.h"

namespace glm::model {

struct QuantizeCheckpointOptions {
  kernels::DType dtype = kernels::DType::kI4;  // kI8 or kI4
  int64_t group_size = 0;  // 0 = the format's default, -1 = a scale a row, else a multiple of 32
  bool replace = false;    // write into a non-empty directory (PrepareCheckpointDir)
  std::function<void(const std::string&)> progress;  // a line per shard written
};

// Reads the checkpoint in `model_dir` and writes the pre-quantised one into `out_dir` (new or
// empty, unless options.replace): the same shard files, each holding the same tensors but for the
// experts' matrices (codes, plus "<name>_scale"; FP8 block scales of those dropped), config.json
// with "expert_quantization" added, the index, and every other file of the directory (tokenizer,
// generation config, chat template) copied. Refuses a checkpoint that is already pre-quantised.
// Returns a one-line JSON summary.
absl::StatusOr<std::string> WriteQuantizedCheckpoint(const std::string& model_dir, const std::string& out_dir,
                                                     const QuantizeCheckpointOptions& options);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_QUANTIZED_CHECKPOINT_H_
