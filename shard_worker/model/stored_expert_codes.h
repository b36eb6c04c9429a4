// Reading pre-quantised expert matrices (`glmctl quantize`; ModelConfig::expert_quant_format):
// the codes and F16 scales a checkpoint stores for every routed and shared expert's gate/up/down
// are taken as they are (no re-quantising at load, a quarter to a half of the bytes to read),
// whole or as a tensor-parallel slice, into buffers the caller keeps.
#ifndef GLM_SHARD_WORKER_MODEL_STORED_EXPERT_CODES_H_
#define GLM_SHARD_WORKER_MODEL_STORED_EXPERT_CODES_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shard_worker/kernels/weight_view.h"
#include "shard_worker/model/aligned_buffer.h"
#include "shard_worker/model/checkpoint.h"

namespace glm::model {

// Whether `name` is held as stored codes in `ckpt` (an expert matrix of a checkpoint whose
// config.json has expert_quantization; the validation checked its dtype and shape).
bool HoldsStoredCodes(const Checkpoint& ckpt, const std::string& name);

// A load's conversion against a config whose experts are stored pre-quantised (OK when it has
// none): none, or the stored format with the same group size, where the conversion reaches the
// experts (experts_in_scope); a BF16 / F32 conversion never. The coordinator asks it before
// planning, so a cluster refuses at startup what every worker would refuse at load.
absl::Status CheckExpertFormatRequest(const ModelConfig& config, std::optional<kernels::DType> convert_to,
                                      int64_t requested_group, bool experts_in_scope);

// What a load asks of the matrices, against stored codes: a conversion to the same format and
// group size (or none) keeps them; any other (BF16 / F32, another integer format or group size, a
// simulated format) is refused with InvalidArgument naming the tensor and what it holds.
// requested_group: LoadOptions::matrix_group_size (0 = the format's default, -1 = per row).
absl::Status CheckStoredCodesRequest(const Checkpoint& ckpt, const std::string& name,
                                     std::optional<kernels::DType> convert_to, int64_t requested_group,
                                     bool in_quantize_scope, bool simulating);

// Reads `length` bytes at `offset` of a tensor into dst (the loader's reads: its threads, its
// byte count).
using TensorReader = std::function<absl::Status(const Checkpoint::Located& where, int64_t offset, int64_t length,
                                                void* dst)>;

struct StoredCodes {
  kernels::WeightView view;  // kI8 / kI4 with group scales, pointing into the buffers
  AlignedBuffer codes;
  AlignedBuffer scales;
};
// Rows [rb, re) and columns [cb, ce) of stored codes. A column slice must start on a scale
// group (and, for int4, a 32-column block): its values are then exactly the whole matrix's, the
// last group keeping the whole matrix's scale where the slice ends inside it. Otherwise
// InvalidArgument (re-quantising a slice would give a rank other values than the matrix holds).
absl::StatusOr<StoredCodes> ReadStoredCodes(const Checkpoint& ckpt, const std::string& name, int64_t rb, int64_t re,
                                            int64_t cb, int64_t ce, const TensorReader& read);

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_STORED_EXPERT_CODES_H_
