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
#include "shard_worker/model/model_config.h"
#include "shard_worker/runtime/sampler.h"

namespace glm::runtime {

// The distribution Sampler::Sample draws from for these parameters: logit adjustments
// (AdjustLogits, with history / output_start as there), then temperature, top-k, min-p and
// top-p (SelectCandidates); at temperature 0 all mass on the greedy token. Only the tokens that
// can be drawn are listed (a top-p distribution over a 150K vocabulary is usually a few hundred),
// or every token by id (pure temperature).
SamplingCandidates SamplingDistribution(const float* logits, int64_t vocab, const SamplingParams& params,
                                        const std::vector<int32_t>& history, size_t output_start);
// A deterministic proposal (prompt-lookup or argmax drafts): all mass on `token`.
SamplingCandidates OneHot(int32_t token);

// Speculative sampling (Leviathan et al. / Chen et al.): a draft token d drawn from q is kept
// with probability min(1, p(d)/q(d)); otherwise the result is drawn from norm(max(0, p - q)).
// Returns {token, accepted}. The token is distributed exactly as p. O(|p| + |q|).
struct RejectionOutcome {
  int32_t token;
  bool accepted;
};
RejectionOutcome AcceptOrResample(int32_t draft, const SamplingCandidates& p, const SamplingCandidates& q,
                                  std::mt19937_64& rng);

// The token plain (non-speculative) decoding draws from `dist` as a request's `index`-th generated
// token: with its own generator seeded TokenSeed(request_seed, index), as Sampler does.
int32_t DrawPlain(const SamplingCandidates& dist, uint64_t request_seed, int64_t index);

// Verification of a one-hot proposal (prompt-lookup and argmax drafts) for the token at generated
// index `index`: the standard rule above keeps the draft with probability p(draft) and otherwise
// draws from p without it. Drawing the position's plain sample (DrawPlain) and keeping the draft
// exactly when it is that sample does the same — with the randomness of plain decoding, so a
// seeded request gets the tokens it gets without speculation, whatever was drafted.
RejectionOutcome VerifyOneHot(int32_t draft, const SamplingCandidates& p, uint64_t request_seed, int64_t index);

// Prompt lookup: the tokens that followed the most recent earlier occurrence of the longest
// suffix (max_ngram down to min_ngram tokens) of `tokens`; at most k of them, possibly none.
std::vector<int32_t> NgramDraft(const std::vector<int32_t>& tokens, int k, int max_ngram = 4, int min_ngram = 1);

// OpenAI's predicted outputs: drafts from a text the client expects the output to resemble (a
// file being edited). The longest suffix of `tokens` (max_ngram down to min_ngram) is looked up
// in `prediction`; of its occurrences the one whose continuation starts nearest `anchor` (where
// the output is expected to go on: the generated count at first, then just past the last
// prediction drafts kept — an edit that inserted or deleted text moves it) wins, and at most k
// tokens of its continuation are the draft, starting at *from when given. With anchor 0 (no
// output yet) the prediction's first k tokens. May be empty.
std::vector<int32_t> PredictionDraft(const std::vector<int32_t>& prediction, const std::vector<int32_t>& tokens,
                                     int64_t anchor, int k, int64_t* from = nullptr, int max_ngram = 4,
                                     int min_ngram = 1);

// "mtp:K" / "ngram:K" (K in 1..8; mtp K in 1..4).
struct SpeculativeConfig {
  enum class Method { kNone, kMtp, kNgram };
  Method method = Method::kNone;
  int k = 0;
  // MTP drafts propose only ids below this count and the sequence's own tokens, reading only
  // their rows of the MTP head (model/draft_vocabulary.h); 0 = the whole vocabulary.
  int64_t draft_vocab = 0;
  // MTP on a small model run in token groups (Glm5Model::CanDraftAlongside): a second thread
  // drafts while the caller's thread already runs the newest token through the main model
  // (Glm5Model::ForwardDraftingAlongside), instead of drafting first on every thread, where the
  // model's BlockPathChooser timed that faster on this machine. The same tokens either way.
  bool draft_alongside = true;
};
absl::StatusOr<SpeculativeConfig> ParseSpeculative(const std::string& text);

// What a forward over n positions of one sequence costs next to a forward over one, at batch 1
// where decoding is bound by the weights it reads: the weights outside the routed experts once,
// and every routed expert that one of the n positions selects. Under independent routing n
// positions select E·(1 − (1 − k/E)^n) distinct experts of E in expectation, k per position
// (consecutive tokens agree more often than that, so this errs high). On the bundled model
// (routed experts 40% of a position's weights, 4 of 16) 2 positions cost 1.30 and 3 cost 1.52
// (measured by bench/spec_bench: 1.29-1.32 and 1.44-1.48); at GLM-5's 8 of 256 experts, 1.5 and
// 2.0. Without routed experts (or with no model) the cost is linear: 1 + (n − 1) · linear_step.
struct VerifyCostModel {
  double routed_share = 0;        // routed experts' share of the parameters one position reads
  int64_t experts = 0;            // routed experts per MoE layer
  int64_t experts_per_token = 0;  // experts each position selects
  double linear_step = 0.4;       // without a routed share: each extra position's cost

  // From the model's shapes (parameters, not bytes: every weight in one format).
  static VerifyCostModel FromConfig(const model::ModelConfig& config);
  // The cost of a forward over `positions` (>= 1) relative to one position.
  double Cost(int positions) const;
};

// Per-request draft length. It keeps each draft position's acceptance rate a_i (how often draft i
// is kept when drafts 1..i-1 were; an exponential moving average, optimistic at the start) and
// drafts the k in [0, max_k] that maximises the tokens a step yields per unit of its cost:
//   g(k) = (1 + a_1 + a_1·a_2 + … + a_1·…·a_k) / (1 + c(k)),   g(0) = 1 (plain decoding),
// where c(k) is what drafting k tokens adds to a plain decode step: verifying them with it
// (VerifyCostModel: extra positions route to other experts, so they are not free on CPUs, but
// the second costs less than the first) and, with MTP, drafting them (k x kMtpDraftCost). When
// no k > 0 pays, it decodes plainly for kPauseSteps steps, then drafts one token to measure again.
// Likewise a position beyond the chosen k is measured again every kDeeperProbeSteps steps (one
// step drafts k + 1): its rate is only updated when it is drafted, so a run of rejections would
// otherwise stop it for the rest of the request.
class AdaptiveDraftLength {
 public:
  // Cost of a drafted position relative to a decode step, without a VerifyCostModel: verifying
  // it, plus drafting it with the MTP layer.
  static constexpr double kVerifyPositionCost = 0.4;
  // Drafting one token with the MTP layer: ~0.2-0.25 of a step on the bundled model, where one
  // small layer's pass is bound by its fixed costs (measured by bench/spec_bench); ~0.02 at
  // GLM-5's bytes.
  static constexpr double kMtpDraftCost = 0.2;
  static constexpr int kPauseSteps = 8;
  static constexpr int kDeeperProbeSteps = 16;
  // Weight of the newest step in each position's acceptance average (0.1: about the last ten
  // drafts; two misses in a row at 85% acceptance must not stop drafting).
  static constexpr double kRateWeight = 0.1;
  static double PositionCost(const SpeculativeConfig& spec) {
    return kVerifyPositionCost + (spec.method == SpeculativeConfig::Method::kMtp ? kMtpDraftCost : 0.0);
  }

  static double DraftCost(const SpeculativeConfig& spec) {
    return spec.method == SpeculativeConfig::Method::kMtp ? kMtpDraftCost : 0.0;
  }

  // c(k) = k · position_cost.
  AdaptiveDraftLength(int max_k, double position_cost);
  // c(k) = verify.Cost(k + 1) − 1 + k · draft_cost.
  AdaptiveDraftLength(int max_k, const VerifyCostModel& verify, double draft_cost);
  int next() const { return pause_ > 0 ? 0 : k_; }
  // The most drafts next() can ask for after the coming Update(proposed, ...): what a drafter
  // that must prepare the next step's drafts now (the cluster's MTP layer, chained on the last
  // stage in this step) needs — 0 while a pause has more than this step to run, 1 for the probe
  // that ends it, else the k the rates would choose if every proposed draft were kept.
  int MostDraftsNext(int proposed) const;
  // The request decodes in a batch of `sequences`. c(k) is for a sequence decoding alone; in a
  // batch a step's fixed part (weights read, synchronisation) is shared, so a drafted position
  // costs more next to the request's share of the step. With the step time α + β·n over n
  // positions and c = β / (α + β) alone, it is c·B / (1 − c + c·B) in a batch of B (0.6 alone:
  // 0.92 at B = 8, where drafting pays only above 92% acceptance); every c(k) is scaled by that
  // factor with c = c(1).
  void SetBatchSize(int64_t sequences);
  // After each decode step of the request: `proposed` drafts were verified and `accepted` kept
  // (0, 0 for a step without drafts: counts down a pause).
  void Update(int proposed, int accepted);
  // a_i for draft position i (1-based).
  double acceptance(int position) const { return rate_[position - 1]; }

 private:
  // The k that maximises g(k) under `rates` and the current cost.
  int Best(const std::vector<double>& rates) const;
  int Best() const { return Best(rate_); }
  // k_ = Best(), pausing when that is 0.
  void Choose();

  int max_k_;
  std::vector<double> alone_cost_;  // [max_k + 1]: c(k) alone; c(0) = 0
  double batch_scale_ = 1.0;        // c(k) in the current batch: alone_cost_[k] · batch_scale_
  std::vector<double> rate_;  // [max_k]
  int k_ = 0;
  int pause_ = 0;
  int deeper_probe_in_ = kDeeperProbeSteps;  // drafting steps until position k_ + 1 is measured
};

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_SPECULATIVE_SAMPLING_H_
