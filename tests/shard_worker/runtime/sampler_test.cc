// SelectCandidates (the tokens a sampled request draws from) against its sort-based reference
// twin, and Sampler::Sample's draws against the distribution it selects.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "shard_worker/runtime/sampler.h"
#include "shard_worker/runtime/speculative_sampling.h"

namespace glm::runtime {
namespace {

// SelectCandidatesReference as token -> probability.
std::map<int32_t, double> ReferenceCandidates(const std::vector<float>& logits, const SamplingParams& p) {
  SamplingCandidates c;
  SelectCandidatesReference(logits.data(), static_cast<int64_t>(logits.size()), p, &c);
  std::map<int32_t, double> out;
  for (size_t i = 0; i < c.probs.size(); ++i) out[c.id(i)] = c.probs[i];
  return out;
}

std::map<int32_t, double> Selected(const std::vector<float>& logits, const SamplingParams& p) {
  SamplingCandidates c;
  SelectCandidates(logits.data(), static_cast<int64_t>(logits.size()), p, &c);
  std::map<int32_t, double> out;
  for (size_t i = 0; i < c.probs.size(); ++i)
    if (c.probs[i] > 0) out[c.id(i)] += c.probs[i];
  return out;
}

// Same tokens, probabilities within float rounding (the selection computes them in float:
// tokens below ~1e-38 of the top underflow to 0 and drop out, which no draw can tell). A token
// whose cumulative mass sits within rounding of the top-p boundary may differ.
void ExpectSameCandidates(const std::vector<float>& logits, const SamplingParams& p) {
  const auto want = ReferenceCandidates(logits, p);
  const auto got = Selected(logits, p);
  constexpr double kDrawable = 1e-12;
  int boundary = 0;
  for (const auto& [id, prob] : want) {
    if (prob < kDrawable) continue;
    auto it = got.find(id);
    if (it == got.end()) {
      ++boundary;
      continue;
    }
    EXPECT_NEAR(it->second, prob, 1e-5 + 1e-4 * prob)
        << "token " << id << " T " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p;
  }
  for (const auto& [id, prob] : got)
    if (!want.count(id) && prob >= kDrawable) ++boundary;
  EXPECT_LE(boundary, 1) << "T " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p << " min_p "
                         << p.min_p << " vocab " << logits.size();
}

// No token is chosen from logits holding NaN or an infinity: the error names the row and id.
TEST(SamplerCandidatesTest, NonFiniteLogitsAreAnErrorNamingWhere) {
  std::vector<float> logits(3 * 50, 0.5f);
  EXPECT_TRUE(CheckLogitsFinite(logits.data(), 3, 50).ok());
  logits[2 * 50 + 17] = std::numeric_limits<float>::infinity();
  absl::Status s = CheckLogitsFinite(logits.data(), 3, 50);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("an infinity (row 2, token id 17)"), std::string::npos) << s;
  logits[50 + 3] = std::nanf("");
  s = CheckLogitsFinite(logits.data(), 3, 50);
  EXPECT_NE(s.message().find("NaN (row 1, token id 3)"), std::string::npos) << s;
}

TEST(SamplerCandidatesTest, MatchTheSortedDefinition) {
  std::mt19937 rng(11);
  for (int vocab : {1, 2, 7, 100, 4099, 50000}) {
    for (float spread : {0.5f, 3.0f, 12.0f}) {
      std::normal_distribution<float> nd(0.0f, spread);
      std::vector<float> logits(vocab);
      for (float& l : logits) l = nd(rng);
      for (float t : {0.3f, 1.0f, 1.7f})
        for (int top_k : {0, 1, 5, 64})
          for (float top_p : {1.0f, 0.95f, 0.5f, 0.01f})
            for (float min_p : {0.0f, 0.05f}) {
              SamplingParams p;
              p.temperature = t;
              p.top_k = top_k;
              p.top_p = top_p;
              p.min_p = min_p;
              ExpectSameCandidates(logits, p);
            }
    }
  }
}

TEST(SamplerCandidatesTest, TiesKeepTheLowerIdsAndBannedTokensStayOut) {
  // Ten equal logits: top-k 3 keeps ids 2, 3, 4 (the lowest of the tied ones after id 0).
  std::vector<float> logits(12, 1.0f);
  logits[0] = 5.0f;
  logits[1] = -INFINITY;  // a banned token (logit bias)
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 4;
  auto got = Selected(logits, p);
  std::vector<int32_t> ids;
  for (const auto& [id, prob] : got) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 2, 3, 4}));
  // top-p at a tie: the prefix takes tied tokens by id until the mass is reached.
  p.top_k = 0;
  p.top_p = 0.999f;
  got = Selected(logits, p);
  EXPECT_EQ(got.count(1), 0u) << "a -inf logit is never a candidate";
  ExpectSameCandidates(logits, p);
  // Pure temperature: every token but the banned one, by id.
  p.top_p = 1.0f;
  got = Selected(logits, p);
  EXPECT_EQ(got.size(), 11u);
  EXPECT_EQ(got.count(1), 0u);
}

TEST(SamplerCandidatesTest, SampleDrawsTheSelectedDistribution) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> logits(40);
  for (float& l : logits) l = nd(rng);
  for (float top_p : {1.0f, 0.8f}) {
    SamplingParams p;
    p.temperature = 0.8f;
    p.top_p = top_p;
    const auto want = ReferenceCandidates(logits, p);
    std::map<int32_t, int> counts;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
      p.seed = TokenSeed(99, i);
      std::vector<float> l = logits;
      counts[Sampler(p).Sample(l.data(), static_cast<int64_t>(l.size()), {}, 0)]++;
    }
    double chi2 = 0;
    for (const auto& [id, c] : counts) ASSERT_TRUE(want.count(id)) << "drew token " << id << " outside the candidates";
    for (const auto& [id, prob] : want) {
      const double expected = n * prob;
      const double seen = counts.count(id) ? counts[id] : 0;
      chi2 += (seen - expected) * (seen - expected) / expected;
    }
    // 99.9% quantile of chi-square with 39 degrees of freedom is ~72.1.
    EXPECT_LT(chi2, 72.1) << "top_p " << top_p;
    // SamplingDistribution (speculative decoding's p and q) is the same distribution.
    const SamplingCandidates dist = SamplingDistribution(logits.data(), static_cast<int64_t>(logits.size()), p, {}, 0);
    std::map<int32_t, double> by_id;
    for (size_t i = 0; i < dist.probs.size(); ++i) by_id[dist.id(i)] += dist.probs[i];
    for (const auto& [id, prob] : want) EXPECT_NEAR(by_id.count(id) ? by_id[id] : 0.0, prob, 1e-6) << "token " << id;
    for (const auto& [id, prob] : by_id) EXPECT_TRUE(want.count(id) || prob == 0.0) << "token " << id;
  }
}

TEST(SamplerCandidatesTest, TinyTemperaturesDrawTheArgmax) {
  // 1/temperature overflows float below ~3e-39: the draw must still be the argmax, not NaN.
  std::vector<float> logits = {1.0f, 30.0f, -4.0f, 29.5f, 0.0f};
  for (float t : {1e-3f, 1e-30f, 1e-40f, 1e-45f}) {
    for (float top_p : {1.0f, 0.9f}) {
      SamplingParams p;
      p.temperature = t;
      p.top_p = top_p;
      const auto got = Selected(logits, p);
      ASSERT_EQ(got.size(), 1u) << t;
      EXPECT_EQ(got.begin()->first, 1) << t;
      EXPECT_NEAR(got.begin()->second, 1.0, 1e-6) << t;
      std::vector<float> l = logits;
      EXPECT_EQ(Sampler(p).Sample(l.data(), static_cast<int64_t>(l.size()), {}, 0), 1) << t;
    }
  }
}

// Any repetition_penalty > 0 is valid; a tiny one divides a positive logit past the float range.
// The penalised token is then the most likely, not an inf whose inf - inf gave NaN for every
// candidate and a draw of token 0 whatever the logits said.
TEST(SamplerCandidatesTest, TinyRepetitionPenaltiesStayFinite) {
  const std::vector<float> logits = {1.0f, 2.0f, 5.0f, 4.0f};
  for (float penalty : {1e-38f, 1e-45f}) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.repetition_penalty = penalty;
    std::vector<float> l = logits;
    AdjustLogits(l.data(), 4, p, {3}, 0);
    for (float v : l) EXPECT_TRUE(std::isfinite(v)) << penalty;
    for (int seed = 0; seed < 20; ++seed) {
      std::vector<float> draw = logits;
      p.seed = seed;
      EXPECT_EQ(Sampler(p).Sample(draw.data(), 4, {3}, 0), 3) << penalty << " seed " << seed;
    }
  }
}

TEST(SamplerCandidatesTest, TopTokensAreTheSortedPrefix) {
  std::mt19937 rng(8);
  for (int vocab : {1, 3, 64, 1000}) {
    std::uniform_int_distribution<int> level(0, 20);  // many ties
    std::vector<float> logits(vocab);
    for (float& l : logits) l = static_cast<float>(level(rng)) * 0.5f;
    std::vector<int32_t> sorted(vocab);
    for (int i = 0; i < vocab; ++i) sorted[i] = i;
    std::sort(sorted.begin(), sorted.end(),
              [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{5}, static_cast<int64_t>(vocab), static_cast<int64_t>(vocab) + 7}) {
      std::vector<int32_t> ids;
      TopTokens(logits.data(), vocab, k, &ids);
      const int64_t want = std::min<int64_t>(k, vocab);
      EXPECT_EQ(ids, std::vector<int32_t>(sorted.begin(), sorted.begin() + want)) << vocab << " " << k;
    }
  }
}

}  // namespace
}  // namespace glm::runtime
