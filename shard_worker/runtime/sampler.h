// Picks the next token from logits: greedy at temperature 0, otherwise temperature / top-k /
// top-p / min-p sampling with a per-request seeded generator (so a result is reproducible).
#ifndef GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_
#define GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

namespace glm::runtime {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // > 1 discourages tokens already in the sequence
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits [vocab] (modified in place by penalties); history = tokens seen so far.
  int32_t Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history);
  // log-softmax of the chosen token under the unmodified distribution is left to callers.

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties, as torch.argmax).
int32_t ArgMax(const float* logits, int64_t vocab);

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_
