#include "shard_worker/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "shard_worker/kernels/vector_ops.h"

namespace glm::runtime {

int32_t ArgMax(const float* logits, int64_t vocab) { return static_cast<int32_t>(kernels::ArgMax(logits, vocab)); }

bool AdjustsLogits(const SamplingParams& p) {
  return !p.logit_bias.empty() || (p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f) ||
         p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

void AdjustLogits(float* logits, int64_t vocab, const SamplingParams& p, const std::vector<int32_t>& history,
                  size_t output_start) {
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < vocab) logits[id] += bias;
  if (p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f) {
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[id];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int32_t> count;
    for (size_t i = std::min(output_start, history.size()); i < history.size(); ++i) count[history[i]]++;
    for (const auto& [id, n] : count) {
      if (id < 0 || id >= vocab) continue;
      logits[id] -= p.frequency_penalty * static_cast<float>(n) + p.presence_penalty;
    }
  }
}

int32_t GreedyToken(const float* logits, int64_t vocab, const SamplingParams& params,
                    const std::vector<int32_t>& history, size_t output_start) {
  if (!AdjustsLogits(params)) return ArgMax(logits, vocab);
  std::vector<float> adjusted(logits, logits + vocab);
  AdjustLogits(adjusted.data(), vocab, params, history, output_start);
  return ArgMax(adjusted.data(), vocab);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history, size_t output_start) {
  if (AdjustsLogits(params_)) AdjustLogits(logits, vocab, params_, history, output_start);
  if (params_.temperature <= 0.0f) return ArgMax(logits, vocab);
  // Candidates sorted by logit, descending (ties by id for determinism).
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  int64_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    keep = params_.top_k;
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
  } else {
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
  }
  ids.resize(keep);
  const double inv_t = 1.0 / params_.temperature;
  std::vector<double> probs(keep);
  const double top = logits[ids[0]];
  double sum = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[ids[i]] - top) * inv_t);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  // min-p: drop tokens below min_p × the top probability.
  if (params_.min_p > 0.0f) {
    int64_t n = keep;
    while (n > 1 && probs[n - 1] < params_.min_p * probs[0]) --n;
    keep = n;
  }
  // top-p: the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double acc = 0.0;
    int64_t n = 0;
    while (n < keep) {
      acc += probs[n++];
      if (acc >= params_.top_p) break;
    }
    keep = std::max<int64_t>(1, n);
  }
  double mass = 0.0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  std::uniform_real_distribution<double> uniform(0.0, mass);
  double u = uniform(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= probs[i];
    if (u <= 0.0) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace glm::runtime
