// Calibration statistics for calibrated quantisation (kernels/gptq.h): the Gram matrix Σ x xᵀ of
// the inputs of every MLP matrix (routed and shared experts, dense MLPs), gathered by running the
// model as stored over calibration tokens (text like what it will serve; never the text a quality
// benchmark then scores). gate_proj and up_proj share their input and so their statistics.
#ifndef GLM_SHARD_WORKER_MODEL_MLP_CALIBRATION_H_
#define GLM_SHARD_WORKER_MODEL_MLP_CALIBRATION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/kernels/gptq.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/kernels/weight_view.h"
#include "shard_worker/model/checkpoint.h"

namespace glm::model {

class MlpCalibration {
 public:
  // Loads the whole model from `checkpoint` as stored (f32 activations) and runs `ids` through it
  // in independent sequences of at most `sequence_tokens` tokens, gathering every MLP matrix's
  // input statistics. InvalidArgument for an empty `ids`, ids outside the vocabulary or
  // sequence_tokens < 1; load errors as they come.
  static absl::StatusOr<std::shared_ptr<const MlpCalibration>> Collect(const Checkpoint& checkpoint,
                                                                       const std::vector<int32_t>& ids,
                                                                       int64_t sequence_tokens,
                                                                       kernels::ThreadPool* pool);

  // The input statistics of the matrix called `name` in the checkpoint
  // ("model.layers.1.mlp.experts.3.up_proj.weight"); null when the calibration never reached it
  // (an expert no calibration token was routed to) or it is no MLP matrix.
  const kernels::InputGram* Find(const std::string& name) const;
  // GPTQ (kernels/gptq.h) of tensor `name`'s columns [col_begin, col_begin + src.cols) — all of
  // it, or a tensor-parallel slice, which is quantised as a matrix of its own (no other rank's
  // columns can absorb its errors) — into `dtype` (kI8 / kI4) with `group_size`: out
  // [src.rows, DTypeRowBytes] and scales [src.rows, groups]. NotFound without statistics for it.
  absl::Status Quantize(const std::string& name, const kernels::WeightView& src, int64_t col_begin, kernels::DType dtype,
                        int64_t group_size, uint8_t* out, uint16_t* scales) const;
  int64_t tokens() const { return tokens_; }
  int64_t matrices() const { return static_cast<int64_t>(grams_.size()); }

 private:
  std::map<std::string, std::shared_ptr<const kernels::InputGram>> grams_;
  int64_t tokens_ = 0;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_MLP_CALIBRATION_H_
