// Single-sequence generation through the KV cache (the single-process engine behind `glmctl
// generate`): prefill the prompt, then decode one token per step.
#ifndef GLM_SHARD_WORKER_RUNTIME_GENERATOR_H_
#define GLM_SHARD_WORKER_RUNTIME_GENERATOR_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/sampler.h"

namespace glm::runtime {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  bool ignore_eos = false;
  SamplingParams sampling;
  int64_t prefill_chunk = 2048;  // prompt tokens per forward step
  // Called with each new token as soon as it is chosen; return false to stop.
  std::function<bool(int32_t)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::string finish_reason;    // "stop" (EOS) or "length"
  // Weight bytes the decode forwards read (after the prompt's): ForwardOutput::weight_bytes_read.
  int64_t decode_weight_bytes = 0;
};

absl::StatusOr<GenerateResult> Generate(const model::Glm5Model& model, const std::vector<int32_t>& prompt,
                                        const GenerateOptions& options);

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_GENERATOR_H_
