// Norms, RoPE and activations against float64 formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/activations_avx2.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/norms_avx2.h"
#include "shard_worker/kernels/norms.h"
#include "shard_worker/kernels/rope.h"

namespace glm::kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = normal(rng);
  return v;
}

TEST(NormsTest, RmsNormMatchesFormulaAndAliases) {
  const int64_t n = 6144;
  std::vector<float> x = Random(n, 1, 3.0f), w = Random(n, 2), out(n);
  RmsNorm(x.data(), w.data(), n, 1e-6f, out.data());
  double ss = 0;
  for (float v : x) ss += double{v} * v;
  double inv = 1.0 / std::sqrt(ss / n + 1e-6);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(out[i], w[i] * x[i] * inv, 1e-5 * (1 + std::fabs(out[i])));
  std::vector<float> in_place = x;
  RmsNorm(in_place.data(), w.data(), n, 1e-6f, in_place.data());
  EXPECT_EQ(in_place, out);
}

TEST(NormsTest, LayerNormMatchesFormula) {
  const int64_t n = 128;
  std::vector<float> x = Random(n, 3, 2.0f), w = Random(n, 4), b = Random(n, 5), out(n);
  for (float& v : x) v += 5.0f;  // a non-zero mean
  LayerNorm(x.data(), w.data(), b.data(), n, 1e-5f, out.data());
  double mean = 0, var = 0;
  for (float v : x) mean += v;
  mean /= n;
  for (float v : x) var += (v - mean) * (v - mean);
  var /= n;
  for (int64_t i = 0; i < n; ++i)
    EXPECT_NEAR(out[i], (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i], 1e-5);
}

TEST(RopeTest, InterleavedAndSplitHalfRotatePairs) {
  const int dim = 8;
  std::vector<float> inv_freq;
  for (int i = 0; i < dim / 2; ++i) inv_freq.push_back(std::pow(10000.0f, -2.0f * i / dim));
  RopeTable rope(inv_freq, 1.0f);
  EXPECT_EQ(rope.dim(), dim);
  std::vector<float> x = Random(dim, 6);
  for (RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kSplitHalf}) {
    std::vector<float> y = x;
    rope.Apply(y.data(), 0, layout);
    for (int i = 0; i < dim; ++i) EXPECT_FLOAT_EQ(y[i], x[i]);  // position 0: identity
    const int64_t pos = 37;
    y = x;
    rope.Apply(y.data(), pos, layout);
    for (int i = 0; i < dim / 2; ++i) {
      int a = layout == RopeLayout::kInterleaved ? 2 * i : i;
      int b = layout == RopeLayout::kInterleaved ? 2 * i + 1 : i + dim / 2;
      double angle = double{inv_freq[i] * static_cast<float>(pos)};
      EXPECT_NEAR(y[a], x[a] * std::cos(angle) - x[b] * std::sin(angle), 1e-5);
      EXPECT_NEAR(y[b], x[b] * std::cos(angle) + x[a] * std::sin(angle), 1e-5);
    }
  }
  // The attention factor scales the result.
  RopeTable scaled(inv_freq, 2.0f);
  std::vector<float> y = x;
  scaled.Apply(y.data(), 0, RopeLayout::kInterleaved);
  for (int i = 0; i < dim; ++i) EXPECT_FLOAT_EQ(y[i], 2.0f * x[i]);
}

// The dispatched log-sum-exp (vector exponentials) against its double twin: awkward lengths,
// a 150K vocabulary, masked entries, everything masked.
TEST(ActivationsTest, LogSumExpMatchesScalarTwin) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-60.0f, 30.0f);
  for (int64_t n : {1, 5, 15, 16, 17, 33, 257, 4096, 154880}) {
    std::vector<float> x(n);
    for (auto& v : x) v = u(rng);
    if (n > 3) x[n / 3] = -std::numeric_limits<float>::infinity();
    const float want = LogSumExpReference(x.data(), n);
    EXPECT_NEAR(LogSumExp(x.data(), n), want, 2e-6f * std::fabs(want) + 1e-6f) << n;
    // Shifting every entry shifts the result (the max is factored out first).
    for (auto& v : x) v += 1000.0f;
    EXPECT_NEAR(LogSumExp(x.data(), n), want + 1000.0f, 1e-3f) << n;
  }
  std::vector<float> masked(20, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(LogSumExp(masked.data(), 20), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(LogSumExp(masked.data(), 0), -std::numeric_limits<float>::infinity());
  std::vector<float> two = {0.0f, 0.0f};
  EXPECT_NEAR(LogSumExp(two.data(), 2), std::log(2.0f), 1e-6f);
}

// `softmax` against the std::exp twin on awkward lengths, logits spread over 90 nats (the far
// tail underflows to 0 in both) and masked entries.
void ExpectSoftmaxMatchesScalarTwin(void (*softmax)(float*, int64_t)) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-60.0f, 30.0f);
  for (int64_t n : {1, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, 2048, 2049, 154880}) {
    std::vector<float> x(n);
    for (auto& v : x) v = u(rng);
    if (n > 3) x[n / 3] = -std::numeric_limits<float>::infinity();
    std::vector<float> got = x, want = x;
    softmax(got.data(), n);
    SoftmaxReference(want.data(), n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6f * want[i] + 1e-30f) << n << " " << i;
      sum += got[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << n;
    if (n > 3) {
      EXPECT_EQ(got[n / 3], 0.0f);
    }
  }
  std::vector<float> masked(9, -std::numeric_limits<float>::infinity());
  softmax(masked.data(), 9);
  for (float p : masked) EXPECT_EQ(p, 0.0f);
}

TEST(ActivationsTest, SoftmaxMatchesScalarTwin) { ExpectSoftmaxMatchesScalarTwin(&Softmax); }

TEST(ActivationsTest, SiluMulMatchesScalarTwin) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> u(-30.0f, 30.0f);
  for (int64_t n : {1, 7, 16, 17, 100, 769}) {
    std::vector<float> g(n), up(n);
    for (auto& v : g) v = u(rng);
    for (auto& v : up) v = u(rng);
    g[0] = -200.0f;  // e^200 overflows: silu is 0
    if (n > 1) g[1] = 200.0f;
    std::vector<float> got(n), want(n);
    SiluMul(g.data(), up.data(), n, got.data());
    SiluMulReference(g.data(), up.data(), n, want.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-30f) << n << " " << i;
    std::vector<float> alias = g;  // out == gate
    SiluMul(alias.data(), up.data(), n, alias.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(alias[i], got[i]);
  }
}

// The AVX2 twins (what CPUs without AVX-512 run) against the scalar ones, wherever AVX2 exists.
TEST(ActivationsTest, Avx2TwinsMatchScalarTwins) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 on this CPU";
  ExpectSoftmaxMatchesScalarTwin(&SoftmaxAvx2);
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-60.0f, 30.0f), v(-30.0f, 30.0f);
  for (int64_t n : {1, 5, 7, 8, 9, 15, 16, 17, 100, 769, 2049, 154880}) {
    std::vector<float> x(n);
    for (auto& e : x) e = u(rng);
    if (n > 3) x[n / 3] = -std::numeric_limits<float>::infinity();
    const float lse = LogSumExpReference(x.data(), n);
    EXPECT_NEAR(LogSumExpAvx2(x.data(), n), lse, 2e-6f * std::fabs(lse) + 1e-6f) << n;

    std::vector<float> g(n), up(n), out(n), ref(n);
    for (auto& e : g) e = v(rng);
    for (auto& e : up) e = v(rng);
    g[0] = -200.0f;  // e^200 overflows: silu is 0
    if (n > 1) g[1] = 200.0f;
    SiluMulAvx2(g.data(), up.data(), n, out.data());
    SiluMulReference(g.data(), up.data(), n, ref.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], ref[i], 1e-6f * std::fabs(ref[i]) + 1e-30f) << "silu " << n << " " << i;
  }
  std::vector<float> masked(9, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(LogSumExpAvx2(masked.data(), 9), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(LogSumExpAvx2(masked.data(), 0), -std::numeric_limits<float>::infinity());
}

TEST(NormsTest, RmsNormAvx2MatchesTheOtherPaths) {
  if (!CpuSupportsAvx2MatMul()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(31);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int64_t n : {1, 7, 8, 9, 64, 257, 6144}) {
    std::vector<float> x(n), w(n), got(n), want(n), dispatched(n);
    for (auto& v : x) v = d(rng);
    for (auto& v : w) v = d(rng);
    RmsNormAvx2(x.data(), w.data(), n, 1e-6f, got.data());
    RmsNormReference(x.data(), w.data(), n, 1e-6f, want.data());
    RmsNorm(x.data(), w.data(), n, 1e-6f, dispatched.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-7f) << n << " " << i;
    if (CpuSupportsAvx512MatMul()) {
      EXPECT_EQ(got, dispatched) << n;
    }
    std::vector<float> alias = x;  // out == x
    RmsNormAvx2(alias.data(), w.data(), n, 1e-6f, alias.data());
    EXPECT_EQ(alias, got) << n;
  }
}

TEST(NormsTest, RmsNormMatchesScalarTwin) {
  std::mt19937 rng(13);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int64_t n : {1, 7, 8, 9, 64, 257, 6144}) {
    std::vector<float> x(n), w(n);
    for (auto& v : x) v = d(rng);
    for (auto& v : w) v = d(rng);
    std::vector<float> got(n), want(n);
    RmsNorm(x.data(), w.data(), n, 1e-6f, got.data());
    RmsNormReference(x.data(), w.data(), n, 1e-6f, want.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-30f) << n << " " << i;
  }
}

TEST(ActivationsTest, SoftmaxSumsToOneAndMasks) {
  std::vector<float> x = {1.0f, 2.0f, -std::numeric_limits<float>::infinity(), 3.0f, 1000.0f};
  Softmax(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[4], 1.0f, 1e-6);  // large logits do not overflow
  double sum = 0;
  for (float v : x) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-6);

  std::vector<float> y = {0.5f, -1.0f, 2.0f};
  Softmax(y.data(), 3);
  double z = std::exp(0.5) + std::exp(-1.0) + std::exp(2.0);
  EXPECT_NEAR(y[0], std::exp(0.5) / z, 1e-6);
  EXPECT_NEAR(y[2], std::exp(2.0) / z, 1e-6);

  float inf = std::numeric_limits<float>::infinity();
  std::vector<float> masked = {-inf, -inf};
  Softmax(masked.data(), 2);
  EXPECT_EQ(masked[0], 0.0f);
  EXPECT_EQ(masked[1], 0.0f);
}

TEST(ActivationsTest, SiluMul) {
  std::vector<float> g = Random(100, 7, 4.0f), u = Random(100, 8), out(100);
  SiluMul(g.data(), u.data(), 100, out.data());
  for (int i = 0; i < 100; ++i) {
    double s = g[i] / (1.0 + std::exp(-double{g[i]}));
    EXPECT_NEAR(out[i], s * u[i], 1e-5 * (1 + std::fabs(s * u[i])));
  }
  SiluMul(g.data(), u.data(), 100, g.data());  // aliasing
  EXPECT_EQ(g, out);
}

}  // namespace
}  // namespace glm::kernels
