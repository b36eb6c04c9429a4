// The pieces of speculative decoding that do not touch the model: the sampling distribution
// a request's parameters define, the standard rejection rule that keeps the output
// distribution exactly the target's, prompt-lookup (n-gram) drafting, and per-request adaptive
// draft length.
#ifndef GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_SAMPLING_H_
#define GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_SAMPLING_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/runtime/sampler.h"

namespace glm::runtime {

// The distribution Sampler::Sample draws from for these parameters (temperature > 0): logit
// adjustments (AdjustLogits, with history / output_start as there), temperature, top-k, min-p
// and top-p applied; probabilities over the whole vocabulary.
std::vector<double> SamplingDistribution(const float* logits, int64_t vocab, const SamplingParams& params,
                                         const std::vector<int32_t>& history, size_t output_start);

// Draws an index from `probs` (need not be normalised).
int32_t DrawFrom(const std::vector<double>& probs, std::mt19937_64& rng);

// Speculative sampling (Leviathan et al. / Chen et al.): a draft token d drawn from q is kept
// with probability min(1, p(d)/q(d)); otherwise the result is drawn from norm(max(0, p - q)).
// Returns {token, accepted}. The token is distributed exactly as p.
struct RejectionOutcome {
  int32_t token;
  bool accepted;
};
RejectionOutcome AcceptOrResample(int32_t draft, const std::vector<double>& p, const std::vector<double>& q,
                                  std::mt19937_64& rng);

// Prompt lookup: the tokens that followed the most recent earlier occurrence of the longest
// suffix (max_ngram down to min_ngram tokens) of `tokens`; at most k of them, possibly none.
std::vector<int32_t> NgramDraft(const std::vector<int32_t>& tokens, int k, int max_ngram = 4, int min_ngram = 1);

// "mtp:K" / "ngram:K" (K in 1..8; mtp K in 1..4).
struct SpeculativeConfig {
  enum class Method { kNone, kMtp, kNgram };
  Method method = Method::kNone;
  int k = 0;
};
absl::StatusOr<SpeculativeConfig> ParseSpeculative(const std::string& text);

// Per-request draft length that backs off when drafts are mostly rejected and recovers when
// they are accepted (an acceptance-rate moving average picks k in [1, max_k]; 0 pauses drafting
// for a few steps when even the first draft is rarely right).
class AdaptiveDraftLength {
 public:
  explicit AdaptiveDraftLength(int max_k) : max_k_(max_k), k_(max_k) {}
  int next() const { return pause_ > 0 ? 0 : k_; }
  // After a verify step that proposed `proposed` drafts of which `accepted` were kept.
  void Update(int proposed, int accepted);

 private:
  int max_k_;
  int k_;
  int pause_ = 0;
  double rate_ = 0.7;  // optimistic start
};

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_SAMPLING_H_
