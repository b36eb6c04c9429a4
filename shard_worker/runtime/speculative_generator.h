// Single-sequence generation with speculative decoding (the engine behind `glmctl generate
// --speculative`): the MTP head (chained on itself for k > 1) or prompt lookup proposes k
// tokens, the main model verifies all of them in one forward, and the KV caches roll back what
// was rejected. Greedy output is exactly plain decoding's; sampled output keeps its
// distribution through the rejection rule.
#ifndef GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_GENERATOR_H_
#define GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_GENERATOR_H_

#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/generator.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::runtime {

struct SpeculativeStats {
  int64_t steps = 0;                        // verify forwards
  int64_t drafted = 0;
  int64_t accepted = 0;
  std::vector<int64_t> drafted_at;          // per draft position (1..k)
  std::vector<int64_t> accepted_at;
  // Wall time of the drafting (MTP forwards / n-gram lookup) and of the verify forwards. Step
  // costs timed in isolation (one position repeated) understate a MoE verify: there every
  // position routes to experts of its own, which generation reads cold.
  // A step drafted alongside (SpeculativeConfig::draft_alongside) counts wholly as verify time,
  // and its drafting, which ran on another thread meanwhile, as draft time too.
  double draft_seconds = 0, verify_seconds = 0;
  int64_t alongside_steps = 0;  // verify steps whose drafts were made alongside
  // MTP: rows of the MTP head the drafts read, summed (the vocabulary each, or the size of the
  // draft vocabulary: SpeculativeConfig::draft_vocab).
  int64_t mtp_head_rows = 0;
  // Weight bytes the verify and the drafting forwards read (ForwardOutput::weight_bytes_read),
  // after the prompt: compare with GenerateResult::decode_weight_bytes of plain decoding.
  int64_t verify_weight_bytes = 0, draft_weight_bytes = 0;
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
};

absl::StatusOr<GenerateResult> GenerateSpeculative(const model::Glm5Model& model, const std::vector<int32_t>& prompt,
                                                   const GenerateOptions& options, const SpeculativeConfig& spec,
                                                   SpeculativeStats* stats = nullptr);

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_GENERATOR_H_
