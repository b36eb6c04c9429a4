// Picks the next token from logits: greedy at temperature 0, otherwise temperature / top-k /
// top-p / min-p sampling with a per-request seeded generator (so a result is reproducible).
// Both pick from the adjusted logits (AdjustLogits: logit bias and penalties), greedy included.
#ifndef GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_
#define GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace glm::runtime {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // > 1 discourages tokens already in the sequence
  float presence_penalty = 0.0f;    // subtracted once from every token the output contains
  float frequency_penalty = 0.0f;   // subtracted per occurrence in the output
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, added to its logit)
  uint64_t seed = 0;
};

// Whether AdjustLogits changes anything for these parameters.
bool AdjustsLogits(const SamplingParams& params);

// The logits a request samples from, in place (vLLM's order): logit_bias added; then the
// repetition penalty on every token of `history` (the prompt, then the output so far: a
// positive logit divided by it, a negative one multiplied) and the presence and frequency
// penalties on the output part, history[output_start:] (logit -= frequency · count +
// presence · [count > 0]). Token ids outside [0, vocab) are ignored.
void AdjustLogits(float* logits, int64_t vocab, const SamplingParams& params, const std::vector<int32_t>& history,
                  size_t output_start);

// The tokens a sampled request (temperature > 0) can draw and their probabilities: the
// softmax of logits / temperature over the top-k tokens (all without top-k), then min-p (keep
// p >= min_p · p_max) and top-p (the smallest prefix, in descending probability, whose mass
// reaches top_p; among equal probabilities lower ids first). `probs` sums to 1. `ids` is in
// no particular order: the distribution does not depend on it, and drawing from a 150K
// vocabulary must not cost a sort per token (selection instead: O(vocab)).
struct SamplingCandidates {
  std::vector<int32_t> ids;  // empty: every token, probs indexed by id
  std::vector<float> probs;
  int32_t id(size_t i) const { return ids.empty() ? static_cast<int32_t>(i) : ids[i]; }
};
// Draws a token from `dist` (its probabilities need not be normalised; u · their total walked
// in the listed order).
int32_t DrawFrom(const SamplingCandidates& dist, std::mt19937_64& rng);

// `logits` are the adjusted logits (AdjustLogits already applied); params.temperature > 0.
void SelectCandidates(const float* logits, int64_t vocab, const SamplingParams& params, SamplingCandidates* out);
// The reference twin: the definition computed the slow way (every token sorted by logit, then
// ids ascending; probabilities in double), what the tests and bench/sampling_bench compare
// SelectCandidates against. Its ids are in descending probability order.
void SelectCandidatesReference(const float* logits, int64_t vocab, const SamplingParams& params,
                               SamplingCandidates* out);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits [vocab] (adjusted in place, see AdjustLogits); history = the prompt and the output
  // so far, the output starting at history[output_start].
  int32_t Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history, size_t output_start);
  // log-softmax of the chosen token under the unmodified distribution is left to callers.

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// The seed of the sampler that draws a request's `index`-th generated token (0 = the first):
// every engine — the single-process generator and the cluster's last stage — draws token i
// from its own generator seeded so, and a seed gives the same text in both.
inline uint64_t TokenSeed(uint64_t request_seed, int64_t index) {
  return request_seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(index);
}

// The ids of the k largest logits (ties: lower id first; k clamped to [0, vocab]), in
// descending logit order: by selection (O(vocab)), then a sort of the k (top-k sampling,
// top logprobs).
void TopTokens(const float* logits, int64_t vocab, int64_t k, std::vector<int32_t>* ids);

// OK when rows [n_rows, vocab] of logits are all finite; else InternalError naming the row and
// vocabulary id of the first NaN / infinity (corrupt weights or a numerical overflow): no token
// may be chosen from such a row, since an argmax over NaN quietly picks id 0.
absl::Status CheckLogitsFinite(const float* logits, int64_t n_rows, int64_t vocab);

// Index of the largest logit (lowest index on ties, as torch.argmax).
int32_t ArgMax(const float* logits, int64_t vocab);

// The greedy choice for these parameters: the argmax of the adjusted logits (`logits` is not
// modified; without adjustments, ArgMax itself).
int32_t GreedyToken(const float* logits, int64_t vocab, const SamplingParams& params,
                    const std::vector<int32_t>& history, size_t output_start);

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_SAMPLER_H_
