#include "shard_worker/runtime/speculative_sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace glm::runtime {

SamplingCandidates SamplingDistribution(const float* logits_in, int64_t vocab, const SamplingParams& params,
                                        const std::vector<int32_t>& history, size_t output_start) {
  // The logits are copied only when adjusted.
  thread_local std::vector<float> adjusted;
  const float* logits = logits_in;
  if (AdjustsLogits(params)) {
    adjusted.assign(logits_in, logits_in + vocab);
    AdjustLogits(adjusted.data(), vocab, params, history, output_start);
    logits = adjusted.data();
  }
  if (params.temperature <= 0.0f) return OneHot(ArgMax(logits, vocab));
  SamplingCandidates c;
  SelectCandidates(logits, vocab, params, &c);
  return c;
}

SamplingCandidates OneHot(int32_t token) {
  SamplingCandidates c;
  c.ids = {token};
  c.probs = {1.0f};
  return c;
}

namespace {

// The probability of `token` under `dist` (0 off its support).
double ProbOf(const SamplingCandidates& dist, int32_t token) {
  if (dist.ids.empty()) return token >= 0 && static_cast<size_t>(token) < dist.probs.size() ? dist.probs[token] : 0.0;
  for (size_t i = 0; i < dist.ids.size(); ++i)
    if (dist.ids[i] == token) return dist.probs[i];
  return 0.0;
}

}  // namespace

RejectionOutcome AcceptOrResample(int32_t draft, const SamplingCandidates& p, const SamplingCandidates& q,
                                  std::mt19937_64& rng) {
  const double pd = ProbOf(p, draft), qd = ProbOf(q, draft);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  if (qd <= 0.0 ? pd > 0.0 : uniform(rng) < std::min(1.0, pd / qd)) return {draft, true};
  // max(0, p - q) is zero off p's support: walk p's tokens, q looked up through a dense scratch
  // (q's entries set, then cleared).
  thread_local std::vector<float> q_by_id;
  auto q_at = [&](int32_t id) -> double {
    if (q.ids.empty()) return id >= 0 && static_cast<size_t>(id) < q.probs.size() ? q.probs[id] : 0.0;
    return static_cast<size_t>(id) < q_by_id.size() ? q_by_id[id] : 0.0;
  };
  for (size_t i = 0; i < q.ids.size(); ++i) {
    if (q.ids[i] < 0) continue;
    if (static_cast<size_t>(q.ids[i]) >= q_by_id.size()) q_by_id.resize(q.ids[i] + 1, 0.0f);
    q_by_id[q.ids[i]] = q.probs[i];
  }
  SamplingCandidates residual;
  residual.probs.resize(p.probs.size());
  if (!p.ids.empty()) residual.ids = p.ids;
  double mass = 0.0;
  for (size_t i = 0; i < p.probs.size(); ++i) {
    residual.probs[i] = static_cast<float>(std::max(0.0, static_cast<double>(p.probs[i]) - q_at(p.id(i))));
    mass += residual.probs[i];
  }
  for (int32_t id : q.ids)
    if (id >= 0) q_by_id[id] = 0.0f;
  if (mass <= 0.0) return {DrawFrom(p, rng), false};  // p == q: unreachable in exact arithmetic
  return {DrawFrom(residual, rng), false};
}

int32_t DrawPlain(const SamplingCandidates& dist, uint64_t request_seed, int64_t index) {
  std::mt19937_64 rng(TokenSeed(request_seed, index));
  return DrawFrom(dist, rng);
}

RejectionOutcome VerifyOneHot(int32_t draft, const SamplingCandidates& p, uint64_t request_seed, int64_t index) {
  const int32_t token = DrawPlain(p, request_seed, index);
  return {token, token == draft};
}

std::vector<int32_t> NgramDraft(const std::vector<int32_t>& tokens, int k, int max_ngram, int min_ngram) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int len = max_ngram; len >= min_ngram; --len) {
    if (n <= len) continue;
    const int32_t* suffix = tokens.data() + n - len;
    // Most recent earlier occurrence (whose continuation is not the suffix itself).
    for (int64_t start = n - len - 1; start >= 0; --start) {
      if (!std::equal(suffix, suffix + len, tokens.data() + start)) continue;
      std::vector<int32_t> draft;
      for (int64_t i = start + len; i < n && static_cast<int>(draft.size()) < k; ++i) draft.push_back(tokens[i]);
      if (!draft.empty()) return draft;
    }
  }
  return {};
}

std::vector<int32_t> PredictionDraft(const std::vector<int32_t>& prediction, const std::vector<int32_t>& tokens,
                                     int64_t anchor, int k, int64_t* from, int max_ngram, int min_ngram) {
  const int64_t m = static_cast<int64_t>(prediction.size()), n = static_cast<int64_t>(tokens.size());
  if (k <= 0 || m == 0) return {};
  auto continuation = [&](int64_t start) {
    if (from != nullptr) *from = start;
    return std::vector<int32_t>(prediction.begin() + start, prediction.begin() + std::min(m, start + k));
  };
  if (anchor <= 0) return continuation(0);  // no output yet: it starts where the prediction does
  for (int len = max_ngram; len >= min_ngram; --len) {
    if (n < len) continue;
    const int32_t* suffix = tokens.data() + n - len;
    // Continuations start at next in [len, m - 1]. Scanning outward from the anchor finds the
    // nearest occurrence first (the earlier one of two as near): a reply that follows its
    // prediction stops at once instead of reading the whole prediction every step.
    const int64_t lo = len, hi = m - 1;
    if (hi < lo) continue;
    const int64_t a = std::clamp<int64_t>(anchor, lo, hi);
    auto matches = [&](int64_t next) { return std::equal(suffix, suffix + len, prediction.data() + next - len); };
    for (int64_t d = 0; a - d >= lo || a + d <= hi; ++d) {
      if (a - d >= lo && matches(a - d)) return continuation(a - d);
      if (d > 0 && a + d <= hi && matches(a + d)) return continuation(a + d);
    }
  }
  return {};
}

absl::StatusOr<SpeculativeConfig> ParseSpeculative(const std::string& text) {
  SpeculativeConfig c;
  if (text.empty() || text == "none") return c;
  const auto colon = text.find(':');
  const std::string method = text.substr(0, colon);
  int k = 0;
  // K is digits only: SimpleAtoi also takes " 2" and "+3", spellings no other tool accepts.
  const std::string digits = colon == std::string::npos ? "" : text.substr(colon + 1);
  const bool plain_digits = !digits.empty() && digits.size() <= 3 && (digits.size() == 1 || digits[0] != '0') &&
                            digits.find_first_not_of("0123456789") == std::string::npos;
  if (!plain_digits || !absl::SimpleAtoi(digits, &k))
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': expected none, mtp:K or ngram:K"));
  if (method == "mtp") {
    if (k < 1 || k > 4) return absl::InvalidArgumentError(absl::StrCat("'", text, "': mtp:K needs K in 1..4"));
    c.method = SpeculativeConfig::Method::kMtp;
  } else if (method == "ngram") {
    if (k < 1 || k > 8) return absl::InvalidArgumentError(absl::StrCat("'", text, "': ngram:K needs K in 1..8"));
    c.method = SpeculativeConfig::Method::kNgram;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': the method must be mtp or ngram"));
  }
  c.k = k;
  return c;
}

VerifyCostModel VerifyCostModel::FromConfig(const model::ModelConfig& c) {
  VerifyCostModel m;
  if (c.n_routed_experts <= 0 || c.num_experts_per_tok <= 0) return m;
  const double h = static_cast<double>(c.hidden_size);
  // Parameters one position reads in each main layer: attention (MLA and the DSA indexer), then
  // its MLP — dense, or router + shared experts + k routed experts — and the head once.
  const double q_in = c.q_lora_rank > 0 ? h * c.q_lora_rank : 0.0;
  const double q_rank = c.q_lora_rank > 0 ? c.q_lora_rank : h;
  const double heads = static_cast<double>(c.num_attention_heads);
  const double attention = q_in + q_rank * heads * c.qk_head_dim() + h * (c.kv_lora_rank + c.qk_rope_head_dim) +
                           static_cast<double>(c.kv_lora_rank) * heads * (c.qk_nope_head_dim + c.v_head_dim) +
                           heads * c.v_head_dim * h + q_rank * c.index_n_heads * c.index_head_dim +
                           h * c.index_head_dim + h * c.index_n_heads;
  const double expert = 3.0 * h * c.moe_intermediate_size;
  double routed = 0, other = h * c.vocab_size;  // the head
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    other += attention;
    if (c.mlp_kind(layer) == model::MlpKind::kDense) {
      other += 3.0 * h * c.intermediate_size;
    } else {
      other += h * c.n_routed_experts + c.n_shared_experts * expert;
      routed += c.num_experts_per_tok * expert;
    }
  }
  if (routed <= 0) return m;
  m.routed_share = routed / (routed + other);
  m.experts = c.n_routed_experts;
  m.experts_per_token = c.num_experts_per_tok;
  return m;
}

double VerifyCostModel::Cost(int positions) const {
  const int n = std::max(1, positions);
  if (routed_share <= 0 || experts <= 0 || experts_per_token <= 0) return 1.0 + (n - 1) * linear_step;
  const double e = static_cast<double>(experts), k = static_cast<double>(std::min(experts_per_token, experts));
  const double distinct = e * (1.0 - std::pow(1.0 - k / e, n));  // expected experts n positions select
  return (1.0 - routed_share) + routed_share * distinct / k;
}

AdaptiveDraftLength::AdaptiveDraftLength(int max_k, double position_cost)
    : AdaptiveDraftLength(max_k, VerifyCostModel{.linear_step = position_cost}, 0.0) {}

AdaptiveDraftLength::AdaptiveDraftLength(int max_k, const VerifyCostModel& verify, double draft_cost)
    : max_k_(std::max(1, max_k)), alone_cost_(max_k_ + 1), rate_(max_k_, 0.9) {
  for (int k = 0; k <= max_k_; ++k) alone_cost_[k] = verify.Cost(k + 1) - 1.0 + k * draft_cost;
  Choose();
}

void AdaptiveDraftLength::Choose() {
  k_ = Best();
  if (k_ == 0) pause_ = kPauseSteps;
}

int AdaptiveDraftLength::Best(const std::vector<double>& rates) const {
  int best = 0;
  double best_gain = 1.0, tokens = 1.0, reach = 1.0;
  for (int k = 1; k <= max_k_; ++k) {
    reach *= rates[k - 1];  // probability that drafts 1..k are all kept
    tokens += reach;
    const double gain = tokens / (1.0 + alone_cost_[k] * batch_scale_);
    if (gain > best_gain) {
      best_gain = gain;
      best = k;
    }
  }
  return best;
}

void AdaptiveDraftLength::SetBatchSize(int64_t sequences) {
  const double b = static_cast<double>(std::max<int64_t>(1, sequences)), c = alone_cost_[1];
  const double scale = b / (1.0 - c + c * b);
  if (scale == batch_scale_) return;
  batch_scale_ = scale;
  if (pause_ == 0) Choose();
}

int AdaptiveDraftLength::MostDraftsNext(int proposed) const {
  if (pause_ > 1) return 0;
  if (pause_ == 1) return 1;
  // Every proposed draft kept raises each evaluated position's rate: the largest k Best() can
  // choose after the update (a gain g(k) only grows with the rates).
  std::vector<double> rates = rate_;
  for (int i = 1; i <= std::min(proposed, max_k_); ++i) rates[i - 1] = (1.0 - kRateWeight) * rates[i - 1] + kRateWeight;
  const int best = Best(rates);
  // The coming update may make the next step a probe of the position beyond its choice.
  return std::max(k_, deeper_probe_in_ <= 1 && best > 0 ? std::min(max_k_, best + 1) : best);
}

void AdaptiveDraftLength::Update(int proposed, int accepted) {
  if (pause_ > 0) {
    if (--pause_ == 0) k_ = 1;  // measure again with one draft
    return;
  }
  if (proposed <= 0) return;
  // Draft i is evaluated when 1..i-1 were kept: positions 1..min(accepted + 1, proposed).
  for (int i = 1; i <= std::min(accepted + 1, proposed) && i <= max_k_; ++i)
    rate_[i - 1] = (1.0 - kRateWeight) * rate_[i - 1] + kRateWeight * (i <= accepted ? 1.0 : 0.0);
  Choose();
  if (k_ == 0 || k_ == max_k_) return;
  if (std::min(accepted + 1, proposed) > k_) {
    deeper_probe_in_ = kDeeperProbeSteps;  // this step measured a position beyond the choice
  } else if (--deeper_probe_in_ <= 0) {
    ++k_;  // one step drafts one more, to measure it again
  }
}

}  // namespace glm::runtime
