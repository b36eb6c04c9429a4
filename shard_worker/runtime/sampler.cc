#include "shard_worker/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::runtime {

absl::Status CheckLogitsFinite(const float* logits, int64_t n_rows, int64_t vocab) {
  const int64_t at = kernels::FirstNonFinite(logits, n_rows * vocab);
  if (at < 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("the model's logits hold ", std::isnan(logits[at]) ? "NaN" : "an infinity",
                                          " (row ", at / vocab, ", token id ", at % vocab,
                                          "): corrupt weights or a numerical overflow; no token was chosen"));
}

int32_t ArgMax(const float* logits, int64_t vocab) { return static_cast<int32_t>(kernels::ArgMax(logits, vocab)); }

bool AdjustsLogits(const SamplingParams& p) {
  return !p.logit_bias.empty() || (p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f) ||
         p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

void AdjustLogits(float* logits, int64_t vocab, const SamplingParams& p, const std::vector<int32_t>& history,
                  size_t output_start) {
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < vocab) logits[id] += bias;
  // Marks per vocabulary entry instead of hash sets: a long context's history is tens of
  // thousands of tokens, every step. Only the entries the history touched are reset.
  thread_local std::vector<int32_t> count;  // [vocab], zero between calls
  if (static_cast<int64_t>(count.size()) < vocab) count.assign(vocab, 0);
  if (p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f) {
    for (int32_t id : history) {
      if (id < 0 || id >= vocab || count[id]++ > 0) continue;  // each distinct token once
      float& l = logits[id];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
      // A tiny penalty (any > 0 is valid) overflows l / penalty to inf, and inf - inf is NaN in the
      // softmax: keep it the largest finite logit, which is what it means.
      l = std::clamp(l, -std::numeric_limits<float>::max(), std::numeric_limits<float>::max());
    }
    for (int32_t id : history)
      if (id >= 0 && id < vocab) count[id] = 0;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    const size_t start = std::min(output_start, history.size());
    for (size_t i = start; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < vocab) count[history[i]]++;
    for (size_t i = start; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || id >= vocab || count[id] == 0) continue;  // already applied
      logits[id] -= p.frequency_penalty * static_cast<float>(count[id]) + p.presence_penalty;
      count[id] = 0;
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
  thread_local SamplingCandidates c;
  SelectCandidates(logits, vocab, params_, &c);
  return DrawFrom(c, rng_);
}

int32_t DrawFrom(const SamplingCandidates& dist, std::mt19937_64& rng) {
  double total = 0.0;
  for (float p : dist.probs) total += p;
  std::uniform_real_distribution<double> uniform(0.0, total);
  double u = uniform(rng);
  int32_t last_positive = dist.probs.empty() ? 0 : dist.id(0);
  for (size_t i = 0; i < dist.probs.size(); ++i) {
    if (dist.probs[i] <= 0.0f) continue;
    last_positive = dist.id(i);
    u -= dist.probs[i];
    if (u <= 0.0) return dist.id(i);
  }
  return last_positive;
}

namespace {

// Radix order of a probability (>= 0): exponent and 5 leading mantissa bits of its float, 32
// buckets an octave (8160 in all).
inline uint32_t Bucket(float p) {
  uint32_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  return bits >> 18;
}
constexpr uint32_t kBuckets = (0x7f800000u >> 18) + 1;

// Of `kept` (positions into prob), keeps the smallest set of the most probable whose mass
// reaches `need` (among equal probabilities, lower positions first), as top-p's sorted prefix
// would, in O(kept): a mass histogram over the probabilities' exponent and leading mantissa
// bits finds the bucket where the prefix ends, and only that bucket is sorted.
void KeepTopMass(const float* prob, double need, std::vector<int32_t>* kept) {
  std::vector<int32_t>& v = *kept;
  thread_local std::vector<double> mass;
  mass.assign(kBuckets, 0.0);
  for (int32_t j : v) mass[Bucket(prob[j])] += prob[j];
  uint32_t edge = kBuckets;  // the bucket where the prefix ends
  double above = 0.0;        // mass of the buckets above it
  while (edge > 0) {
    --edge;
    if (above + mass[edge] >= need) break;
    above += mass[edge];
  }
  thread_local std::vector<int32_t> boundary;
  boundary.clear();
  size_t taken = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t b = Bucket(prob[v[i]]);
    if (b > edge) v[taken++] = v[i];
    else if (b == edge) boundary.push_back(v[i]);
  }
  std::sort(boundary.begin(), boundary.end(),
            [&](int32_t a, int32_t c) { return prob[a] > prob[c] || (prob[a] == prob[c] && a < c); });
  double left = need - above;
  for (size_t i = 0; i < boundary.size() && (left > 0.0 || i == 0) ; ++i) {
    v[taken++] = boundary[i];
    left -= prob[boundary[i]];
  }
  v.resize(std::max<size_t>(taken, 1));
}

}  // namespace

void TopTokens(const float* logits, int64_t vocab, int64_t k, std::vector<int32_t>* ids) {
  ids->clear();
  k = std::clamp<int64_t>(k, 0, vocab);
  if (k == 0) return;
  auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k <= 64) {
    // Few: one pass keeping the best k so far in order. Ids come ascending, so a later equal
    // logit loses its tie: only a strictly larger one than the k-th enters.
    for (int64_t i = 0; i < vocab; ++i) {
      const int64_t n = static_cast<int64_t>(ids->size());
      if (n == k && !(logits[i] > logits[ids->back()])) continue;
      if (n == k) ids->pop_back();
      auto at = std::upper_bound(ids->begin(), ids->end(), static_cast<int32_t>(i), before);
      ids->insert(at, static_cast<int32_t>(i));
    }
    return;
  }
  // Many: the k-th largest logit by selection; then the ids above it and, lowest first, as many
  // equal to it as fill k.
  thread_local std::vector<float> copy;
  copy.assign(logits, logits + vocab);
  std::nth_element(copy.begin(), copy.begin() + (k - 1), copy.end(), std::greater<float>());
  const float kth = copy[k - 1];
  int64_t ties = k;
  for (int64_t i = 0; i < vocab; ++i) ties -= logits[i] > kth;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > kth || (logits[i] == kth && ties-- > 0)) ids->push_back(static_cast<int32_t>(i));
  std::sort(ids->begin(), ids->end(), before);
}

void SelectCandidates(const float* logits, int64_t vocab, const SamplingParams& params, SamplingCandidates* out) {
  out->ids.clear();
  out->probs.clear();
  if (vocab <= 0) return;
  // (logit - max) / temperature: at most 0, so any temperature > 0 stays finite (a tiny one
  // makes the draw the argmax, its limit) instead of overflowing to inf and NaN.
  const float inv_t = static_cast<float>(std::min(1.0 / params.temperature, double{std::numeric_limits<float>::max()}));
  const float top = logits[ArgMax(logits, vocab)];
  const bool top_k = params.top_k > 0 && params.top_k < vocab;
  const bool min_p = params.min_p > 0.0f, top_p = params.top_p < 1.0f;
  if (!top_k && !min_p && !top_p) {
    // Every token: softmax(logits / temperature) by id, nothing to select.
    out->probs.resize(vocab);
    for (int64_t i = 0; i < vocab; ++i) out->probs[i] = (logits[i] - top) * inv_t;
    kernels::Softmax(out->probs.data(), vocab);
    return;
  }
  // 1. The pool: the top-k tokens (in descending logit order, ties by id), or every token (in id
  // order). Either way a lower position wins a tie, as a lower id does.
  thread_local std::vector<int32_t> pool;
  thread_local std::vector<float> prob;  // softmax(logits / temperature) over the pool
  pool.clear();
  if (top_k) {
    TopTokens(logits, vocab, params.top_k, &pool);
    if (pool.empty()) pool.push_back(ArgMax(logits, vocab));  // NaN logits everywhere
    prob.resize(pool.size());
    for (size_t j = 0; j < pool.size(); ++j) prob[j] = (logits[pool[j]] - top) * inv_t;
  } else {
    prob.resize(vocab);
    for (int64_t i = 0; i < vocab; ++i) prob[i] = (logits[i] - top) * inv_t;
  }
  const int64_t n = static_cast<int64_t>(prob.size());
  kernels::Softmax(prob.data(), n);  // sums to 1
  // 2. min-p (the pool at or above min_p · the largest probability), then top-p.
  float floor = 0.0f;
  if (min_p) floor = params.min_p * *std::max_element(prob.begin(), prob.end());
  thread_local std::vector<int32_t> kept;  // pool positions
  kept.clear();
  for (int64_t j = 0; j < n; ++j)
    if (prob[j] >= floor && prob[j] > 0.0f) kept.push_back(static_cast<int32_t>(j));
  if (kept.empty()) kept.push_back(static_cast<int32_t>(std::max_element(prob.begin(), prob.end()) - prob.begin()));
  if (top_p) KeepTopMass(prob.data(), params.top_p, &kept);
  double mass = 0.0;
  for (int32_t j : kept) mass += prob[j];
  const float scale = mass > 0.0 ? static_cast<float>(1.0 / mass) : 0.0f;
  out->ids.resize(kept.size());
  out->probs.resize(kept.size());
  for (size_t j = 0; j < kept.size(); ++j) {
    out->ids[j] = pool.empty() ? kept[j] : pool[kept[j]];
    out->probs[j] = mass > 0.0 ? prob[kept[j]] * scale : (j == 0 ? 1.0f : 0.0f);
  }
}

void SelectCandidatesReference(const float* logits, int64_t vocab, const SamplingParams& params,
                               SamplingCandidates* out) {
  out->ids.clear();
  out->probs.clear();
  if (vocab <= 0) return;
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  int64_t keep = params.top_k > 0 && params.top_k < vocab ? params.top_k : vocab;
  std::vector<double> probs(keep);
  double sum = 0.0;
  for (int64_t i = 0; i < keep; ++i)
    sum += probs[i] = std::exp((static_cast<double>(logits[ids[i]]) - logits[ids[0]]) / params.temperature);
  for (double& p : probs) p /= sum;
  if (params.min_p > 0.0f)
    while (keep > 1 && probs[keep - 1] < params.min_p * probs[0]) --keep;
  if (params.top_p < 1.0f) {
    double acc = 0.0;
    int64_t n = 0;
    while (n < keep) {
      acc += probs[n++];
      if (acc >= params.top_p) break;
    }
    keep = std::max<int64_t>(1, n);
  }
  double mass = 0.0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  for (int64_t i = 0; i < keep; ++i) {
    out->ids.push_back(ids[i]);
    out->probs.push_back(static_cast<float>(probs[i] / mass));
  }
}

}  // namespace glm::runtime
